"""Train the nano model's instance decoder (AIS maps) on synthetic data, export it, and score it.

The shipped ``src/napari_sam/weights/nano_decoder.safetensors`` (sha256 2010db17…) is the decoder of nano v4,
trained on v4's frozen encoder before v4 was shipped, from the v3 decoder (8 minutes + 3 of embedding)::

    python scripts/train_nano_instance_decoder.py --encoder artifacts/nano-v4.safetensors \
        --out artifacts/nano-decoder-v4 --init src/napari_sam/weights/nano_decoder.safetensors --images 384 \
        --realistic --steps 400 --lr 3e-4 --warmup 20 --seed 4 \
        --export artifacts/nano-decoder-v4/nano_decoder.safetensors --max-minutes 30 --threads 2

(its record, with the v3 decoder's — and inside it v2's — as ``previous_stage``, is
``docs/nano-decoder-training-history.json``). The v3 decoder (sha256 eff3c304…) was made the same way on
v3's encoder from the v2 decoder (``--encoder artifacts/nano-v3-prompt.safetensors --seed 2 --threads 1``).
The v2 decoder (sha256 3d080d55…), for the v2 encoder, was made in two stages
(2 shared CPU cores, ``nohup nice -n 5``, code of commit 636fe45). Stage 1 (800 steps, 44 minutes; sha256
b91e1c7e…, shipped first):

    python scripts/train_nano_instance_decoder.py --out artifacts/nano-decoder \\
        --export artifacts/nano-decoder/nano_decoder.safetensors --steps 800 --max-minutes 80

run twice, unchanged: the second run found the finished checkpoint, exported and scored the same weights
again and wrote ``--history``. Stage 2 from it (400 steps, 17 minutes; its record is ``continuation`` in the
history), which is the shipped file — better mean F1 over IoU 0.5:0.95 on every held-out set, F1 at IoU 0.5
within noise of stage 1:

    python scripts/train_nano_instance_decoder.py --out artifacts/nano-decoder-stage2 \\
        --data artifacts/nano-decoder/data --images 512 --init artifacts/nano-decoder/nano_decoder.safetensors \\
        --steps 400 --lr 3e-4 --warmup 20 --seed 1 \\
        --export artifacts/nano-decoder-stage2/nano_decoder.safetensors --max-minutes 35
    cp artifacts/nano-decoder-stage2/nano_decoder.safetensors src/napari_sam/weights/

(Stage 2: 128 more images — images 0-383 are the same, drawn from ``default_rng([data_seed, i])`` — other batches,
a lower learning rate). Since then, training decodes only the embedding tokens that cover the image for
this half-resolution decoder, as its inference does (before, whole-embedding steps and windows of
non-square images also read canvas padding), so the same command gives slightly different weights now.
The encoder is the shipped nano, frozen. The images come from the generators the nano was trained on
(``scripts/train_nano.py``: ``training_source``, the rich ``napari_sam.data.synthetic`` presets,
``broad_config``) and the ``wide`` preset, with sides of 256–1024 px and preset seeds drawn from
1_000_000 up (the held-out sets use seeds 10_000+, 20_000+, 50_000+, 60_000+ and rng 987_654). They are
embedded once as at inference (``compute_embeddings``: percentile normalisation, nano canvas 1024) and
cached under ``--out/data``; the decoder (``InstanceDecoder(initial_features=16,
full_resolution=False)``) then trains on 32×32-token windows, a quarter of the steps on whole embeddings
(:mod:`napari_sam.engine.training.instance_training`). The run checkpoints to ``--out`` and resumes there
when restarted; ``--max-minutes`` stops it (checkpointed) — restarting goes on.

At the end the decoder of the best validation loss is written as float16 safetensors (keys: the decoder's
own state-dict keys; metadata ``napari_sam_instance_decoder``: its config as JSON), its sha256 printed, and
it is scored on held-out images (``--eval-images`` per set): F1 at IoU 0.5 and the mean F1 over IoU
0.5:0.95 of AIS labels (``engine.automatic.ais.ais_labels``, default options) against the Otsu + watershed
baseline of ``benchmarks/bench_automatic.py``, on the ``nuclei`` (seeds 50_000+, as ``eval_quality.py``;
and 10_000+, as ``bench_automatic.py``) and ``wide`` (seeds 60_000+) presets; the record of the run
(config, losses, F1 table, sha256) goes to ``--history``. Run again with the same arguments, the command
resumes a stopped run, or, for a finished one, exports and scores it again (same file, same sha256).
``--eval-only`` scores an exported file without training.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_automatic import f1_at_iou, watershed_baseline  # noqa: E402
from train_nano import RICH_PRESETS, broad_config, training_source  # noqa: E402

import napari_sam  # noqa: E402
from napari_sam.data.synthetic import preset  # noqa: E402
from napari_sam.engine.training.instance_training import (  # noqa: E402
    InstanceSamples,
    InstanceTrainConfig,
    embed_samples,
    train_instance_decoder,
)
from napari_sam.model import InstanceDecoder  # noqa: E402
from napari_sam.model.checkpoint import sha256_file  # noqa: E402
from napari_sam.model.registry import NANO_SHA256  # noqa: E402

#: preset seeds of training images start here (held-out sets use 10_000–70_000)
FIRST_TRAIN_SEED = 1_000_000
CHUNK = 32
#: held-out sets: name -> (preset, first seed); eval_quality.py's nuclei and wide, bench_automatic.py's nuclei
EVAL_SETS = {"nuclei": ("nuclei", 50_000), "wide": ("wide", 60_000), "nuclei_bench": ("nuclei", 10_000)}
IOU_THRESHOLDS = np.round(np.arange(0.5, 0.96, 0.05), 2)


def _shape(rng: np.random.Generator) -> tuple[int, int]:
    side = int(rng.integers(256, 1025))
    return side, int(np.clip(side * rng.uniform(0.75, 1.33), 256, 1024))


def decoder_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training image: a quarter each from ``training_source``, the rich presets, ``broad_config``
    and the ``wide`` preset (the last three at a random size of 256–1024 px)."""
    draw = rng.random()
    if draw < 0.25:
        return training_source(rng)
    shape = _shape(rng)
    seed = int(rng.integers(FIRST_TRAIN_SEED, 1 << 31))
    if draw < 0.5:
        config = preset(RICH_PRESETS[int(rng.integers(0, len(RICH_PRESETS)))], shape=shape)
    elif draw < 0.75:
        config = broad_config().replace(shape=shape)
    else:
        config = preset("wide", shape=shape)
    sample = config.sample(seed)
    return sample.image, sample.labels


#: ``--realistic``: the realistic training families (``train_nano.py`` stage 4) drawn for this share
REALISTIC_SHARE = 0.4
REALISTIC_FAMILIES = ("realistic", "realistic_cells")


def realistic_decoder_source(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``--realistic``: :data:`REALISTIC_SHARE` of the images from the realistic nuclei and cell families
    (touching nuclei with dim seams, half-maximum labels) at a random size of 256–1024 px, the rest
    :func:`decoder_source`."""
    if rng.random() >= REALISTIC_SHARE:
        return decoder_source(rng)
    shape = _shape(rng)
    name = REALISTIC_FAMILIES[int(rng.integers(0, len(REALISTIC_FAMILIES)))]
    sample = preset(name, shape=shape).sample(int(rng.integers(FIRST_TRAIN_SEED, 1 << 31)))
    return sample.image, sample.labels


def make_samples(
    model: Any, folder: Path, name: str, count: int, seed: int, source: Any = None
) -> InstanceSamples:
    """``count`` images (image ``i`` drawn from ``default_rng([seed, i])``), embedded; cached in ``folder``
    in chunks of :data:`CHUNK`, so an interrupted precomputation resumes."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = []
    for first in range(0, count, CHUNK):
        last = min(count, first + CHUNK)
        path = folder / f"{name}_{first:05d}_{last:05d}.npz"
        if not path.is_file():
            start = time.perf_counter()
            draw = source or decoder_source
            pairs = (draw(np.random.default_rng([seed, i])) for i in range(first, last))
            embed_samples(pairs, model).save(path)
            print(
                f"{name}: images {first}-{last} embedded in {time.perf_counter() - start:.0f} s", flush=True
            )
        parts.append(InstanceSamples.load(path))
    return InstanceSamples.concat(parts)


def export(decoder: InstanceDecoder, path: Path, meta: dict[str, Any]) -> str:
    from safetensors.torch import save_file

    tensors = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in decoder.state_dict().items()
    }
    metadata = {"napari_sam_instance_decoder": json.dumps(decoder.config.to_dict())}
    metadata["napari_sam_training"] = json.dumps(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return sha256_file(path)


def load_exported(path: Path) -> InstanceDecoder:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        config = json.loads(handle.metadata()["napari_sam_instance_decoder"])
        state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    decoder = InstanceDecoder(**config)
    decoder.load_state_dict(state)
    return decoder.eval()


def evaluate(decoder: InstanceDecoder, model: Any, images: int) -> dict[str, Any]:
    """F1 at IoU 0.5 and mean F1 over 0.5:0.95 of AIS and of the watershed baseline, per held-out set.

    AIS runs as users run it (``napari_sam.automatic(mode="ais")``: the model's default geometry, tiles
    included) with ``decoder`` attached to ``model`` for the run; its own decoder and identity are put
    back afterwards. (A shallow copy would not do: an ``nn.Module`` copy shares its submodule table, so
    attaching the decoder to the copy changed the caller's model too.)
    """
    previous = model.instance_decoder, model.weights_sha256
    model.instance_decoder = decoder.eval()
    model.weights_sha256 = None  # another decoder: nothing cached for the model as loaded may be reused
    try:
        return _score_sets(model, images)
    finally:
        model.instance_decoder, model.weights_sha256 = previous


def _score_sets(paired: Any, images: int) -> dict[str, Any]:
    """:func:`evaluate`'s table for ``paired`` (a model with the decoder to score attached)."""
    table: dict[str, Any] = {}
    for name, (preset_name, first) in EVAL_SETS.items():
        rows = []
        for seed in range(first, first + images):
            sample = preset(preset_name).sample(seed)
            start = time.perf_counter()
            ours = napari_sam.automatic(sample.image, model=paired, mode="ais", device="cpu").labels
            seconds = time.perf_counter() - start
            base = watershed_baseline(sample.image)
            rows.append(
                {
                    "seed": seed,
                    "ais": [f1_at_iou(ours, sample.labels, t)[0] for t in IOU_THRESHOLDS],
                    "baseline": [f1_at_iou(base, sample.labels, t)[0] for t in IOU_THRESHOLDS],
                    "ais_seconds": seconds,
                }
            )
        result = {}
        for method in ("ais", "baseline"):
            scores = np.array([r[method] for r in rows])
            result[method] = {"f1_50": float(scores[:, 0].mean()), "f1_50_95": float(scores.mean())}
        result["ais_seconds"] = float(np.median([r["ais_seconds"] for r in rows]))
        table[name] = result
    return table


def print_table(table: dict[str, Any], images: int) -> None:
    print(
        f"\n| set ({images} images 512²) | AIS F1@0.5 | AIS F1@0.5:0.95 | baseline F1@0.5 | baseline F1@0.5:0.95 |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, r in table.items():
        print(
            f"| {name} | {r['ais']['f1_50']:.3f} | {r['ais']['f1_50_95']:.3f} | {r['baseline']['f1_50']:.3f} "
            f"| {r['baseline']['f1_50_95']:.3f} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "artifacts" / "nano-decoder")
    parser.add_argument(
        "--export", type=Path, default=ROOT / "src" / "napari_sam" / "weights" / "nano_decoder.safetensors"
    )
    parser.add_argument("--images", type=int, default=384, help="training images")
    parser.add_argument("--data", type=Path, help="folder of the cached data (default: --out/data)")
    parser.add_argument(
        "--data-seed", type=int, default=0, help="image i is drawn from default_rng([data_seed, i])"
    )
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--features", type=int, default=16, help="initial_features of the decoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--init", type=Path, help="start from this exported decoder (a later stage) instead of random weights"
    )
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--validate-every", type=int, default=100)
    parser.add_argument("--max-minutes", type=float, default=None)
    parser.add_argument("--eval-images", type=int, default=16)
    parser.add_argument(
        "--history",
        type=Path,
        default=ROOT / "docs" / "nano-decoder-training-history.json",
        help="where the run's record (config, losses, F1 table, sha256) is written",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on 2 shared cores, 2× faster than 2 threads)",
    )
    parser.add_argument("--eval-only", action="store_true", help="score --export without training")
    parser.add_argument(
        "--encoder",
        type=Path,
        help="nano weights whose frozen encoder the decoder reads (default: the shipped nano); a new nano "
        "and its decoder are trained one after the other and shipped together",
    )
    parser.add_argument(
        "--realistic", action="store_true", help="draw 40 %% of the images from the realistic families"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = napari_sam.load_model("nano" if args.encoder is None else args.encoder)
    if args.eval_only:
        table = evaluate(load_exported(args.export), model, args.eval_images)
        print_table(table, args.eval_images)
        print(json.dumps(table, indent=1))
        return 0
    start = time.perf_counter()
    data = args.out / "data" if args.data is None else args.data
    source = realistic_decoder_source if args.realistic else decoder_source
    train = make_samples(model, data, "train", args.images, args.data_seed, source)
    val = make_samples(model, data, "val", args.val_images, args.data_seed + 10_000, source)
    print(f"data ready: {len(train)} + {len(val)} images, {time.perf_counter() - start:.0f} s", flush=True)

    torch.manual_seed(args.seed)
    decoder = InstanceDecoder(
        initial_features=args.features, full_resolution=False, image_size=model.image_size
    )
    if args.init is not None:  # a later stage starts from an earlier stage's decoder
        decoder = load_exported(args.init).train()
    config = InstanceTrainConfig(
        steps=args.steps,
        batch_size=args.batch,
        window=args.window,
        lr=args.lr,
        warmup_steps=args.warmup,
        seed=args.seed,
        validate_every=args.validate_every,
    )
    state = train_instance_decoder(
        decoder,
        train,
        config,
        args.out,
        validation=val,
        max_seconds=None if args.max_minutes is None else args.max_minutes * 60,
        log=lambda entry: print(json.dumps(entry), flush=True),
    )
    print(
        f"stopped at step {state.step} ({'finished' if state.finished else 'time cap'}), best {state.best_step}"
    )
    best = args.out / "best.pt"
    if best.is_file():
        decoder.load_state_dict(torch.load(best, map_location="cpu", weights_only=True))
    decoder.eval()
    meta = {
        "command": " ".join(sys.argv),
        "steps": state.step,
        "best_step": state.best_step,
        "best_val_loss": state.best_loss,
        "train_images": len(train),
        "seed": args.seed,
        "data_seed": args.data_seed,
        "realistic": args.realistic,
        "minutes": round(state.seconds / 60, 1),
        "init_sha256": None if args.init is None else sha256_file(args.init),
        "encoder_sha256": sha256_file(args.encoder) if args.encoder is not None else NANO_SHA256,
    }
    digest = export(decoder, args.export, meta)
    print(f"exported {args.export} sha256 {digest}", flush=True)
    table = evaluate(load_exported(args.export), model, args.eval_images)
    print_table(table, args.eval_images)
    record = {
        "sha256": digest,
        "meta": meta,
        "decoder": decoder.config.to_dict(),
        "config": asdict(config),
        "f1": table,
        "eval_images_per_set": args.eval_images,
        "eval_sets": EVAL_SETS,
        "history": state.history,
    }
    if args.init is not None and args.history.is_file():  # keep the record of the stage this one started from
        earlier = json.loads(args.history.read_text())
        if earlier.get("sha256") == sha256_file(args.init):
            record["previous_stage"] = earlier
    args.history.parent.mkdir(parents=True, exist_ok=True)
    args.history.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.history}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
