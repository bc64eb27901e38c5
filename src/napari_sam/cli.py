"""The ``napari-sam`` command.

Examples::

    napari-sam models                       # registered models and where their weights are
    napari-sam models --verify sam_vit_b_01ec64.pth
    napari-sam demo --out demo/             # offline demo on synthetic nuclei → PNG + summary
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._version import __version__
from .errors import NapariSamError


def _cmd_models(args: argparse.Namespace) -> int:
    from .model import OFFICIAL_WEIGHTS
    from .model.registry import cache_dir, find_local_weights

    if args.verify:
        return _verify(Path(args.verify))
    print(f"weights cache: {cache_dir()}")
    print(f"{'name':8} {'file':24} {'local copy'}")
    for name, info in OFFICIAL_WEIGHTS.items():
        local = find_local_weights(info)
        print(f"{name:8} {info.filename:24} {local or '-'}")
    if args.download:
        from .model import fetch_weights

        path = fetch_weights(args.download)
        print(f"{args.download}: {path} (sha256 verified)")
    return 0


def _verify(path: Path) -> int:
    from .model import OFFICIAL_WEIGHTS, build_sam
    from .model.registry import file_sha256

    model = build_sam(path)
    digest = file_sha256(path)
    known = {info.sha256: name for name, info in OFFICIAL_WEIGHTS.items()}
    origin = f"official {known[digest]}" if digest in known else "not an official release file"
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: architecture {model.name}, {params / 1e6:.1f} M parameters")
    print(f"sha256 {digest} ({origin})")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .data.synthetic import nuclei_2d
    from .demo import run_demo

    image, truth = nuclei_2d((args.size, args.size), n_objects=args.objects, seed=args.seed)
    start = time.perf_counter()
    summary = run_demo(image, truth, model=args.model, out_dir=Path(args.out), device=args.device)
    elapsed = time.perf_counter() - start
    print(summary.text())
    print(f"total {elapsed:.1f} s; wrote {summary.picture}")
    return 0 if np.isfinite(summary.mean_iou) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-sam",
        description="Segment Anything for microscopy.",
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"napari-sam {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list registered models, download or verify weights")
    models.add_argument("--download", metavar="NAME", help="download NAME's weights (checks sha256)")
    models.add_argument("--verify", metavar="FILE", help="read FILE, name its architecture and hash")
    models.set_defaults(func=_cmd_models)

    demo = sub.add_parser("demo", help="segment synthetic nuclei offline and write a picture")
    demo.add_argument("--model", default="auto", help="model name or weights path (default: auto)")
    demo.add_argument("--out", default="napari-sam-demo", help="output folder")
    demo.add_argument("--size", type=int, default=512, help="image side in pixels")
    demo.add_argument("--objects", type=int, default=25, help="number of nuclei")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (NapariSamError, ValueError, FileNotFoundError, NotImplementedError) as exc:
        print(f"napari-sam: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
