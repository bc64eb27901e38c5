"""Train or fine-tune a model's instance decoder on user data (``train(..., instance_decoder=True)``).

A run has four parts:

1. **Data** (:func:`instance_data`): a folder of image/label pairs is read whole, one pair at a time;
   a callable ``rng → (image, labels)`` is drawn :data:`CALLABLE_PAIRS` times (pair ``i`` from
   ``numpy.random.default_rng([seed, i])``). :func:`validation_count` pairs are held out (a folder: a
   random choice by ``seed``; a callable: the last draws). Images larger than inference would embed
   whole (longest side over 2048 px) are cut into pieces of at most 1024 px, the tiles inference uses,
   so the decoder learns at the scale it will be used.
2. **Embeddings** (:func:`~.instance_training.embed_samples` on the frozen encoder), cached in the output
   folder (``instance_train.npz``, ``instance_validation.npz``, keyed in ``instance_data.json`` by the
   model's weights id, the files' names, sizes and times, and the seed), so a resumed run does not embed
   again.
3. **Training** (:func:`~.instance_training.train_instance_decoder`, resumable from
   ``checkpoint.pt`` in the folder): the model's own decoder is fine-tuned when it has one, else a new
   one is trained (:func:`new_instance_decoder`).
4. **Export** (:func:`export_instance_model`): the decoder of the best validation loss (``best.pt``;
   the last one without validation) attached to the model, written as ``model.safetensors``, and the
   decoder alone as micro-sam's bare ``decoder_state`` in ``model_decoder.pt``.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...model import InstanceDecoder, Sam
from ..steps import Progress, ProgressLike
from ..types.tiles import DEFAULT_TILE_SIZE, DEFAULT_TILE_THRESHOLD
from .data import find_pairs, read_pair
from .instance_training import (
    InstanceSamples,
    InstanceTrainConfig,
    InstanceTrainState,
    embed_samples,
    train_instance_decoder,
)

__all__ = [
    "CALLABLE_PAIRS",
    "INSTANCE_STEPS",
    "InstanceData",
    "InstanceRunResult",
    "check_out_folder",
    "export_instance_model",
    "instance_data",
    "instance_lr",
    "instance_train_config",
    "new_instance_decoder",
    "train_instance_run",
    "validation_count",
]

#: default optimiser steps (the shipped nano decoder's run: 800 steps of 4 windows)
INSTANCE_STEPS = 800
#: default peak learning rate of a new decoder (the shipped nano decoder's) and of a fine-tuned one
#: (ten times lower, so that the start's weights are refined rather than replaced)
NEW_DECODER_LR, FINE_TUNE_LR = 1e-3, 1e-4
#: pairs drawn from a callable ``rng → (image, labels)``; the last :data:`MAX_VALIDATION` are held out
CALLABLE_PAIRS = 48
#: at most this many pairs are held out for validation
MAX_VALIDATION = 8
#: files of a run in the output folder
CHECKPOINT, BEST = "checkpoint.pt", "best.pt"
WEIGHTS, DECODER = "model.safetensors", "model_decoder.pt"
_DATA_KEY, _TRAIN_NPZ, _VALIDATION_NPZ = "instance_data.json", "instance_train.npz", "instance_validation.npz"

#: reads one ``(image (H, W[, C]), labels (H, W) int64)`` pair
PairReader = Callable[[], tuple[np.ndarray, np.ndarray]]


def validation_count(pairs: int) -> int:
    """Pairs held out for validation out of ``pairs``: none under 5, else one in five, at most
    :data:`MAX_VALIDATION` (5 → 1, 10 → 2, 40 and more → 8)."""
    return 0 if pairs < 5 else min(MAX_VALIDATION, pairs // 5)


@dataclass(frozen=True)
class InstanceData:
    """The pairs of a run, split, not read yet.

    Attributes
    ----------
    train, validation
        Readers of the training and the held-out pairs.
    key
        What identifies the data (files with sizes and modification times, or the callable's name, and
        the seed) for the embedding cache.
    """

    train: list[PairReader]
    validation: list[PairReader]
    key: dict[str, Any]


def _folder_reader(image_path: Path, label_path: Path) -> PairReader:
    return lambda: read_pair(image_path, label_path)


def _callable_reader(source: Callable[[np.random.Generator], Any], seed: int, index: int) -> PairReader:
    def read() -> tuple[np.ndarray, np.ndarray]:
        drawn = source(np.random.default_rng([seed, index]))
        if not (isinstance(drawn, tuple) and len(drawn) == 2):
            raise TypeError(f"data(rng) must return a pair (image, labels), got {type(drawn).__name__}")
        image, labels = np.asarray(drawn[0]), np.asarray(drawn[1])
        if labels.ndim != 2 or labels.shape != image.shape[:2]:
            raise ValueError(
                f"data(rng) returned labels of shape {labels.shape}; expected 2D labels of the image's "
                f"shape {image.shape[:2]}"
            )
        return image, labels

    return read


def instance_data(data: Any, seed: int) -> InstanceData:
    """The pairs of ``data`` (a folder, or a callable ``rng → (image, labels)``), split for validation.

    A folder is listed here (:func:`~.data.find_pairs`: FileNotFoundError / ValueError when it holds
    none); files are read when embedded.
    """
    if callable(data):
        readers = [_callable_reader(data, seed, i) for i in range(CALLABLE_PAIRS)]
        split = CALLABLE_PAIRS - validation_count(CALLABLE_PAIRS)
        name = f"{getattr(data, '__module__', '')}.{getattr(data, '__qualname__', type(data).__name__)}"
        key: dict[str, Any] = {"callable": name, "pairs": CALLABLE_PAIRS, "seed": seed}
        return InstanceData(readers[:split], readers[split:], key)
    pairs = find_pairs(data)
    order = np.random.default_rng(seed).permutation(len(pairs))
    held = {int(i) for i in order[: validation_count(len(pairs))]}
    files = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for pair in pairs for p in pair]
    readers = [_folder_reader(*pair) for pair in pairs]
    return InstanceData(
        train=[r for i, r in enumerate(readers) if i not in held],
        validation=[r for i, r in enumerate(readers) if i in held],
        key={"files": files, "validation": sorted(held), "seed": seed},
    )


def _pieces(image: np.ndarray, labels: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(image, labels)`` whole, or — longest side over the tiling threshold — cut into a grid of
    near-equal pieces of at most :data:`DEFAULT_TILE_SIZE` px."""
    height, width = labels.shape
    if max(height, width) <= DEFAULT_TILE_THRESHOLD:
        yield image, labels
        return
    rows = np.linspace(0, height, math.ceil(height / DEFAULT_TILE_SIZE) + 1).round().astype(int)
    cols = np.linspace(0, width, math.ceil(width / DEFAULT_TILE_SIZE) + 1).round().astype(int)
    for r0, r1 in itertools.pairwise(rows):
        for c0, c1 in itertools.pairwise(cols):
            yield image[r0:r1, c0:c1], labels[r0:r1, c0:c1]


def _pairs(readers: list[PairReader], bar: Progress) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for read in readers:
        bar.check()
        yield from _pieces(*read())
        bar.advance()


def _samples(
    data: InstanceData, sam: Sam, out: Path, device: torch.device, progress: ProgressLike, cancel: Any
) -> tuple[InstanceSamples, InstanceSamples | None]:
    """Embeddings and targets of the training and validation pairs, from the folder's cache when it was
    made for the same model and data, else computed (and cached)."""
    from ..loading import model_weights_id

    key = {"model": model_weights_id(sam), **data.key}
    key_path, train_path, val_path = out / _DATA_KEY, out / _TRAIN_NPZ, out / _VALIDATION_NPZ
    cached = key_path.is_file() and json.loads(key_path.read_text()) == key
    if cached and train_path.is_file() and (val_path.is_file() or not data.validation):
        train = InstanceSamples.load(train_path)
        return train, InstanceSamples.load(val_path) if data.validation else None
    key_path.unlink(missing_ok=True)
    total = len(data.train) + len(data.validation)
    with Progress(progress, total, cancel=cancel, unit="image", what="embedding training images") as bar:
        train = embed_samples(_pairs(data.train, bar), sam, device=str(device))
        validation = (
            embed_samples(_pairs(data.validation, bar), sam, device=str(device)) if data.validation else None
        )
    train.save(train_path)
    if validation is not None:
        validation.save(val_path)
    key_path.write_text(json.dumps(key))
    return train, validation


def new_instance_decoder(sam: Sam) -> InstanceDecoder:
    """A randomly initialised decoder for ``sam``: the shipped nano decoder's architecture
    (``initial_features=16``, ``full_resolution=False``) for a nano encoder, micro-sam's
    (``initial_features=64``, full resolution) for a ViT one."""
    nano = sam.config.encoder_type == "nano"
    return InstanceDecoder(
        embed_dim=sam.config.prompt_embed_dim,
        image_size=sam.image_size,
        initial_features=16 if nano else 64,
        full_resolution=not nano,
    )


def instance_lr(sam: Sam) -> float:
    """The default peak learning rate: :data:`FINE_TUNE_LR` when ``sam`` has a decoder, else
    :data:`NEW_DECODER_LR`."""
    return FINE_TUNE_LR if sam.instance_decoder is not None else NEW_DECODER_LR


def instance_train_config(steps: int, batch_images: int, lr: float, seed: int) -> InstanceTrainConfig:
    """The run's :class:`~.instance_training.InstanceTrainConfig`: ``batch_images`` windows per step,
    validation about 8 times a run (every 100 steps at most), a checkpoint at least every 50 steps, a
    warm-up of a tenth of the steps (at most 50)."""
    validate_every = max(1, min(100, steps // 8))
    return InstanceTrainConfig(
        steps=steps,
        batch_size=batch_images,
        lr=float(lr),
        seed=seed,
        warmup_steps=min(50, steps // 10),
        validate_every=validate_every,
        checkpoint_every=min(50, validate_every),
    )


def check_out_folder(out: Path, *, instance: bool) -> None:
    """Refuse an output folder whose ``checkpoint.pt`` is another kind of run's (SAM training for an
    instance-decoder run, or the other way round): ValueError naming the folder."""
    path = out / CHECKPOINT
    if not path.is_file():
        return
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # an unreadable checkpoint: the training's own error reports it
        return
    is_instance = isinstance(saved, dict) and "decoder" in saved and "state" in saved
    if is_instance != instance:
        kind = "the instance decoder's" if is_instance else "SAM (interactive) training"
        raise ValueError(f"out={str(out)!r} holds a checkpoint of {kind} run; use another output folder")


def _check_config(out: Path, config: InstanceTrainConfig) -> None:
    """ValueError naming the settings that differ from those of the checkpoint in ``out`` (a resumed
    run must keep them)."""
    path = out / CHECKPOINT
    if not path.is_file():
        return
    saved = json.loads(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["config"])
    changed = [
        f"{k}: {saved.get(k)!r} then, {v!r} now" for k, v in asdict(config).items() if saved.get(k) != v
    ]
    if changed:
        raise ValueError(
            f"{path} was written by a run with other settings ({'; '.join(changed)}); run with the same "
            "steps, batch_images, lr and seed to resume it, or use another output folder"
        )


@dataclass
class InstanceRunResult:
    """What :func:`train_instance_run` produced.

    Attributes
    ----------
    weights, decoder
        ``out/model.safetensors`` (the model with the trained decoder) and ``out/model_decoder.pt``.
    state
        The training's state: ``step``, ``history`` (``step``, ``loss``, ``lr``, ``seconds``, ``val_loss``
        when validated), ``best_step``.
    train_images, validation_images
        Embeddings trained on and held out (pieces of large images count one each).
    """

    weights: Path
    decoder: Path
    state: InstanceTrainState
    train_images: int
    validation_images: int


def train_instance_run(
    sam: Sam,
    data: InstanceData,
    out: Path,
    *,
    steps: int,
    batch_images: int,
    lr: float | None,
    seed: int,
    device: torch.device,
    progress: ProgressLike = False,
    cancel: Any = None,
) -> InstanceRunResult:
    """Train ``sam``'s instance decoder (a new one when it has none) on ``data`` with the encoder frozen,
    resuming ``out``'s checkpoint, and write ``model.safetensors`` and ``model_decoder.pt`` there.

    ``sam`` is the caller's copy: its ``instance_decoder`` is replaced by the trained one (on the CPU).
    ``lr`` None takes :func:`instance_lr`. Raises ValueError when ``out`` holds a run with other settings
    (before anything is embedded).
    """
    config = instance_train_config(steps, batch_images, instance_lr(sam) if lr is None else lr, seed)
    out.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    decoder = copy.deepcopy(sam.instance_decoder) if sam.instance_decoder is not None else None
    if decoder is None:
        torch.manual_seed(seed)
        decoder = new_instance_decoder(sam)
    train, validation = _samples(data, sam, out, device, progress, cancel)
    decoder = decoder.to(device)
    state = train_instance_decoder(
        decoder, train, config, out, validation=validation, progress=progress, cancel=cancel
    )
    if (out / BEST).is_file():
        decoder.load_state_dict(torch.load(out / BEST, map_location=device, weights_only=True))
    sam.instance_decoder = decoder.cpu().eval()
    weights, decoder_path = export_instance_model(sam, out)
    return InstanceRunResult(
        weights, decoder_path, state, len(train), 0 if validation is None else len(validation)
    )


def export_instance_model(sam: Sam, out: Path) -> tuple[Path, Path]:
    """Write ``sam`` with its instance decoder as ``out/model.safetensors`` (float16) and the decoder
    alone as ``out/model_decoder.pt``: micro-sam's bare ``decoder_state`` (a dict of float32 tensors,
    what ``torch.load`` of a micro-sam ``*_decoder.pt`` gives)."""
    from ...model import save_safetensors

    if sam.instance_decoder is None:
        raise ValueError("the model has no instance decoder to export")
    weights, decoder_path = out / WEIGHTS, out / DECODER
    save_safetensors(sam, weights, config=sam.config, dtype=torch.float16)
    state = {
        k: (v.float() if v.is_floating_point() else v).detach().cpu().clone()
        for k, v in sam.instance_decoder.state_dict().items()
    }
    tmp = decoder_path.with_name(decoder_path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(decoder_path)
    return weights, decoder_path
