"""3D quality on held-out synthetic stacks: propagation from boxes, automatic 3D, and a classical baseline.

    python benchmarks/bench_3d.py [--volumes 3] [--shape 16 256 256] [--objects 14] [--seed 20000]
                                  [--points-per-side 16] [--skip-automatic] [--cache DIR] [--json OUT]
                                  [--object-size PX|auto|fixed] [--diameter 12 32]

Stacks: ``napari_sam.data.synthetic.nuclei_3d`` with seeds from ``--seed`` on (20000+ are never used
in training). Embeddings go through a zarr cache (``--cache``, default a temporary folder), so runs
with other options reuse them. Measured, per volume, then averaged over objects / volumes:

- ``one box``: every object gets the box of its true mask on its middle slice; the boxes are decoded
  on their slices (``napari_sam.engine.volume.propagate.seed_labels``, as ``propagate(boxes=...)`` does) and
  all objects of a volume propagated by one ``napari_sam.propagate`` call; mean 3D IoU of each
  object with its truth (0 if its box gave nothing);
- ``two boxes``: boxes on the slices at one and two thirds of each object's extent (one box when
  these coincide), merged into one seed per object, propagated;
- ``box on every slice``: a reference without propagation — every object gets its true box on every
  slice it spans; the 3D IoU this reaches is about what the model's 2D masks allow;
- ``automatic``: ``napari_sam.automatic`` (preset ``"nuclei"``) on every slice, linked across slices by
  ``napari_sam.engine.volume.linking.link_slices``; F1 of 3D objects matched at IoU >= 0.5;
- ``baseline``: Otsu threshold of the Gaussian-smoothed stack + 3D distance-transform watershed
  (scikit-image, z sampling taken into account); same F1.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import napari_sam as ns
from napari_sam.data.synthetic import nuclei_3d
from napari_sam.engine.volume.linking import link_slices
from napari_sam.engine.volume.propagate import seed_labels
from napari_sam.engine.volume.steps import summarize


def object_ious(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(truth id, pred id, IoU)`` of overlapping 3D objects."""
    both = (pred > 0) & (truth > 0)
    pairs, inter = np.unique(np.stack([truth[both], pred[both]]).astype(np.int64), axis=1, return_counts=True)
    t_ids, t_area = np.unique(truth[truth > 0], return_counts=True)
    p_ids, p_area = np.unique(pred[pred > 0], return_counts=True)
    a = t_area[np.searchsorted(t_ids, pairs[0])]
    b = p_area[np.searchsorted(p_ids, pairs[1])]
    return pairs[0], pairs[1], inter / (a + b - inter)


def f1_at(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of 3D objects; a match is a pair with IoU >= threshold (> 0.5 makes matches unique)."""
    n_true = len(np.unique(truth[truth > 0]))
    n_pred = len(np.unique(pred[pred > 0]))
    if n_true + n_pred == 0:
        return 1.0
    if min(n_true, n_pred) == 0:
        return 0.0
    _, _, iou = object_ious(pred, truth)
    tp = int((iou >= threshold).sum())
    return 2 * tp / (n_true + n_pred)


def iou_per_object(pred: np.ndarray, truth: np.ndarray, mapping: dict[int, int]) -> list[float]:
    """IoU of each truth object with the predicted label it was given (``{truth id: pred id}``)."""
    out = []
    for t, p in mapping.items():
        a, b = truth == t, pred == p
        out.append(float((a & b).sum() / max(1, (a | b).sum())))
    return out


def extents(truth: np.ndarray) -> dict[int, np.ndarray]:
    """``{id: slices holding it}``."""
    return {int(k): np.flatnonzero((truth == k).any(axis=(1, 2))) for k in np.unique(truth[truth > 0])}


def box6(truth: np.ndarray, k: int, z: int) -> list[float]:
    r0, c0, r1, c1 = summarize(truth[z] == k).bbox  # type: ignore[union-attr]
    return [z, r0, c0, z + 1, r1, c1]


def seeded(vol, image, truth: np.ndarray, fractions: tuple[float, ...], options: dict) -> list[float]:
    """Boxes at these fractions of each object's z extent, decoded on their slices, then propagated."""
    spans = extents(truth)
    ids = list(spans)
    boxes, owners = [], []
    for i, k in enumerate(ids):
        picks = sorted({round(f * (len(spans[k]) - 1)) for f in fractions})
        for j in picks:
            boxes.append(box6(truth, k, int(spans[k][j])))
            owners.append(i + 1)
    decoded = seed_labels(vol, boxes=boxes)
    lut = np.array([0, *owners], dtype=np.uint32)
    seeds = lut[decoded]  # every box's mask gets its object's label
    result = ns.propagate(vol, seeds, image=image, **options)
    return iou_per_object(result.labels, truth, {k: i + 1 for i, k in enumerate(ids)})


def one_box(vol, image, truth: np.ndarray, options: dict) -> list[float]:
    return seeded(vol, image, truth, (0.5,), options)


def two_boxes(vol, image, truth: np.ndarray, options: dict) -> list[float]:
    return seeded(vol, image, truth, (1 / 3, 2 / 3), options)


def every_slice(vol, image, truth: np.ndarray, options: dict) -> list[float]:
    """Reference without propagation: each object's true box on every slice it spans."""
    spans = extents(truth)
    ids = list(spans)
    boxes = [box6(truth, k, int(z)) for k in ids for z in spans[k]]
    owners = [i + 1 for i, k in enumerate(ids) for _ in spans[k]]
    labels = np.array([0, *owners], dtype=np.uint32)[seed_labels(vol, boxes=boxes)]
    return iou_per_object(labels, truth, {k: i + 1 for i, k in enumerate(ids)})


def automatic_3d(vol, points_per_side: int, min_iou: float, min_slices: int) -> np.ndarray:
    per_slice = np.zeros(vol.shape, dtype=np.uint32)
    offset = 0
    for z in range(vol.shape[0]):
        labels = ns.automatic(vol[z], preset="nuclei", points_per_side=points_per_side).labels
        per_slice[z] = np.where(labels > 0, labels + offset, 0)
        offset += int(labels.max())
    return link_slices(per_slice, min_iou=min_iou, min_slices=min_slices)


def baseline(image: np.ndarray, z_spacing: float) -> np.ndarray:
    """Otsu + 3D distance-transform watershed (anisotropic sampling)."""
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.filters import gaussian, threshold_otsu
    from skimage.segmentation import watershed

    smooth = gaussian(image.astype(np.float32), sigma=(0.5, 1.0, 1.0), preserve_range=True)
    mask = smooth > threshold_otsu(smooth)
    distance = ndimage.distance_transform_edt(mask, sampling=(z_spacing, 1.0, 1.0))
    footprint = np.ones((3, 7, 7), dtype=bool)
    peaks = peak_local_max(distance, footprint=footprint, labels=ndimage.label(mask)[0], exclude_border=False)
    markers = np.zeros(image.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=mask).astype(np.uint32)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(16, 256, 256), metavar=("Z", "Y", "X"))
    parser.add_argument("--objects", type=int, default=14, help="nuclei per stack")
    parser.add_argument("--z-spacing", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=20000, help="first held-out seed")
    parser.add_argument("--model", default="nano")
    parser.add_argument(
        "--points-per-side", type=int, default=16, help="automatic grid per slice (CPU: keep small)"
    )
    parser.add_argument("--link-iou", type=float, default=0.25, help="link_slices(min_iou=)")
    parser.add_argument("--link-slices", type=int, default=2, help="link_slices(min_slices=)")
    parser.add_argument(
        "--automatic-volumes",
        type=int,
        default=None,
        help="run automatic 3D on the first N stacks (default all)",
    )
    parser.add_argument(
        "--object-size",
        default=None,
        help="compute_embeddings(object_size=): px, auto or fixed (default: the model's)",
    )
    parser.add_argument(
        "--diameter",
        type=float,
        nargs=2,
        default=(12.0, 32.0),
        help="nuclei diameters, px (nuclei_3d's range)",
    )
    parser.add_argument("--skip-automatic", action="store_true")
    parser.add_argument("--skip-two", action="store_true")
    parser.add_argument("--skip-boxes", action="store_true", help="only automatic 3D and the baseline")
    parser.add_argument("--options", default="{}", help="JSON keywords for napari_sam.propagate")
    parser.add_argument("--cache", type=Path, default=None, help="folder for the embedding caches")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    options = json.loads(args.options)
    cache = args.cache or Path(tempfile.mkdtemp(prefix="bench3d-"))
    model = ns.load_model(args.model)
    rows: dict[str, list[float]] = {
        "one box": [],
        "two boxes": [],
        "box on every slice": [],
        "automatic F1": [],
        "baseline F1": [],
    }
    seconds = dict.fromkeys(
        ("embed", "one box", "two boxes", "box on every slice", "automatic", "baseline"), 0.0
    )
    print(
        f"# napari_sam {ns.__version__}, torch {torch.__version__}, {platform.processor() or platform.machine()}"
    )
    print(
        f"# {args.volumes} stacks {tuple(args.shape)}, {args.objects} nuclei, seeds {args.seed}+, model {args.model}"
    )
    for v in range(args.volumes):
        image, truth = nuclei_3d(
            tuple(args.shape),
            n_objects=args.objects,
            z_spacing=args.z_spacing,
            seed=args.seed + v,
            diameter=tuple(args.diameter),
        )
        start = time.perf_counter()
        size = args.object_size
        size = float(size) if size not in (None, "auto", "fixed") else size
        shape = "x".join(map(str, args.shape))
        name = f"{args.model}-{args.seed + v}-{shape}-{args.objects}-{args.diameter}-{size}.zarr"
        vol = ns.compute_embeddings(image, model, cache=cache / name, object_size=size)
        seconds["embed"] += time.perf_counter() - start
        runs = (("one box", one_box), ("two boxes", two_boxes), ("box on every slice", every_slice))
        for key, run in runs:
            if args.skip_boxes or (key == "two boxes" and args.skip_two):
                continue
            start = time.perf_counter()
            ious = run(vol, image, truth, options)
            seconds[key] += time.perf_counter() - start
            rows[key].extend(ious)
            print(f"volume {v}: {key} mean IoU {np.mean(ious):.3f} ({len(ious)} objects)", flush=True)
        start = time.perf_counter()
        rows["baseline F1"].append(f1_at(baseline(image, args.z_spacing), truth))
        seconds["baseline"] += time.perf_counter() - start
        n_auto = args.volumes if args.automatic_volumes is None else args.automatic_volumes
        if not args.skip_automatic and v < n_auto:
            start = time.perf_counter()
            rows["automatic F1"].append(
                f1_at(automatic_3d(vol, args.points_per_side, args.link_iou, args.link_slices), truth)
            )
            seconds["automatic"] += time.perf_counter() - start
            print(f"volume {v}: automatic F1 {rows['automatic F1'][-1]:.3f}", flush=True)
        print(f"volume {v}: baseline F1 {rows['baseline F1'][-1]:.3f}", flush=True)

    print("\n| metric | value | n | goal |\n|---|---|---|---|")
    goals = {
        "one box": "≥ 0.75",
        "two boxes": "≥ 0.85",
        "box on every slice": "reference: 2D boxes, no propagation",
        "automatic F1": "> baseline",
        "baseline F1": "",
    }
    for key, values in rows.items():
        if values:
            unit = "objects" if "box" in key else "stacks"
            print(f"| {key} | {np.mean(values):.3f} | {len(values)} {unit} | {goals[key]} |")
    print("\nseconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "values": rows, "seconds": seconds}
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
