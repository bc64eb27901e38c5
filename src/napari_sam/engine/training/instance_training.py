"""Train an instance decoder on a frozen image encoder: :func:`train_instance_decoder`.

The image embeddings are computed once (:func:`embed_samples`, the same preprocessing and geometry as
inference) and kept as float16; each step decodes a batch of embedding *windows* (``window`` × ``window``
tokens; with probability ``full_fraction`` a step takes all the tokens inference decodes instead — the
whole embedding for micro-sam's layout, the tokens covering the image for the half-resolution variant —
since the decoder's instance norms see its whole input) and compares the maps with the targets of
:func:`~napari_sam.engine.training.instance_targets.instance_target_maps` at the image's own resolution.

The maps of a window are brought to image pixels exactly as :meth:`InstanceDecoder.forward` brings the whole
map there (resize to the model input, crop to the resized image, resize to the original size): both
resizes are bilinear, hence separable linear maps, written once per image as a ``(H, M)`` and a ``(W, M)``
matrix (:func:`resize_matrix`); a window keeps the image pixels whose interpolation reads only its own
map pixels.

The loss is micro-sam's (torch_em ``DiceBasedDistanceLoss(mask_distances_in_bg=True)``): the dice error of
the foreground plus the dice errors of both distance maps, masked by the true foreground
(:func:`dice_distance_loss`). Adam, linear warm-up then cosine decay. The run checkpoints to its folder and
resumes from there; batches are drawn from ``numpy.random.default_rng([seed, step])``, so a resumed run
ends with the same weights as an unbroken one.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ...model import InstanceDecoder, Sam
from ..steps import ProgressLike, run_steps
from ..types import check_field, check_int, check_number
from .instance_targets import instance_target_maps

__all__ = [
    "InstanceSamples",
    "InstanceTrainConfig",
    "InstanceTrainState",
    "dice_distance_loss",
    "embed_samples",
    "resize_matrix",
    "train_instance_decoder",
    "validation_loss",
]

#: torch_em's dice epsilon
_DICE_EPS = 1e-7


@dataclass
class InstanceSamples:
    """Precomputed training data: embeddings and target maps of ``N`` images.

    Attributes
    ----------
    features
        ``(N, E, h, w)`` float16 image embeddings.
    targets
        ``N`` arrays ``(3, H_i, W_i)`` uint8: the target maps × 255, rounded.
    input_sizes, original_sizes
        ``N`` pairs ``(H'_i, W'_i)`` (resized, unpadded model input) and ``(H_i, W_i)``.
    """

    features: torch.Tensor
    targets: list[np.ndarray]
    input_sizes: list[tuple[int, int]]
    original_sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.targets)

    def save(self, path: str | Path) -> None:
        """Write an uncompressed ``.npz`` (through a temporary file)."""
        path = Path(path)
        arrays: dict[str, Any] = {f"targets_{i}": t for i, t in enumerate(self.targets)}
        arrays["features"] = self.features.numpy()
        arrays["input_sizes"] = np.asarray(self.input_sizes, dtype=np.int64).reshape(-1, 2)
        arrays["original_sizes"] = np.asarray(self.original_sizes, dtype=np.int64).reshape(-1, 2)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> InstanceSamples:
        with np.load(path) as data:
            count = len(data["input_sizes"])
            return cls(
                features=torch.from_numpy(data["features"]),
                targets=[data[f"targets_{i}"] for i in range(count)],
                input_sizes=[(int(a), int(b)) for a, b in data["input_sizes"]],
                original_sizes=[(int(a), int(b)) for a, b in data["original_sizes"]],
            )

    @classmethod
    def concat(cls, parts: Sequence[InstanceSamples]) -> InstanceSamples:
        if not parts:
            raise ValueError("parts must hold at least one InstanceSamples")
        return cls(
            features=torch.cat([p.features for p in parts]),
            targets=[t for p in parts for t in p.targets],
            input_sizes=[s for p in parts for s in p.input_sizes],
            original_sizes=[s for p in parts for s in p.original_sizes],
        )


def embed_samples(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    model: Sam,
    *,
    device: str = "cpu",
    min_size: int = 0,
) -> InstanceSamples:
    """Embed images with ``model`` (as :func:`napari_sam.compute_embeddings` does at inference) and make
    their target maps.

    Parameters
    ----------
    pairs
        ``(image (H, W) any dtype, labels (H, W) int)`` pairs; the image must fit one embedding (not tiled).
    model
        The SAM model whose (frozen) encoder the decoder will read.
    device
        Where the encoder runs.
    min_size
        Passed to :func:`instance_target_maps`.
    """
    from ..embed.embeddings import compute_embeddings
    from ..types import Embeddings

    features, targets, inputs, originals = [], [], [], []
    for image, labels in pairs:
        emb = compute_embeddings(image, model, device=device, tile=False)
        if not isinstance(emb, Embeddings):
            raise TypeError(f"expected one 2D embedding, got {type(emb).__name__}")
        features.append(emb.features.detach().to("cpu", torch.float16))
        maps = instance_target_maps(labels, min_size=min_size)
        targets.append(np.round(maps * 255).astype(np.uint8))
        inputs.append((int(emb.input_size[0]), int(emb.input_size[1])))
        originals.append((int(emb.original_size[0]), int(emb.original_size[1])))
    return InstanceSamples(torch.cat(features), targets, inputs, originals)


def resize_matrix(map_len: int, canvas_len: int, input_len: int, original_len: int) -> torch.Tensor:
    """The linear map of one axis of :meth:`InstanceDecoder.forward`'s resizing, ``(original_len, map_len)``.

    A map axis of ``map_len`` pixels is resized (bilinear, ``align_corners=False``) to the ``canvas_len``
    model-input pixels it covers (the whole canvas, or the tokens covering the image for the
    half-resolution variant), cropped to ``input_len`` and resized to ``original_len``; ``A @ x`` does the
    same to a vector ``x``.
    """
    eye = torch.eye(map_len).unsqueeze(1)  # (M, 1, M): M signals of one channel
    moved = F.interpolate(eye, size=canvas_len, mode="linear", align_corners=False)[..., :input_len]
    moved = F.interpolate(moved, size=original_len, mode="linear", align_corners=False)
    return moved[:, 0, :].T.contiguous()


def _dice_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    numerator = (pred * target).sum()
    denominator = (pred * pred).sum() + (target * target).sum()
    return 1.0 - 2.0 * numerator / denominator.clamp(min=_DICE_EPS)


def dice_distance_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """micro-sam's instance-decoder loss: foreground dice error + masked distance dice errors.

    Parameters
    ----------
    pred, target
        ``(B, 3, ...)`` or ``(3, N)`` float tensors of the same shape: foreground, centre distance,
        boundary distance. Sums run over the whole batch (torch_em flattens batch and pixels together).

    Returns
    -------
    torch.Tensor
        Scalar in ``[0, 3]``.
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    axis = 1 if pred.ndim > 2 else 0
    if pred.shape[axis] != 3:
        raise ValueError(f"pred must have 3 channels on axis {axis}, got shape {tuple(pred.shape)}")
    fg, cd, bd = (pred.select(axis, i) for i in range(3))
    t_fg, t_cd, t_bd = (target.select(axis, i) for i in range(3))
    return _dice_error(fg, t_fg) + _dice_error(cd * t_fg, t_cd * t_fg) + _dice_error(bd * t_fg, t_bd * t_fg)


@dataclass(frozen=True)
class InstanceTrainConfig:
    """How :func:`train_instance_decoder` trains (see the module docstring)."""

    steps: int = 2000
    batch_size: int = 4
    window: int = 32
    full_fraction: float = 0.25
    full_batch_size: int = 1
    lr: float = 1e-3
    min_lr_fraction: float = 0.05
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    seed: int = 0
    checkpoint_every: int = 50
    validate_every: int = 200

    def __post_init__(self) -> None:
        counts = ("steps", "batch_size", "window", "full_batch_size", "checkpoint_every", "validate_every")
        for name in counts:
            check_field(self, name, check_int, 1)
        check_field(self, "full_fraction", check_number, 0.0, 1.0)
        check_field(self, "lr", check_number, 0.0, math.inf, open_low=True)

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warm-up, then cosine down to
        ``lr * min_lr_fraction``."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.steps - self.warmup_steps)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))
        return self.lr * (self.min_lr_fraction + (1 - self.min_lr_fraction) * cosine)


@dataclass
class InstanceTrainState:
    """Where a run stands: steps done, the logged history and the best validation."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_loss: float = math.inf
    best_step: int = -1
    seconds: float = 0.0
    finished: bool = False


#: a window of an embedding: first token row, first token column, token rows, token columns
_Window = tuple[int, int, int, int]


def _extent(decoder: InstanceDecoder, samples: InstanceSamples, index: int) -> tuple[int, int]:
    """Token rows and columns the decoder reads for image ``index`` at inference: the whole embedding
    (micro-sam's layout), or the tokens covering the image (the half-resolution variant)."""
    rows, cols = samples.features.shape[-2:]
    if decoder.config.full_resolution:
        return rows, cols
    stride = decoder.image_size // cols
    height, width = samples.input_sizes[index]
    return min(rows, math.ceil(height / stride)), min(cols, math.ceil(width / stride))


def _decode_crops(
    decoder: InstanceDecoder, samples: InstanceSamples, indices: Sequence[int], windows: Sequence[_Window]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted and target maps of embedding windows, at image resolution, flattened and concatenated:
    two ``(3, N)`` float32 tensors. Windows of the same size are decoded as one batch."""
    device = next(decoder.parameters()).device
    stride = decoder.image_size // samples.features.shape[-1]
    groups: dict[tuple[int, int], list[int]] = {}
    for b, (_, _, height, width) in enumerate(windows):
        groups.setdefault((height, width), []).append(b)
    maps: dict[int, torch.Tensor] = {}
    for (height, width), members in groups.items():
        feats = torch.stack(
            [
                samples.features[indices[b], :, r : r + height, c : c + width]
                for b in members
                for r, c, _, _ in [windows[b]]
            ]
        ).to(device, torch.float32)
        for b, one in zip(members, decoder.decode(feats), strict=True):
            maps[b] = one  # (3, scale·height, scale·width)
    preds, targets = [], []
    for b, (i, window) in enumerate(zip(indices, windows, strict=True)):
        extent = _extent(decoder, samples, i)
        per_axis = []
        for axis in (0, 1):
            scale = maps[b].shape[1 + axis] // window[2 + axis]
            matrix = resize_matrix(
                extent[axis] * scale,
                extent[axis] * stride,
                samples.input_sizes[i][axis],
                samples.original_sizes[i][axis],
            )
            lo, hi = window[axis] * scale, (window[axis] + window[2 + axis]) * scale
            outside = matrix.clone()
            outside[:, lo:hi] = 0
            keep = torch.nonzero(outside.abs().sum(1) == 0).flatten()  # pixels read only from the window
            per_axis.append((matrix[keep][:, lo:hi].to(device), keep))
        (rows_m, rows), (cols_m, cols) = per_axis
        if rows.numel() == 0 or cols.numel() == 0:
            continue
        pred = rows_m @ maps[b] @ cols_m.T  # (3, h, w)
        t = samples.targets[i][:, rows.numpy()][:, :, cols.numpy()]
        preds.append(pred.reshape(3, -1))
        targets.append(torch.from_numpy(t.reshape(3, -1)).to(device, torch.float32) / 255.0)
    if not preds:
        raise ValueError("no window of this batch covers an image pixel")
    return torch.cat(preds, 1), torch.cat(targets, 1)


def _draw_batch(
    config: InstanceTrainConfig, decoder: InstanceDecoder, samples: InstanceSamples, step: int
) -> tuple[list[int], list[_Window]]:
    """The images and windows of step ``step`` (from ``default_rng([seed, step])``): ``window``² tokens, or
    with probability ``full_fraction`` all the tokens the decoder reads at inference — either cut to
    those tokens."""
    rng = np.random.default_rng([config.seed, step])
    full = rng.random() < config.full_fraction
    side = max(samples.features.shape[-2:]) if full else config.window
    count = min(len(samples), config.full_batch_size if full else config.batch_size)
    indices = [int(i) for i in rng.choice(len(samples), size=count, replace=False)]
    windows = []
    for i in indices:
        extent = _extent(decoder, samples, i)
        size = [min(side, extent[0]), min(side, extent[1])]
        start = [int(rng.integers(0, extent[axis] - size[axis] + 1)) for axis in (0, 1)]
        windows.append((start[0], start[1], size[0], size[1]))
    return indices, windows


def validation_loss(decoder: InstanceDecoder, samples: InstanceSamples) -> float:
    """Mean :func:`dice_distance_loss` of whole images decoded as at inference, one at a time."""
    was_training = decoder.training
    decoder.eval()
    losses = []
    with torch.no_grad():
        for i in range(len(samples)):
            pred, target = _decode_crops(decoder, samples, [i], [(0, 0, *_extent(decoder, samples, i))])
            losses.append(float(dice_distance_loss(pred, target)))
    decoder.train(was_training)
    return float(np.mean(losses))


def _save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _train_steps(
    decoder: InstanceDecoder,
    samples: InstanceSamples,
    config: InstanceTrainConfig,
    out_dir: Path,
    validation: InstanceSamples | None,
    max_seconds: float | None,
    log: Callable[[dict[str, float]], None] | None,
) -> Generator[tuple[int, int], None, InstanceTrainState]:
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path, best_path = out_dir / "checkpoint.pt", out_dir / "best.pt"
    params = [p for p in decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    state = InstanceTrainState()
    if ckpt_path.is_file():
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if json.loads(saved["config"]) != asdict(config):
            raise ValueError(f"{ckpt_path} was written by a run with another config; use another out_dir")
        decoder.load_state_dict(saved["decoder"])
        optimizer.load_state_dict(saved["optimizer"])
        state = InstanceTrainState(**json.loads(saved["state"]))
    started, seconds_before, recent = time.perf_counter(), state.seconds, []
    decoder.train()
    yield state.step, config.steps
    while state.step < config.steps:
        indices, windows = _draw_batch(config, decoder, samples, state.step)
        for group in optimizer.param_groups:
            group["lr"] = config.lr_at(state.step)
        pred, target = _decode_crops(decoder, samples, indices, windows)
        loss = dice_distance_loss(pred, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recent.append(loss.item())
        state.step += 1
        state.seconds = seconds_before + time.perf_counter() - started
        at_validation = state.step % config.validate_every == 0 or state.step == config.steps
        if at_validation:
            entry = {"step": state.step, "loss": float(np.mean(recent)), "lr": config.lr_at(state.step - 1)}
            entry["seconds"] = round(state.seconds, 1)
            recent = []
            if validation is not None:
                entry["val_loss"] = validation_loss(decoder, validation)
                if entry["val_loss"] < state.best_loss:
                    state.best_loss, state.best_step = entry["val_loss"], state.step
                    _save_atomic({k: v.detach().cpu() for k, v in decoder.state_dict().items()}, best_path)
            state.history.append(entry)
            if log is not None:
                log(entry)
        out_of_time = max_seconds is not None and time.perf_counter() - started > max_seconds
        state.finished = state.step >= config.steps
        if at_validation or state.step % config.checkpoint_every == 0 or state.finished or out_of_time:
            record = {
                "decoder": decoder.state_dict(),
                "optimizer": optimizer.state_dict(),
                "config": json.dumps(asdict(config)),
                "state": json.dumps(asdict(state)),
            }
            _save_atomic(record, ckpt_path)
            (out_dir / "history.json").write_text(json.dumps(asdict(state), indent=1))
        yield state.step, config.steps
        if out_of_time:
            break
    decoder.eval()
    return state


def train_instance_decoder(
    decoder: InstanceDecoder,
    samples: InstanceSamples,
    config: InstanceTrainConfig,
    out_dir: str | Path,
    *,
    validation: InstanceSamples | None = None,
    max_seconds: float | None = None,
    log: Callable[[dict[str, float]], None] | None = None,
    progress: ProgressLike = None,
    cancel: Any = None,
) -> InstanceTrainState:
    """Train ``decoder`` in place on precomputed ``samples``; resume from ``out_dir``'s checkpoint if any.

    Parameters
    ----------
    decoder
        The instance decoder (its weights are the start of a new run and are replaced on resume).
    samples
        Training data (:func:`embed_samples`).
    config
        Steps, batch, windows, learning rate, seed (:class:`InstanceTrainConfig`).
    out_dir
        Folder of ``checkpoint.pt`` (resume), ``best.pt`` (the decoder weights of the best validation
        loss) and ``history.json``.
    validation
        Samples whose whole-embedding loss is logged every ``validate_every`` steps; picks ``best.pt``.
    max_seconds
        Stop (after checkpointing) once this run has trained this long; call again to go on.
    log
        Called with each history entry (step, loss, lr, seconds, val_loss).
    progress, cancel
        See :mod:`napari_sam.engine.steps` (the unit is one optimiser step).

    Returns
    -------
    InstanceTrainState
        ``finished`` is False when ``max_seconds`` stopped the run early.
    """
    if len(samples) == 0:
        raise ValueError("samples must hold at least one image")
    steps = _train_steps(decoder, samples, config, Path(out_dir), validation, max_seconds, log)
    return run_steps(steps, progress=progress, cancel=cancel, what="instance decoder training", unit="step")
