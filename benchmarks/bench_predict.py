"""Ours vs the official segment-anything: image-encoder time and prompt → mask latency, one run.

Run it with the reference environment's python (it has both packages; see
``scripts/setup_reference_env.sh``):

    .venv-ref/bin/python benchmarks/bench_predict.py                # CPU, all cores
    .venv-ref/bin/python benchmarks/bench_predict.py --runs 5 --calls 200 --json bench.json

Both models get the same seeded random vit_b weights (the official model's state dict, saved to a
temporary file and loaded into ours), so no download is needed and the outputs must agree.

- encoder: one 1024×1024 RGB uint8 image — official ``SamPredictor.set_image`` vs our
  ``compute_embeddings(image, model, normalize=None)`` (both include resizing and normalisation);
  median of ``--runs`` runs after one warm-up, official and ours alternating.
- predict: one random foreground point, 3 candidate masks, thresholded at 1024×1024 — official
  ``SamPredictor.predict(point_coords, point_labels, multimask_output=True)`` vs our
  ``predict(embeddings, points=..., multimask=True)``; ``--calls`` calls each after warm-up, p50/p95.
- agreement: IoU of our and the official masks for a few points (should be ≥ 0.99).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _reference import device_name, napari_sam, random_pair, segment_anything

from napari_sam.engine.decode.predict import predict
from napari_sam.engine.embed.embeddings import compute_embeddings

IMAGE_SIDE = 1024
AGREEMENT_POINTS = 5
AGREEMENT_MIN_IOU = 0.99


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (waiting for the GPU to finish)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="encoder runs each, after 1 warm-up")
    parser.add_argument("--calls", type=int, default=50, help="predict calls each, after warm-up")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--seed", type=int, default=0, help="weights, image and points seed")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the numbers as JSON")
    args = parser.parse_args()
    if args.runs < 1 or args.calls < 2 or args.threads < 1:
        parser.error("--runs ≥ 1, --calls ≥ 2 and --threads ≥ 1 are required")

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rng = np.random.default_rng(args.seed)

    # The same seeded random vit_b weights in both implementations.
    t0 = time.perf_counter()
    official, ours = random_pair("vit_b", args.seed, device)
    predictor = segment_anything.SamPredictor(official)
    print(f"built both vit_b models in {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    image = rng.integers(0, 256, (IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    state: dict[str, object] = {}

    def official_encode() -> None:
        predictor.set_image(image)

    def ours_encode() -> None:
        state["emb"] = compute_embeddings(image, ours, device=device, normalize=None)

    # (a) encoder: 1 warm-up each, then alternate official / ours.
    enc: dict[str, list[float]] = {"official": [], "ours": []}
    official_encode()
    ours_encode()
    for run in range(args.runs):
        enc["official"].append(timed(official_encode, device))
        enc["ours"].append(timed(ours_encode, device))
        print(
            f"encoder run {run + 1}/{args.runs}: official {enc['official'][-1]:.2f} s, "
            f"ours {enc['ours'][-1]:.2f} s",
            file=sys.stderr,
        )
    emb = state["emb"]

    # (b) predict: one random foreground point per call, the same points for both.
    n_warm = max(2, args.calls // 10)
    xy = rng.uniform(0, IMAGE_SIDE - 1, (n_warm + args.calls, 2)).round(1)
    label = np.array([1])

    def official_predict(i: int):
        return predictor.predict(point_coords=xy[i : i + 1], point_labels=label, multimask_output=True)

    def ours_predict(i: int):
        return predict(emb, points=xy[i : i + 1, ::-1], point_labels=label, multimask=True)

    for i in range(n_warm):
        official_predict(i)
        ours_predict(i)
    lat: dict[str, list[float]] = {"official": [], "ours": []}
    for i in range(n_warm, n_warm + args.calls):
        lat["official"].append(timed(lambda i=i: official_predict(i), device) * 1e3)
        lat["ours"].append(timed(lambda i=i: ours_predict(i), device) * 1e3)

    # Agreement of the outputs: features, then the masks of a few points.
    feature_diff = float((emb.features - predictor.features).abs().max())
    ious, score_diffs = [], []
    for i in range(AGREEMENT_POINTS):
        masks_o, scores_o, _ = official_predict(i)
        pred = ours_predict(i)
        assert pred.masks.shape == (1, *masks_o.shape), (pred.masks.shape, masks_o.shape)
        ious += [mask_iou(pred.masks[0, k], masks_o[k]) for k in range(masks_o.shape[0])]
        score_diffs.append(float(np.abs(pred.iou_scores[0] - scores_o).max()))

    def summary(values: dict[str, list[float]], fn: Callable[[list[float]], float]):
        o, u = fn(values["official"]), fn(values["ours"])
        return {"official": o, "ours": u, "ratio": u / o}

    results = {
        "encoder_median_s": summary(enc, statistics.median),
        "predict_p50_ms": summary(lat, lambda v: float(np.percentile(v, 50))),
        "predict_p95_ms": summary(lat, lambda v: float(np.percentile(v, 95))),
    }
    agreement = {
        "min_mask_iou": min(ious),
        "mean_mask_iou": float(np.mean(ious)),
        "max_iou_score_diff": max(score_diffs),
        "max_feature_diff": feature_diff,
        "prompts": AGREEMENT_POINTS,
        "masks": len(ious),
        "ok": min(ious) >= AGREEMENT_MIN_IOU,
    }
    env = {
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "napari_sam": napari_sam.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "model": "vit_b (seeded random weights)",
        "image": f"{IMAGE_SIDE}x{IMAGE_SIDE} RGB uint8",
        "encoder_runs": args.runs,
        "predict_calls": args.calls,
    }

    labels = {
        "encoder_median_s": f"encoder, 1 image {IMAGE_SIDE}² (s, median of {args.runs})",
        "predict_p50_ms": f"predict, 1 point, 3 masks (ms, p50 of {args.calls})",
        "predict_p95_ms": f"predict, 1 point, 3 masks (ms, p95 of {args.calls})",
    }
    width = max(len(v) for v in labels.values())
    print(f"device: {env['device']} ({env['device_name']})")
    print(
        f"torch {env['torch']}, napari_sam {env['napari_sam']}, python {env['python']}, "
        f"CPU count {env['cpu_count']}, torch threads {env['threads']}"
    )
    print(f"model: {env['model']}, image {env['image']}")
    print()
    print(f"| {'metric':<{width}} | {'official':>9} | {'ours':>9} | {'ratio (ours/official)':>21} |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|{'-' * 11}|{'-' * 23}|")
    for key, label_text in labels.items():
        row = results[key]
        digits = 2 if key.startswith("encoder") else 1
        print(
            f"| {label_text:<{width}} | {row['official']:>9.{digits}f} | {row['ours']:>9.{digits}f} "
            f"| {row['ratio']:>21.2f} |"
        )
    print()
    verdict = "ok" if agreement["ok"] else f"BELOW {AGREEMENT_MIN_IOU}"
    print(
        f"agreement: mask IoU ours vs official min {agreement['min_mask_iou']:.4f} "
        f"(mean {agreement['mean_mask_iou']:.4f}, {agreement['masks']} masks of "
        f"{agreement['prompts']} points: {verdict}); predicted-IoU scores differ by ≤ "
        f"{agreement['max_iou_score_diff']:.2g}; features by ≤ {agreement['max_feature_diff']:.2g}"
    )

    if args.json is not None:
        payload = {
            "env": env,
            "results": results,
            "agreement": agreement,
            "raw": {"encoder_s": enc, "predict_ms": lat},
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if not agreement["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
