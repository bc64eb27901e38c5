"""Image-encoder throughput, ours vs the official segment-anything, in one run on the same weights.

Run it with the reference environment's python (it has both packages; see
``scripts/setup_reference_env.sh``):

    .venv-ref/bin/python benchmarks/bench_encoder.py                          # CPU: vit_b, batch 1, fp32
    .venv-ref/bin/python benchmarks/bench_encoder.py --device cuda --models vit_b vit_h \\
        --batch-sizes 1 8 32 --precisions fp32 bf16 --compile                # the GPU table

Both implementations get the same seeded random weights (the official model's state dict, loaded
into ours), so no download is needed. Each row times the encoder alone on a ``(B, 3, 1024, 1024)``
batch of preprocessed input: ``--warmup`` calls, then ``--iters`` timed calls (CUDA synchronised),
official and ours alternating. "bf16" / "fp16" wrap *both* models in ``torch.autocast`` — how the
official model is run in reduced precision. ``--compile`` adds a row for ours with ``torch.compile``
(compile time is reported separately; kernels are cached on disk for the next run). ``--nano``
adds our shipped encoder (no official counterpart).

``vit_t`` (MobileSAM's TinyViT encoder) is compared with the MobileSAM package (``pip install
mobilesam-mirror timm`` in the reference environment): its "official" columns are MobileSAM's encoder,
with the seeded weights of ``scripts/make_vit_t_fixtures.py``. The CPU table of ``docs/benchmarks.md``:

    .venv-ref/bin/python benchmarks/bench_encoder.py --models vit_t vit_b --nano

Agreement: the largest feature difference between ours and the official at fp32 (should be ≤ 1e-4
on CPU), and the relative error of reduced precision against fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import device_name, napari_sam, random_pair

from napari_sam.engine.embed.encoder import autocast, encode_images, resolve_precision, warm_up
from napari_sam.engine.loading import load_model
from napari_sam.model import build_sam

SIDE = 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(fn: Any, batch: int, iters: int, warmup: int, device: torch.device) -> float:
    """Images per second of ``fn`` (one call = one batch)."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return batch * iters / (time.perf_counter() - start)


def vit_t_pair(seed: int, device: torch.device) -> tuple[Any, Any]:
    """MobileSAM's vit_t with seeded random weights, and ours holding the same state dict."""
    try:
        import mobile_sam  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"vit_t needs the MobileSAM package ({exc}): .venv-ref/bin/pip install mobilesam-mirror timm"
        ) from exc
    from make_vit_t_fixtures import build_vit_t, seeded_model

    reference = build_vit_t()
    seeded_model(reference, seed)  # strict load, then eval() refreshes MobileSAM's cached bias tables
    ours = build_sam("vit_t")
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference.to(device).eval(), ours.to(device).eval()


def bench_model(
    name: str,
    args: argparse.Namespace,
    device: torch.device,
    rows: list[dict[str, Any]],
    agreement: list[str],
) -> None:
    """Time official and ours for one architecture; append to ``rows`` and ``agreement``."""
    official, ours = (
        vit_t_pair(args.seed, device) if name == "vit_t" else random_pair(name, args.seed, device)
    )
    for batch in args.batch_sizes:
        x = torch.randn(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(args.seed)).to(device)
        reference = None
        for precision in args.precisions:
            resolved = resolve_precision(precision, device)

            def run_official(resolved: str = resolved, x: torch.Tensor = x) -> torch.Tensor:
                with torch.inference_mode(), autocast(device, resolved):
                    return official.image_encoder(x)

            def run_ours(resolved: str = resolved, x: torch.Tensor = x) -> torch.Tensor:
                return encode_images(ours, x, precision=resolved)

            o = throughput(run_official, batch, args.iters, args.warmup, device)
            u = throughput(run_ours, batch, args.iters, args.warmup, device)
            row = {"model": name, "batch": batch, "precision": precision, "official": o, "ours": u}
            rows.append(row | {"variant": "eager"})
            print(
                f"{name} b{batch} {precision}: official {o:.2f} img/s, ours {u:.2f} img/s",
                file=sys.stderr,
            )
            ours_out = run_ours().float()
            if resolved == "fp32":
                reference = ours_out
                diff = float((ours_out - run_official().float()).abs().max())
                agreement.append(
                    f"{name} b{batch}: max |ours - official| feature difference (fp32) {diff:.2g}"
                )
            elif reference is not None:
                rel = float((ours_out - reference).norm() / reference.norm())
                agreement.append(f"{name} b{batch}: {precision} vs fp32 relative feature error {rel:.3g}")
            if args.compile:
                seconds = warm_up(ours, batch_size=batch, precision=resolved)
                c = throughput(
                    lambda resolved=resolved, x=x: encode_images(ours, x, precision=resolved, compile=True),
                    batch,
                    args.iters,
                    args.warmup,
                    device,
                )
                rows.append(row | {"variant": f"compiled ({seconds:.0f} s to compile)", "ours": c})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=["vit_b"], choices=["vit_t", "vit_b", "vit_l", "vit_h"]
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1])
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--iters", type=int, default=3, help="timed calls per row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per row")
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    parser.add_argument("--nano", action="store_true", help="also time our shipped nano encoder")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the rows as JSON")
    args = parser.parse_args()
    if args.iters < 1 or args.warmup < 0 or min(args.batch_sizes) < 1:
        parser.error("--iters ≥ 1, --warmup ≥ 0 and batch sizes ≥ 1 are required")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[dict[str, Any]] = []
    agreement: list[str] = []
    for name in args.models:
        bench_model(name, args, device, rows, agreement)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.nano:
        nano = load_model("nano", device)
        for batch in args.batch_sizes:
            x = torch.randn(batch, 3, SIDE, SIDE).to(device)
            for precision in args.precisions:
                resolved = resolve_precision(precision, device)
                u = throughput(
                    lambda resolved=resolved, x=x: encode_images(nano, x, precision=resolved),
                    batch,
                    args.iters,
                    args.warmup,
                    device,
                )
                rows.append(
                    {"model": "nano", "batch": batch, "precision": precision, "official": None, "ours": u}
                    | {"variant": "eager"}
                )

    print(
        f"device: {device} ({device_name(device)}); torch {torch.__version__}; napari_sam {napari_sam.__version__}"
    )
    print(
        f"CPU count {os.cpu_count()}, torch threads {torch.get_num_threads()}; input {SIDE}x{SIDE}, random weights"
    )
    print()
    print(
        "| model | batch | precision | ours | official img/s | ours img/s | official s/img | ours s/img "
        "| speed-up (ours/official) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        off = f"{r['official']:.3g}" if r["official"] else "–"
        off_s = f"{1 / r['official']:.3g}" if r["official"] else "–"
        ratio = f"{r['ours'] / r['official']:.2f}×" if r["official"] else "–"
        print(
            f"| {r['model']} | {r['batch']} | {r['precision']} | {r['variant']} | {off} | {r['ours']:.3g} "
            f"| {off_s} | {1 / r['ours']:.3g} | {ratio} |"
        )
    print()
    for line in agreement:
        print(line)
    if args.json is not None:
        env = {"device": str(device), "device_name": device_name(device), "torch": torch.__version__}
        args.json.write_text(json.dumps({"env": env, "rows": rows, "agreement": agreement}, indent=2) + "\n")


if __name__ == "__main__":
    main()
