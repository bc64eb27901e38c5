"""Train the shipped nano model on synthetic data only, and export its weights.

The shipped weights come from three runs (see docs/models.md):

    python scripts/train_nano.py --steps 2500 --seed 0 --export artifacts/nano-v0.safetensors
    python scripts/train_nano.py --init artifacts/nano-v0.safetensors --source mixed --steps 1000 \\
        --lr 2e-4 --warmup 50 --correction-iters 2 --seed 1 --out artifacts/nano-stage2
    python scripts/train_nano.py --init src/napari_sam/weights/nano.safetensors --source broad \
        --steps 2800 --lr 2e-4 --warmup 50 --correction-iters 2 --seed 2 --out artifacts/nano-stage3 \
        --export artifacts/nano-v2.safetensors   # then copied over the package's nano.safetensors
    python scripts/train_nano.py --init src/napari_sam/weights/nano.safetensors --source realistic \
        --object-scale --windows-per-image 2 --steps 3500 --lr 2e-4 --warmup 50 --correction-iters 2 \
        --seed 3 --out artifacts/nano-stage4 --export artifacts/nano-v3.safetensors
    python scripts/train_nano.py --init src/napari_sam/weights/nano.safetensors --source hard \
        --object-scale --windows-per-image 2 --steps 2800 --lr 1.5e-4 --warmup 50 --correction-iters 2 \
        --seed 4 --out artifacts/nano-stage5 --export artifacts/nano-v4.safetensors
    python scripts/train_nano.py --init src/napari_sam/weights/nano.safetensors --grow-depth 12 \
        --source stage6 --object-scale --windows-per-image 2 --steps 3000 --lr 2e-4 --warmup 50 \
        --correction-iters 2 --seed 5 --out artifacts/nano-stage6 --export artifacts/nano-v5.safetensors

Stage 1 draws from :mod:`napari_sam.data.basic` with randomised size, object count, object size and
dtype (``training_source``); stage 2 mixes those with the richer :mod:`napari_sam.data.synthetic`
presets (``mixed_source``); stage 3 adds :func:`broad_config` images (``broad_source``); stage 4
(``realistic_source``) trains at nano's object-scale geometry (``--object-scale``: each image scaled
by the rule inference uses for its objects' size) on the realistic families — nuclei, cells,
label-free (:data:`napari_sam.data.synthetic.TRAINING_OF`) — with a quarter of stage 3's mix so that
nothing learnt before is lost; stage 5 (``hard_source``) shifts that mix towards what v3 does worst:
clumps of touching nuclei and small nuclei, drawn from the training families' realism ranges (never the
held-out presets' wider ones); stage 6 (``stage6_source``) first grows the encoder by identity blocks
(``--grow-depth``) and gives the cell and label-free families half the draws. A run checkpoints to ``--out`` and resumes from there when
restarted. At the end the weights are written as float16 safetensors (``--export``) and their sha256
is printed for the registry.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_sam.data.basic import basic_nuclei_2d
from napari_sam.data.synthetic.generator import SyntheticConfig
from napari_sam.engine.training.evaluate import evaluate_prompts
from napari_sam.engine.training.train import TrainConfig, TrainRun, train_model
from napari_sam.model import build_sam, save_safetensors
from napari_sam.model.checkpoint import sha256_file
from napari_sam.model.sam import Sam, build_from_config

ROOT = Path(__file__).resolve().parents[1]


def training_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One random synthetic image: side 256–1024 px, diameters ~6–80 px, a few to hundreds of nuclei."""
    side = int(rng.integers(256, 1025))
    shape = (side, int(np.clip(side * rng.uniform(0.75, 1.33), 256, 1024)))
    r_min = float(rng.uniform(3.0, 12.0))
    r_max = float(rng.uniform(r_min + 2.0, 40.0))
    mean_area = np.pi * ((r_min + r_max) / 2) ** 2
    capacity = shape[0] * shape[1] / mean_area
    n = int(np.clip(capacity * rng.uniform(0.02, 0.35), 3, 400))
    dtype = [np.uint16, np.uint8, np.float32][int(rng.integers(0, 3))]
    return basic_nuclei_2d(
        shape, n_objects=n, radius=(r_min, r_max), seed=int(rng.integers(1 << 31)), dtype=dtype
    )


RICH_PRESETS = ("nuclei", "nuclei_sparse", "nuclei_dense")


def mixed_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: half the basic generator, half the richer one (napari_sam.data.synthetic presets)."""
    from napari_sam.data.synthetic import preset

    if rng.random() < 0.5:
        return training_source(rng)
    sample = preset(RICH_PRESETS[int(rng.integers(0, len(RICH_PRESETS)))]).sample(int(rng.integers(1 << 31)))
    return sample.image, sample.labels


def broad_config():
    """Stage 3: every range halfway between the ``nuclei`` preset's and the held-out ``wide`` preset's.

    Training stays narrower than ``wide`` (the held-out set keeps wider ranges than training), but
    covers more of the sizes, densities, shapes and noise levels that ``wide`` tests.
    """
    import dataclasses

    from napari_sam.data.synthetic import PRESETS

    base, wide = PRESETS["nuclei"], PRESETS["wide"]
    changes = {}
    for field in dataclasses.fields(base):
        a, b = getattr(base, field.name), getattr(wide, field.name)
        if field.name in ("shape", "dtype", "channels") or a == b:
            continue
        if isinstance(a, tuple) and len(a) == 2 and all(isinstance(v, (int, float)) for v in (*a, *b)):
            mid = tuple((x + y) / 2 for x, y in zip(a, b, strict=True))
            changes[field.name] = (
                tuple(round(v) for v in mid) if all(isinstance(v, int) for v in (*a, *b)) else mid
            )
    return base.replace(**changes)


def broad_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3: a quarter basic generator, a quarter richer presets, half :func:`broad_config`."""
    draw = rng.random()
    if draw < 0.5:
        return mixed_source(rng)
    sample = broad_config().sample(int(rng.integers(1 << 31)))
    return sample.image, sample.labels


#: Stage 4's families and their shares (the rest is stage 3's mix).
REALISTIC_SHARES = {"realistic": 0.35, "realistic_cells": 0.2, "realistic_labelfree": 0.2}


def realistic_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 4: the realistic training families (:data:`REALISTIC_SHARES`), a quarter stage 3's mix."""
    from napari_sam.data.synthetic import preset

    draw, edge = rng.random(), 0.0
    for name, share in REALISTIC_SHARES.items():
        edge += share
        if draw < edge:
            sample = preset(name).sample(int(rng.integers(1 << 31)))
            return sample.image, sample.labels
    return broad_source(rng)


@functools.cache
def _stage5_families() -> dict[str, SyntheticConfig]:
    """Stage 5's families: two of them narrow the ``realistic`` training family onto the cases v3 does
    worst (clumps of touching nuclei; small nuclei), inside the training realism ranges."""
    from napari_sam.data.synthetic import preset

    realistic = preset("realistic")
    return {
        "realistic": realistic,
        "clumps": realistic.replace(
            diameter=(12.0, 36.0),
            density=(3.0, 12.0),
            cluster_probability=(0.6, 0.95),
            overlap=(0.0, 0.25),
            aspect=(1.0, 1.8),
        ),
        "small": realistic.replace(diameter=(7.0, 18.0), density=(2.0, 24.0), nucleoli=(0.0, 1.0)),
        "realistic_cells": preset("realistic_cells"),
        "realistic_labelfree": preset("realistic_labelfree"),
    }


#: Stage 5's shares of :func:`_stage5_families` (the rest is stage 3's mix).
HARD_SHARES = {
    "realistic": 0.2,
    "clumps": 0.2,
    "small": 0.2,
    "realistic_cells": 0.15,
    "realistic_labelfree": 0.15,
}


def _family_mix(rng: np.random.Generator, shares: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """One image of :func:`_stage5_families` drawn with ``shares``; the rest of the draws stage 3's mix."""
    families = _stage5_families()
    draw, edge = rng.random(), 0.0
    for name, share in shares.items():
        edge += share
        if draw < edge:
            sample = families[name].sample(int(rng.integers(1 << 31)))
            return sample.image, sample.labels
    return broad_source(rng)


def hard_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 5: :data:`HARD_SHARES` of :func:`_stage5_families`, a tenth stage 3's mix."""
    return _family_mix(rng, HARD_SHARES)


#: Stage 6's shares of :func:`_stage5_families`: the cells and label-free families, where v4 is weakest,
#: get half the draws (the rest is stage 3's mix).
STAGE6_SHARES = {
    "realistic": 0.15,
    "clumps": 0.15,
    "small": 0.1,
    "realistic_cells": 0.25,
    "realistic_labelfree": 0.25,
}


def stage6_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stage 6: :data:`STAGE6_SHARES` of :func:`_stage5_families`, a tenth stage 3's mix."""
    return _family_mix(rng, STAGE6_SHARES)


def grow_depth(model: Sam, depth: int) -> Sam:
    """``model`` with ``depth`` stride-16 blocks in its nano encoder: the old blocks keep their weights
    and the new ones are appended as identities (their last projection is zero), so the grown model
    predicts exactly what ``model`` did until training moves the new blocks."""
    config = model.config
    if config.encoder_type != "nano":
        raise ValueError(f"--grow-depth needs a nano model, got encoder_type={config.encoder_type!r}")
    if depth <= config.encoder_depth:
        raise ValueError(f"--grow-depth must exceed the current depth {config.encoder_depth}, got {depth}")
    grown = build_from_config(dataclasses.replace(config, encoder_depth=depth), name=model.name)
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    new_prefixes = tuple(f"image_encoder.stage16.{i}." for i in range(config.encoder_depth, depth))
    if unexpected or not all(key.startswith(new_prefixes) for key in missing):
        raise RuntimeError(f"growing the encoder changed more than its new blocks: {missing}, {unexpected}")
    with torch.no_grad():
        for block in list(grown.image_encoder.stage16)[config.encoder_depth :]:
            block.project.weight.zero_()
            block.project.bias.zero_()
    return grown.train(model.training)


def hard_validation_samples(seed: int = 12345) -> list[tuple[np.ndarray, np.ndarray]]:
    """One image of each stage-5 family on fixed seeds (training seeds are drawn by the run's generator)."""
    samples = []
    for offset, config in enumerate(_stage5_families().values()):
        sample = config.sample(seed + offset)
        samples.append((sample.image, sample.labels))
    return samples


def validation_samples(seed: int = 12345, count: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [training_source(rng) for _ in range(count)]


def realistic_validation_samples(seed: int = 12345) -> list[tuple[np.ndarray, np.ndarray]]:
    """One image of each stage-4 family on seeds no training draw uses (training seeds are drawn
    from ``[0, 2**31)`` by the run's generator; these are fixed, and the held-out presets stay out)."""
    from napari_sam.data.synthetic import preset

    samples = []
    for offset, name in enumerate(REALISTIC_SHARES):
        sample = preset(name).sample(seed + offset)
        samples.append((sample.image, sample.labels))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-images", type=int, default=4)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--correction-iters", type=int, default=1)
    parser.add_argument("--init", type=Path, help="start from these weights (stage 2) instead of scratch")
    parser.add_argument(
        "--source", choices=("basic", "mixed", "broad", "realistic", "hard", "stage6"), default="basic"
    )
    parser.add_argument(
        "--grow-depth",
        type=int,
        help="append identity blocks to the --init nano encoder's stride-16 stage up to this depth",
    )
    parser.add_argument(
        "--object-scale",
        action="store_true",
        help="train at nano's object-scale geometry (each image scaled for its objects' size)",
    )
    parser.add_argument("--windows-per-image", type=int, default=1, help="with --object-scale")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "nano-train")
    parser.add_argument(
        "--export", type=Path, default=ROOT / "src" / "napari_sam" / "weights" / "nano.safetensors"
    )
    parser.add_argument("--validate-every", type=int, default=500)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    # the prompt model only: a decoder beside or inside --init reads the old encoder's features, so it is
    # not carried into the new weights (a new decoder is trained on them: train_nano_instance_decoder.py)
    model = build_sam("nano") if args.init is None else build_sam(args.init, instance_decoder=False)
    if args.grow_depth is not None:
        model = grow_depth(model, args.grow_depth)
    cfg = TrainConfig(
        steps=args.steps,
        batch_images=args.batch_images,
        objects_per_image=args.objects,
        lr=args.lr,
        seed=args.seed,
        correction_iters=args.correction_iters,
        warmup_steps=args.warmup,
        checkpoint_every=100,
        object_scale=args.object_scale,
        windows_per_image=args.windows_per_image,
    )
    held_out = {
        "realistic": realistic_validation_samples,
        "hard": hard_validation_samples,
        "stage6": hard_validation_samples,
    }.get(args.source, validation_samples)()
    start = time.perf_counter()
    state = train_model(
        model,
        {
            "basic": training_source,
            "mixed": mixed_source,
            "broad": broad_source,
            "realistic": realistic_source,
            "hard": hard_source,
            "stage6": stage6_source,
        }[args.source],
        cfg,
        TrainRun(
            out_dir=args.out,
            device=args.device,
            validate=lambda m: evaluate_prompts(m, held_out, clicks=1, max_objects=15),
            validate_every=args.validate_every,
        ),
    )
    minutes = (time.perf_counter() - start) / 60
    model = model.cpu().eval()
    meta = {
        "napari_sam_training": json.dumps(
            {
                "command": " ".join(sys.argv),
                "steps": state.step,
                "seed": args.seed,
                "minutes": round(minutes, 1),
            }
        )
    }
    args.export.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, args.export, config=model.config, dtype=torch.float16, metadata=meta)
    print(json.dumps({"steps": state.step, "minutes": minutes, "validations": state.validations}, indent=1))
    print(f"exported {args.export} sha256 {sha256_file(args.export)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
