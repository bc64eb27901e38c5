"""Quality of the shipped nano model on held-out synthetic data by object size, beside a trivial baseline;
and its size and CPU speed.

    python benchmarks/eval_quality.py [--images 8] [--presets nuclei wide ...] [--model nano]
        [--object-size auto|PIXELS] [--threads 2] [--max-objects 40] [--json OUT]

Held-out sets (images never seen in training: seeds no training run draws):
- ``nuclei``: the richer generator's default preset (napari_sam.data.synthetic), a training family,
  seeds 50000+;
- ``wide``: its evaluation preset, every range wider than training's, seeds 60000+;
- ``touching``, ``small`` (objects 8-15 px across), ``cells`` (cytoplasm / membrane stain, labels = cells)
  and ``labelfree`` (phase-contrast / brightfield-like, labels = cells), each wider than its training
  family (the generator's HELD_OUT), and ``realistic`` (nuclei with every realism feature; a training
  family, like ``nuclei``), seeds 70000+ each — those of them that ``napari_sam.data.synthetic.PRESETS``
  has (a missing one is skipped with a note);
- ``basic``: the stage-1 training generator (scripts/train_nano.py's training_source) with other seeds.

Protocol (napari_sam.engine.training.evaluate, per object of each image, at most --max-objects a seeded
subset, objects under 9 px skipped): box = the object's half-open bounding box, one mask; 1 point = its
most interior pixel, best of 3 masks; 3 clicks = three correction clicks after the point, each on the most
interior pixel of the largest error region, with the previous logits. Baseline
(napari_sam.engine.training.box_baseline): Otsu's threshold of the values inside the same box, the
largest bright component, holes filled. Each image is embedded once, with --object-size passed to
compute_embeddings as ``object_size=`` when given.

Per set, one row for all objects and one per band of equivalent diameter 2·sqrt(area/π) (0-8, 8-15,
15-30, 30-60, 60-120, 120+ px; empty bands left out): objects, mean IoU of box / 1 point / 3 clicks and
of the baseline, box − baseline, and the area ratio predicted / true (median [25th, 75th percentile]) of
box and 1 point. Then issue 19's goals as PASS / FAIL lines: every set but ``basic``: box ≥ 0.85,
1 point ≥ 0.75, 3 clicks ≥ 0.88 (``small``: box ≥ 0.80, 1 point ≥ 0.70, no clicks goal), box at least
0.10 above the baseline, median area ratio of box and 1 point within 0.97-1.03.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _strict_json import strict  # noqa: E402
from train_nano import training_source  # noqa: E402

from napari_sam.data.synthetic import PRESETS, preset  # noqa: E402
from napari_sam.engine.loading import load_model  # noqa: E402
from napari_sam.engine.training.evaluate_objects import (  # noqa: E402
    BASELINE,
    BandSummary,
    ObjectRecord,
    evaluate_objects,
    summarize,
    summarize_by_size,
)

#: Held-out sets in report order: name -> first seed (``basic`` draws from its own generator stream).
HELD_OUT: dict[str, int] = {
    "nuclei": 50_000,
    "wide": 60_000,
    "touching": 70_000,
    "small": 70_000,
    "cells": 70_000,
    "labelfree": 70_000,
    "realistic": 70_000,
    "basic": 987_654,
}
CLICKS = 3
CLICK_KEY = f"clicks_{CLICKS}"
#: Issue 19's goals: set -> (box, 1 point, 3 clicks or None); every set but ``basic``.
TARGETS: dict[str, tuple[float, float, float | None]] = {"small": (0.80, 0.70, None)}
DEFAULT_TARGETS: tuple[float, float, float | None] = (0.85, 0.75, 0.88)
BASELINE_MARGIN = 0.10
AREA_RATIO_RANGE = (0.97, 1.03)


def held_out_sets(images: int, names: list[str]) -> Iterator[tuple[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """``(name, [(image, labels), ...])`` for each requested set, generated when its turn comes."""
    for name in names:
        if name == "basic":
            rng = np.random.default_rng(HELD_OUT["basic"])  # training draws from seed 0 streams
            yield name, [training_source(rng) for _ in range(images)]
        elif name not in PRESETS:
            print(f"\nnote: preset {name!r} is not in napari_sam.data.synthetic.PRESETS; skipped")
        else:
            samples = [preset(name).sample(HELD_OUT[name] + i) for i in range(images)]
            yield name, [(s.image, s.labels) for s in samples]


def encoder_seconds(model, runs: int = 5) -> float:
    x = torch.randn(1, 3, model.image_size, model.image_size)
    with torch.inference_mode():
        model.image_encoder(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model.image_encoder(x)
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def _band_name(summary: BandSummary) -> str:
    if summary.low == 0 and math.isinf(summary.high):
        return "all"
    if summary.low == 0:
        return f"< {summary.high:g} px"
    if math.isinf(summary.high):
        return f"≥ {summary.low:g} px"
    return f"{summary.low:g}–{summary.high:g} px"


def _ratio(summary: BandSummary, kind: str) -> str:
    q25, median, q75 = summary.area_ratio[kind]
    return f"{median:.2f} [{q25:.2f}, {q75:.2f}]"


def print_table(name: str, images: int, overall: BandSummary, bands: list[BandSummary]) -> None:
    seeds = "other seeds" if name == "basic" else f"seeds {HELD_OUT[name]}+"
    print(f"\n### {name} ({images} images, {seeds})\n")
    print(
        "| objects | n | box | 1 point | 3 clicks | Otsu in box | box − Otsu "
        "| area ratio box: median [q25, q75] | area ratio 1 point |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in [overall, *(b for b in bands if b.count)]:
        iou = row.mean_iou
        print(
            f"| {_band_name(row)} | {row.count} | {iou['box']:.3f} | {iou['point']:.3f} | "
            f"{iou[CLICK_KEY]:.3f} | {iou[BASELINE]:.3f} | {iou['box'] - iou[BASELINE]:+.3f} | "
            f"{_ratio(row, 'box')} | {_ratio(row, 'point')} |"
        )


def goals(name: str, overall: BandSummary) -> list[tuple[str, bool]]:
    """Issue 19's goals for one set: ``(description with the measured value, met)``; none for ``basic``."""
    if name == "basic" or overall.count == 0:
        return []
    box, point, clicks = TARGETS.get(name, DEFAULT_TARGETS)
    iou = overall.mean_iou
    found = [
        (f"box {iou['box']:.3f} ≥ {box:.2f}", iou["box"] >= box),
        (f"1 point {iou['point']:.3f} ≥ {point:.2f}", iou["point"] >= point),
    ]
    if clicks is not None:
        found.append((f"3 clicks {iou[CLICK_KEY]:.3f} ≥ {clicks:.2f}", iou[CLICK_KEY] >= clicks))
    margin = iou["box"] - iou[BASELINE]
    found.append(
        (f"box − Otsu in box {margin:+.3f} ≥ {BASELINE_MARGIN:+.2f}", margin >= BASELINE_MARGIN - 1e-12)
    )
    low, high = AREA_RATIO_RANGE
    for kind, label in (("box", "box"), ("point", "1 point")):
        median = overall.area_ratio[kind][1]
        found.append((f"median area ratio {label} {median:.3f} in [{low}, {high}]", low <= median <= high))
    return found


def _object_size(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a number of pixels, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number of pixels, got {text!r}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=8, help="images per held-out set")
    parser.add_argument("--presets", nargs="+", choices=list(HELD_OUT), default=list(HELD_OUT))
    parser.add_argument("--model", default="nano")
    parser.add_argument("--max-objects", type=int, default=40, help="objects evaluated per image")
    parser.add_argument(
        "--object-size", type=_object_size, help="compute_embeddings(object_size=...): pixels or 'auto'"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--json", type=Path, help="write the summaries, goals and per-object records here")
    args = parser.parse_args()
    if args.images < 1 or args.max_objects < 1 or args.threads < 1:
        parser.error("--images, --max-objects and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    embed_options: dict[str, Any] = {} if args.object_size is None else {"object_size": args.object_size}

    model = load_model(args.model, "cpu")
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model {model.name}: {params / 1e6:.2f} M parameters, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    seconds = encoder_seconds(model)
    print(f"CPU embedding of a 1024² image: {seconds:.3f} s (median of 5)")
    print(f"embedding options: {embed_options or 'defaults'}")

    report: dict[str, Any] = {}
    checks: list[tuple[str, str, bool]] = []
    for name, samples in held_out_sets(args.images, args.presets):
        start = time.perf_counter()
        records = evaluate_objects(
            model, samples, clicks=CLICKS, max_objects=args.max_objects, embed_options=embed_options
        )
        overall, bands = summarize(records), summarize_by_size(records)
        print_table(name, len(samples), overall, bands)
        print(f"\n({time.perf_counter() - start:.0f} s)")
        found = goals(name, overall)
        checks += [(name, text, met) for text, met in found]
        report[name] = _set_report(len(samples), overall, bands, found, records)

    if checks:
        print("\n### goals (issue 19)\n")
        for name, text, met in checks:
            print(f"{'PASS' if met else 'FAIL'} {name}: {text}")
        print(f"\n{sum(met for *_, met in checks)} of {len(checks)} goals met")
    if args.json:
        payload = {
            "model": model.name,
            "parameters": params,
            "encoder_seconds": seconds,
            "threads": torch.get_num_threads(),
            "embed_options": embed_options,
            "sets": report,
        }
        args.json.write_text(json.dumps(strict(payload), indent=1))
    return 0


def _set_report(
    images: int,
    overall: BandSummary,
    bands: list[BandSummary],
    found: list[tuple[str, bool]],
    records: list[ObjectRecord],
) -> dict[str, Any]:
    return {
        "images": images,
        "overall": asdict(overall),
        "bands": [asdict(b) for b in bands],
        "goals": [{"goal": text, "met": met} for text, met in found],
        "records": [asdict(r) for r in records],
    }


if __name__ == "__main__":
    raise SystemExit(main())
