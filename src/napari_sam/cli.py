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


TRAIN_EXAMPLES = """
Fine-tune on your own annotations (a folder with images/NAME.tif + labels/NAME.tif, or NAME.tif +
NAME_labels.tif side by side; tif, png, zarr or npy; labels are instance labels, 0 = background):

    napari-sam train my_annotations/ --model nano --steps 500 --out finetuned/
    napari-sam train my_annotations/ --model vit_b --freeze-encoder --steps 200 --out vitb-ft/

The run checkpoints to OUT/checkpoint.pt every 100 steps and resumes from it when started again;
the result is OUT/model.safetensors, usable as model="OUT/model.safetensors" everywhere. The nano
model trains on 256-px crops of the 1024 canvas; ViT models train on the whole canvas (slow on a CPU:
use --freeze-encoder, or a GPU with --device cuda).
"""


def _cmd_train(args: argparse.Namespace) -> int:
    from .api import train

    result = train(
        args.data,
        model=args.model,
        out=args.out,
        steps=args.steps,
        batch_images=args.batch_images,
        objects_per_image=args.objects,
        crop_size=args.crop,
        lr=args.lr,
        freeze_encoder=args.freeze_encoder,
        seed=args.seed,
        device=args.device,
    )
    last = result.history[-1] if result.history else {}
    loss = last.get("loss", float("nan"))
    print(f"trained {result.step} steps (last loss {loss:.3f}); wrote {result.weights}")
    return 0


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

    train = sub.add_parser(
        "train",
        help="fine-tune a model on a folder of image/label pairs",
        description="Fine-tune a model (SAM-style interactive training) on your annotated images.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("data", help="folder of image/label pairs")
    train.add_argument("--model", default="nano", help="starting model: nano, vit_b/l/h or a weights path")
    train.add_argument("--out", required=True, help="output folder (checkpoint, history, model)")
    train.add_argument("--steps", type=int, default=500)
    train.add_argument("--batch-images", type=int, default=4)
    train.add_argument("--objects", type=int, default=8, help="objects prompted per image and step")
    train.add_argument("--crop", type=int, default=256, help="crop side on the canvas (nano only)")
    train.add_argument("--lr", type=float, default=1e-4)
    train.add_argument("--freeze-encoder", action="store_true", help="train prompt encoder + decoder only")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="auto")
    train.set_defaults(func=_cmd_train)
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
