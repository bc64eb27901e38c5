"""Quality of the shipped nano model on held-out synthetic data, and its size and CPU speed.

    python benchmarks/eval_quality.py [--images 8] [--model nano] [--json OUT]

Held-out sets (never seen in training):
- ``basic``: the training generator (napari_sam.data.basic) with other seeds;
- ``nuclei``: the richer generator's default preset (napari_sam.data.synthetic), another appearance;
- ``wide``: the richer generator's evaluation preset: wider size, density, shape and noise ranges.

Protocol (napari_sam.engine.training.evaluate): box = the object's bounding box; 1 point = its most interior
pixel (best of 3 masks); clicks = correction clicks on the largest error region, up to 3.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from train_nano import training_source  # noqa: E402

from napari_sam.data.synthetic import preset  # noqa: E402
from napari_sam.engine.loading import load_model  # noqa: E402
from napari_sam.engine.training.evaluate import evaluate_prompts  # noqa: E402


def held_out_sets(images: int) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(987_654)  # training draws from seed 0 streams
    basic = [training_source(rng) for _ in range(images)]
    nuclei = [preset("nuclei").sample(50_000 + i) for i in range(images)]
    wide = [preset("wide").sample(60_000 + i) for i in range(images)]
    return {
        "basic": basic,
        "nuclei": [(s.image, s.labels) for s in nuclei],
        "wide": [(s.image, s.labels) for s in wide],
    }


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=8, help="images per held-out set")
    parser.add_argument("--model", default="nano")
    parser.add_argument("--max-objects", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = load_model(args.model, "cpu")
    params = sum(p.numel() for p in model.parameters())
    print(
        f"model {model.name}: {params / 1e6:.2f} M parameters, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    seconds = encoder_seconds(model)
    print(f"CPU embedding of a 1024² image: {seconds:.3f} s (median of 5)")
    results = {}
    print(
        "\n| set | objects | box | 1 point | +1 click | +2 clicks | +3 clicks |\n|---|---|---|---|---|---|---|"
    )
    for name, samples in held_out_sets(args.images).items():
        r = evaluate_prompts(model, samples, clicks=3, max_objects=args.max_objects)
        results[name] = r
        print(
            f"| {name} | {r['objects']} | {r['box']:.3f} | {r['point']:.3f} | {r['clicks_1']:.3f} | "
            f"{r['clicks_2']:.3f} | {r['clicks_3']:.3f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"encoder_seconds": seconds, "parameters": params, **results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
