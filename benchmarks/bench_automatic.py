"""Automatic segmentation ("segment everything"): quality against a classical baseline, and speed.

Quality (any environment with napari_sam):

    python benchmarks/bench_automatic.py quality --images 6            # nano + preset vs Otsu/watershed
    python benchmarks/bench_automatic.py tune --images 4               # how the "nuclei" preset was chosen

Held-out synthetic images (``napari_sam.data.synthetic`` preset ``nuclei``, seeds from 10000; the
tuning uses seeds from 20000; training never used fixed seeds). Score: F1 at IoU 0.5 — a predicted
object and a true object match when their IoU exceeds 0.5 (such matches are one-to-one), F1 =
2 · matches / (predicted + true). Baseline: scikit-image Otsu threshold of the Gaussian-smoothed image,
distance transform, one marker per local maximum, watershed.

Speed (ours; with the official package too when it is importable, i.e. from the reference
environment made by ``scripts/setup_reference_env.sh``):

    .venv-ref/bin/python benchmarks/bench_automatic.py speed --size 1024 --points-per-side 16

Both implementations get the same nano weights (the official ``Sam`` is assembled around our nano
encoder, as in ``scripts/make_golden.py``) and the same uint8 RGB image; the table gives the whole
run (embedding included) and the decoder-and-filtering stage on a precomputed embedding.

The automatic modes side by side (issue 18: AIS, APG, AMG and the watershed baselines; 2D 512² and
1024² ``nuclei`` and ``wide`` images, a 3D stack; time, time / embedding, F1, peak memory, the goals):

    python benchmarks/bench_automatic.py modes [--images 3] [--amg-images 1] [--runs 2] [--threads 2]
        [--sizes 512 1024] [--presets nuclei wide] [--stack 16 256 256] [--stacks 1] [--decoder PATH]
        [--json OUT]

Protocol in ``benchmarks/_automatic_modes.py``; ``--decoder`` defaults to the shipped nano decoder when
one is registered, else the training run's (``artifacts/nano-decoder``), else a random one (timings only).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

import napari_sam
from napari_sam.data.synthetic import preset as synthetic_preset
from napari_sam.engine.automatic.front import PRESETS, automatic

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this file

# scoring lives in _scoring.py; scripts import f1_at_iou and watershed_baseline from here
from _automatic_modes import run_modes
from _scoring import f1_at_iou, watershed_baseline

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ scoring


def held_out(count: int, size: int, first_seed: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    config = synthetic_preset("nuclei", shape=(size, size))
    samples = []
    for seed in range(first_seed, first_seed + count):
        sample = config.sample(seed)
        samples.append((seed, sample.image, sample.labels))
    return samples


# ------------------------------------------------------------------------------------------ quality


def run_quality(args: argparse.Namespace) -> dict[str, Any]:
    rows = []
    for seed, image, truth in held_out(args.images, args.size, args.first_seed):
        start = time.perf_counter()
        ours = automatic(image, preset=args.preset, points_per_side=args.points_per_side, device=args.device)
        seconds = time.perf_counter() - start
        f1, matches, n_pred, n_true = f1_at_iou(ours.labels, truth)
        base_f1, base_matches, base_pred, _ = f1_at_iou(watershed_baseline(image), truth)
        rows.append(
            {
                "seed": seed,
                "objects": n_true,
                "ours_f1": f1,
                "ours_found": n_pred,
                "ours_matched": matches,
                "baseline_f1": base_f1,
                "baseline_found": base_pred,
                "baseline_matched": base_matches,
                "ours_seconds": seconds,
            }
        )
        print(
            f"seed {seed}: {n_true} objects | ours F1 {f1:.3f} ({n_pred} found, {matches} matched, "
            f"{seconds:.1f} s) | baseline F1 {base_f1:.3f} ({base_pred} found)",
            flush=True,
        )
    ours_mean = statistics.mean(r["ours_f1"] for r in rows)
    base_mean = statistics.mean(r["baseline_f1"] for r in rows)
    print()
    print(f"| method | F1 @ IoU 0.5 (mean of {len(rows)} images {args.size}², seeds {args.first_seed}+) |")
    print("|---|---:|")
    print(f"| nano, preset={args.preset!r}, points_per_side={args.points_per_side} | {ours_mean:.3f} |")
    print(f"| Otsu + distance-transform watershed (scikit-image) | {base_mean:.3f} |")
    print(f"| difference | {ours_mean - base_mean:+.3f} |")
    return {"rows": rows, "ours_mean_f1": ours_mean, "baseline_mean_f1": base_mean}


# ------------------------------------------------------------------------------------------- tuning


def _paint(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Labels from masks, the highest ``scores`` first (each pixel keeps the first mask)."""
    labels = np.zeros(masks.shape[1:], dtype=np.uint32)
    for rank, k in enumerate(np.argsort(-scores, kind="stable")):
        labels[(labels == 0) & masks[k]] = rank + 1
    return labels


def _candidates(args: argparse.Namespace) -> list[dict[str, np.ndarray]]:
    """Every mask of the grid (no filters, no suppression) per tuning image; cached with ``--cache``."""
    loose = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}
    out = []
    for seed, image, truth in held_out(args.images, args.size, args.first_seed):
        path = (
            args.cache / f"candidates_{args.size}_{args.points_per_side}_{seed}.npz" if args.cache else None
        )
        if path is not None and path.is_file():
            out.append(dict(np.load(path)))
            continue
        result = automatic(
            image, points_per_side=args.points_per_side, device=args.device, return_masks=True, **loose
        )
        props = result.mask_properties
        masks = result.masks
        assert masks is not None
        rows = np.clip(props["point-0"].astype(int), 0, truth.shape[0] - 1)
        cols = np.clip(props["point-1"].astype(int), 0, truth.shape[1] - 1)
        record = {
            "truth": truth,
            "masks": masks,
            "score": props["score"],
            "stability": props["stability_score"],
            "area": props["area"],
            "at_point": masks[np.arange(len(masks)), rows, cols],
            # (x0, y0, x1, y1) of the half-open row/column bounds, for the suppression sweep
            "boxes": np.stack([props["bbox-1"], props["bbox-0"], props["bbox-3"], props["bbox-2"]], axis=1),
        }
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, **record)
        out.append(record)
        print(f"seed {seed}: {len(props['score'])} candidate masks", flush=True)
    return out


def run_tune(args: argparse.Namespace) -> dict[str, Any]:
    """Decode every grid point once per image with no filtering, then sweep the filters offline."""
    from itertools import product

    from napari_sam.engine.automatic.nms import nms, nms_overlaps

    cached = _candidates(args)
    names = (
        "pred_iou_thresh",
        "stability_score_thresh",
        "max_area_fraction",
        "min_area",
        "suppression",
        "overlap",
    )
    # point_in_mask=True was tried too and lost recall on small nuclei (grid points miss them while a
    # neighbouring point's mask still covers them), so it is not swept
    suppressions = (("box", 0.15), ("box", 0.3), ("box", 0.7), ("mask", 0.2), ("mask", 0.3), ("mask", 0.5))
    grid = list(
        product((0.6, 0.7, 0.75), (0.3, 0.5), (0.02, 0.05), (20, 50), suppressions, ("score", "area"))
    )
    for c in cached:  # intersection over the smaller mask, for every pair of candidates
        flat = torch.from_numpy(c["masks"].reshape(len(c["masks"]), -1)).float()
        inter = flat @ flat.T
        area = inter.diagonal()
        c["containment"] = inter / torch.minimum(area[:, None], area[None, :]).clamp(min=1)
    scores = []
    for p, s, a, m, (kind, t), overlap in grid:
        f1s = []
        for c in cached:
            keep = (c["score"] > p) & (c["stability"] >= s) & (c["area"] <= a * c["truth"].size)
            keep &= c["area"] >= m
            idx = np.flatnonzero(keep)
            if idx.size:
                score = torch.from_numpy(c["score"][idx])
                if kind == "box":
                    kept = nms(torch.from_numpy(c["boxes"][idx]).float(), score, t)
                else:
                    sub = torch.from_numpy(idx)
                    kept = nms_overlaps(c["containment"][sub][:, sub], score, t)
                idx = idx[kept.numpy()]
            priority = c["score"][idx] if overlap == "score" else -c["area"][idx].astype(np.float64)
            f1s.append(f1_at_iou(_paint(c["masks"][idx], priority), c["truth"])[0])
        scores.append(((p, s, a, m, f"{kind} {t}", overlap), statistics.mean(f1s)))
    scores.sort(key=lambda item: -item[1])
    print("\n| " + " | ".join(names) + " | mean F1 |")
    print("|" + "---:|" * (len(names) + 1))
    for values, f1 in scores[:12]:
        print("| " + " | ".join(str(v) for v in values) + f" | {f1:.3f} |")
    return {"names": names, "top": [{"options": list(o), "f1": f} for o, f in scores[:30]]}


# -------------------------------------------------------------------------------------------- speed


def _timed(fn: Callable[[], Any], sync: Callable[[], None], runs: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(runs):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def run_speed(args: argparse.Namespace) -> dict[str, Any]:
    from napari_sam.engine.embed.embeddings import compute_embeddings
    from napari_sam.engine.loading import load_model

    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    config = synthetic_preset("nuclei", shape=(args.size, args.size), dtype="uint8")
    gray = config.sample(args.first_seed).image
    image = np.repeat(gray[..., None], 3, axis=2)  # uint8 RGB: the official preprocessing on both sides
    options = {"points_per_side": args.points_per_side, "points_per_batch": args.points_per_batch}
    if args.thresholds == "nuclei":  # the preset's official options, so that masks reach every step
        official_names = ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh")
        options.update({k: v for k, v in PRESETS["nuclei"].items() if k in official_names})
    sam = load_model("nano", device)
    automatic(image, model=sam, points_per_side=2)  # warm-up
    total, result = _timed(lambda: automatic(image, model=sam, **options), sync, args.runs)
    emb = compute_embeddings(image, sam, normalize=None)
    stage, _ = _timed(lambda: automatic(image, model=sam, embeddings=emb, **options), sync, args.runs)
    figures: dict[str, Any] = {"ours_total_s": total, "ours_stage_s": stage, "ours_masks": result.n_objects}

    try:
        from segment_anything import SamAutomaticMaskGenerator
    except ImportError:
        print("segment_anything not importable: timing ours only (run from .venv-ref for the comparison)")
        SamAutomaticMaskGenerator = None
    if SamAutomaticMaskGenerator is not None:
        sys.path.insert(0, str(ROOT / "scripts"))
        from make_golden import official_nano

        official = official_nano().to(device)
        generator = SamAutomaticMaskGenerator(official, **options)
        generator.generate(image[:64, :64])  # warm-up
        with torch.no_grad():
            off_total, records = _timed(lambda: generator.generate(image), sync, args.runs)
            generator.predictor.set_image(image)  # then skip re-embedding: decoder + filtering only
            set_image, reset = generator.predictor.set_image, generator.predictor.reset_image
            generator.predictor.set_image = lambda *a, **k: None
            generator.predictor.reset_image = lambda: None
            off_stage, _ = _timed(lambda: generator.generate(image), sync, args.runs)
            generator.predictor.set_image, generator.predictor.reset_image = set_image, reset
        figures.update(official_total_s=off_total, official_stage_s=off_stage, official_masks=len(records))

    print(
        f"device: {device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
        f"napari_sam {napari_sam.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"image {args.size}² uint8 RGB, nano, points_per_side={args.points_per_side}, {args.thresholds} thresholds"
    )
    print("\n| metric | official | ours | ratio (ours/official) |")
    print("|---|---:|---:|---:|")
    for label, key in (("whole run (s)", "total_s"), ("decoder + filtering (s)", "stage_s")):
        ours = figures[f"ours_{key}"]
        off = figures.get(f"official_{key}")
        off_txt, ratio = (f"{off:.2f}", f"{ours / off:.2f}") if off else ("—", "—")
        print(f"| {label} | {off_txt} | {ours:.2f} | {ratio} |")
    off_masks = figures.get("official_masks", "—")
    print(f"| masks kept | {off_masks} | {figures['ours_masks']} (labels) | |")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=("quality", "tune", "speed", "modes"))
    parser.add_argument(
        "--images", type=int, default=None, help="quality / tune: number of images (6); modes: per set (3)"
    )
    parser.add_argument("--size", type=int, default=None, help="image side (default 256; speed: 1024)")
    parser.add_argument("--points-per-side", type=int, default=16)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument(
        "--preset", default="nuclei", help="quality: the preset to evaluate ('none': official)"
    )
    parser.add_argument("--first-seed", type=int, default=None, help="default 10000 (tune: 20000)")
    parser.add_argument("--runs", type=int, default=None, help="speed: timed runs (median; 1), modes: 2")
    parser.add_argument(
        "--thresholds",
        choices=("official", "nuclei"),
        default="official",
        help="speed: official defaults, or the nuclei preset's IoU / stability / NMS thresholds",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (modes: 2)")
    parser.add_argument("--amg-images", type=int, default=1, help="modes: images per set for AMG (0: none)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="modes: 2D image sides")
    parser.add_argument("--presets", nargs="+", default=["nuclei", "wide"], help="modes: synthetic presets")
    parser.add_argument(
        "--stack", type=int, nargs=3, default=[16, 256, 256], metavar=("Z", "Y", "X"), help="modes: 3D shape"
    )
    parser.add_argument("--stacks", type=int, default=1, help="modes: nuclei_3d stacks (0: no 3D)")
    parser.add_argument("--decoder", type=Path, default=None, help="modes: instance decoder file")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--cache", type=Path, default=None, help="tune: folder to keep decoded candidates in")
    args = parser.parse_args()
    if args.images is None:
        args.images = 3 if args.mode == "modes" else 6
    if args.runs is None:
        args.runs = 2 if args.mode == "modes" else 1
    if args.mode == "modes" and args.threads is None:
        args.threads = 2
    if min(args.images, args.runs) < 1 or min(args.amg_images, args.stacks) < 0:
        parser.error("--images and --runs must be >= 1, --amg-images and --stacks >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.size is None:
        args.size = 1024 if args.mode == "speed" else 256
    if args.first_seed is None:
        args.first_seed = 20000 if args.mode == "tune" else 10000
    if args.preset == "none":
        args.preset = None
    elif args.preset not in PRESETS:
        parser.error(f"--preset must be 'none' or one of {sorted(PRESETS)}")
    run = {"quality": run_quality, "tune": run_tune, "speed": run_speed, "modes": run_modes}[args.mode]
    figures = run(args)
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **figures}, indent=2)
        )


if __name__ == "__main__":
    main()
