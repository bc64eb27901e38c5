"""Object-scale geometry (issue 19): the shipped nano model on synthetic sets spanning object sizes
4-120 px, with the image mapped onto the canvas by the fixed rule, by the estimated object size and by
the true one.

    python benchmarks/bench_object_scale.py [--sizes 512 [1024]] [--diameters 4 8 15 30 60 120]
        [--images 2] [--max-objects 20] [--clicks 0] [--threads 2] [--model nano] [--json OUT]

Sets: the ``nuclei`` preset (napari_sam.data.synthetic) with every object ``d`` px across
(``diameter=(d, d)``), held-out seeds 80000+ (``--images`` per set). The density is chosen per size so
that objects cover 10-30 % of each image (``density`` is objects per 10^4 px, drawn log-uniformly per
image: 80-240 for d = 4, 0.09-0.27 for d = 120): the object size is the one thing that changes from
set to set. An image is ``--sizes`` px a side, or larger when the objects need it: at least 8 objects
across, rounded up to 256 px (d = 120 → 1024² at ``--sizes 512``), so that the largest objects still
come a dozen or more to an image, most of them whole.

Geometries (``compute_embeddings(object_size=...)``, ``automatic(embeddings=...)``):
- ``fixed``: the model's old rule (the longer side to the 1024 canvas, nano enlarging at most 2×);
- ``auto``: the object size estimated from the image (nano's default);
- ``true``: the labels' median equivalent diameter ``2·sqrt(area/π)`` given as ``object_size``.

Per set and geometry: mean IoU of box and 1-point prompts (``evaluate_objects``: at most
``--max-objects`` objects per image, a seeded subset; ``--clicks`` correction clicks, 0 by default) beside
the Otsu-in-box baseline (the same for every geometry); automatic instance segmentation (AIS, nano's
instance decoder) F1 at IoU 0.5 beside a classical Otsu + distance-transform watershed (its
``min_distance`` from the true size: max(2, d/4) px); the seconds per image of the embedding (with the
size estimate for ``auto``) and of AIS from those embeddings; the canvas scale and the number of tiles;
for ``auto``, the estimated size / true size. One markdown table each for prompts, AIS and geometry per
image size, and a summary line (means over the object sizes per geometry). ``--json`` writes every
figure, per image, and the per-object records.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scoring import f1_at_iou, watershed_baseline
from _strict_json import strict

from napari_sam import automatic, compute_embeddings
from napari_sam.data.synthetic import preset
from napari_sam.engine.loading import load_model
from napari_sam.engine.object_scale import estimate_object_size
from napari_sam.engine.preprocess import Preprocessor
from napari_sam.engine.training.evaluate_objects import (
    BASELINE,
    equivalent_diameter,
    evaluate_objects,
)
from napari_sam.engine.types import TiledEmbeddings

GEOMETRIES = ("fixed", "auto", "true")
SEED = 80_000
#: Fraction of each image the objects cover (drawn log-uniformly per image through ``density``).
COVERAGE = (0.1, 0.3)
#: An image holds at least this many objects across (larger images for the largest objects).
MIN_ACROSS = 8


def image_side(size: int, diameter: float) -> int:
    """``size``, or the multiple of 256 holding ``MIN_ACROSS`` objects across when that is larger."""
    return max(size, 256 * math.ceil(MIN_ACROSS * diameter / 256))


def make_set(size: int, diameter: float, images: int) -> tuple[int, list[tuple[np.ndarray, np.ndarray]]]:
    """``(side, [(image, labels), ...])``: ``nuclei`` images of ``diameter``-px objects, seeds 80000+."""
    side = image_side(size, diameter)
    density = tuple(c * 1e4 / (math.pi * diameter**2 / 4) for c in COVERAGE)
    config = preset("nuclei", shape=(side, side), diameter=(diameter, diameter), density=density)
    samples = [config.sample(SEED + i) for i in range(images)]
    return side, [(s.image, s.labels) for s in samples]


def true_size(labels: np.ndarray) -> float:
    """The labels' median equivalent diameter, pixels."""
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(equivalent_diameter(areas[areas > 0])))


def geometry_of(emb: Any) -> tuple[float, int]:
    """``(canvas scale, tiles)`` of an embedding run (tiles 1 for one embedding)."""
    first = emb.tiles[0] if isinstance(emb, TiledEmbeddings) else emb
    scale = first.input_size[0] / first.original_size[0]
    return float(scale), len(emb) if isinstance(emb, TiledEmbeddings) else 1


def run_image(
    model: Any, image: np.ndarray, labels: np.ndarray, args: argparse.Namespace, index: int
) -> dict[str, Any]:
    """Every figure of one image: per geometry prompts, AIS, times and canvas geometry; the baselines."""
    truth_d = true_size(labels)
    start = time.perf_counter()
    estimate = estimate_object_size(Preprocessor().normalized(image)[0])
    out: dict[str, Any] = {
        "true_size": truth_d,
        "estimate": estimate,
        "estimate_s": time.perf_counter() - start,
        "objects": int(labels.max()),
    }
    min_distance = max(2, round(truth_d / 4))
    out["watershed_f1"] = f1_at_iou(watershed_baseline(image, min_distance=min_distance), labels)[0]
    for name in GEOMETRIES:
        object_size: float | str = truth_d if name == "true" else name
        start = time.perf_counter()
        emb = compute_embeddings(image, model, object_size=object_size)
        embed_s = time.perf_counter() - start
        start = time.perf_counter()
        result = automatic(image, model=model, mode="ais", embeddings=emb)
        ais_s = time.perf_counter() - start
        f1, matches, n_pred, n_true = f1_at_iou(result.labels, labels)
        records = evaluate_objects(
            model,
            [(image, labels)],
            clicks=args.clicks,
            max_objects=args.max_objects,
            embed_options={"object_size": object_size},
        )
        scale, tiles = geometry_of(emb)
        out[name] = {
            "object_size": object_size,
            "scale": scale,
            "tiles": tiles,
            "embed_s": embed_s,
            "ais_s": ais_s,
            "ais_f1": f1,
            "ais_matches": matches,
            "ais_predicted": n_pred,
            "true_objects": n_true,
            "records": [{**asdict(r), "image": index} for r in records],
        }
    return out


def summarize_set(per_image: list[dict[str, Any]]) -> dict[str, Any]:
    """Means over a set's images (times, F1, geometry) and over its objects (IoUs)."""

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else math.nan

    summary: dict[str, Any] = {
        "true_size": mean([im["true_size"] for im in per_image]),
        "estimate_ratio": mean([(im["estimate"] or math.nan) / im["true_size"] for im in per_image]),
        "watershed_f1": mean([im["watershed_f1"] for im in per_image]),
        "objects": int(sum(im["objects"] for im in per_image)),
    }
    for name in GEOMETRIES:
        records = [r for im in per_image for r in im[name]["records"]]
        kinds = list(records[0]["iou"]) if records else []
        summary[name] = {
            "evaluated": len(records),
            "iou": {kind: mean([r["iou"][kind] for r in records]) for kind in kinds},
            **{
                key: mean([im[name][key] for im in per_image])
                for key in ("scale", "tiles", "embed_s", "ais_s", "ais_f1")
            },
        }
    return summary


def _f(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def print_tables(size: int, sets: list[dict[str, Any]], clicks: int) -> None:
    g = GEOMETRIES
    heads = " | ".join
    print(f"\n### {size}² images: prompts (mean IoU over the evaluated objects)\n")
    click_key = f"clicks_{clicks}"
    cols = [f"box {n}" for n in g] + [f"1 point {n}" for n in g]
    cols += [f"{clicks} clicks {n}" for n in g] if clicks else []
    print(f"| object size | image | objects | {heads(cols)} | Otsu in box |")
    print("|---" * (4 + len(cols)) + "|")
    for s in sets:
        m = s["summary"]
        values = [m[n]["iou"]["box"] for n in g] + [m[n]["iou"]["point"] for n in g]
        values += [m[n]["iou"][click_key] for n in g] if clicks else []
        print(
            f"| {s['diameter']:g} px | {s['side']}² | {m['fixed']['evaluated']} | "
            f"{heads(_f(v) for v in values)} | {_f(m['fixed']['iou'][BASELINE])} |"
        )
    print(f"\n### {size}² images: automatic segmentation (AIS F1 at IoU 0.5) and time per image\n")
    cols = [f"AIS F1 {n}" for n in g] + ["watershed F1"] + [f"embed + AIS s {n}" for n in g]
    print(f"| object size | objects / image | {heads(cols)} |")
    print("|---" * (2 + len(cols)) + "|")
    for s in sets:
        m = s["summary"]
        values = [_f(m[n]["ais_f1"]) for n in g] + [_f(m["watershed_f1"])]
        values += [f"{m[n]['embed_s']:.1f} + {m[n]['ais_s']:.1f}" for n in g]
        print(f"| {s['diameter']:g} px | {m['objects'] / len(s['images']):.0f} | {heads(values)} |")
    print(f"\n### {size}² images: geometry (canvas scale × tiles per image)\n")
    print("| object size | true size | auto: estimate / true | fixed | auto | true |")
    print("|---" * 6 + "|")
    for s in sets:
        m = s["summary"]
        geometry = [f"{m[n]['scale']:.2f} × {m[n]['tiles']:g}" for n in g]
        print(
            f"| {s['diameter']:g} px | {m['true_size']:.1f} | {_f(m['estimate_ratio'], 2)} | "
            f"{heads(geometry)} |"
        )
    print(f"\nmean over object sizes ({size}²):")
    for n in g:
        means = {key: float(np.mean([s["summary"][n]["iou"][key] for s in sets])) for key in ("box", "point")}
        f1 = float(np.mean([s["summary"][n]["ais_f1"] for s in sets]))
        seconds = float(np.mean([s["summary"][n]["embed_s"] + s["summary"][n]["ais_s"] for s in sets]))
        print(
            f"- {n}: box {means['box']:.3f}, 1 point {means['point']:.3f}, AIS F1 {f1:.3f}, "
            f"embed + AIS {seconds:.1f} s per image"
        )
    baseline = float(np.mean([s["summary"]["fixed"]["iou"][BASELINE] for s in sets]))
    watershed = float(np.mean([s["summary"]["watershed_f1"] for s in sets]))
    print(f"- baselines: Otsu in box {baseline:.3f}, watershed F1 {watershed:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[512], help="image sides, pixels")
    parser.add_argument("--diameters", type=float, nargs="+", default=[4, 8, 15, 30, 60, 120])
    parser.add_argument("--images", type=int, default=2, help="images per set")
    parser.add_argument("--max-objects", type=int, default=20, help="objects evaluated per image")
    parser.add_argument("--clicks", type=int, default=0, help="correction clicks after the point")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--model", default="nano")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    if min(args.images, args.max_objects, args.threads, *args.sizes) < 1 or args.clicks < 0:
        parser.error("--images, --max-objects, --threads and --sizes must be >= 1, --clicks >= 0")
    if min(args.diameters) < 1:
        parser.error("--diameters must be >= 1")
    torch.set_num_threads(args.threads)
    model = load_model(args.model, "cpu")
    warm = make_set(256, 20, 1)[1][0][0]
    for object_size in ("fixed", 6.0):  # warm-up: one embedding, then tiles (256 px × 40 / 6 > 1024)
        automatic(
            warm, model=model, mode="ais", embeddings=compute_embeddings(warm, model, object_size=object_size)
        )
    print(
        f"model {model.name}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"{args.images} images per set, seeds {SEED}+; object-size rule {model.object_scale}"
    )
    report: dict[str, Any] = {"model": model.name, "threads": torch.get_num_threads()}
    report["object_scale"] = repr(model.object_scale)
    report["args"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    report["sizes"] = {}
    begin = time.perf_counter()
    for size in args.sizes:
        sets = []
        for diameter in args.diameters:
            side, samples = make_set(size, diameter, args.images)
            images = [run_image(model, im, lab, args, i) for i, (im, lab) in enumerate(samples)]
            sets.append(
                {"diameter": diameter, "side": side, "images": images, "summary": summarize_set(images)}
            )
            print(f"  ({size}: d = {diameter:g} px on {side}² done, {time.perf_counter() - begin:.0f} s)")
        print_tables(size, sets, args.clicks)
        report["sizes"][str(size)] = sets
    print(f"\n({time.perf_counter() - begin:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(strict(report), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
