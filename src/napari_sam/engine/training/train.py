"""Interactive SAM-style training: train the nano model from scratch, or fine-tune any model.

Each step draws images, prepares them exactly as inference does (:mod:`.canvas`: normalise, resize the
longest side to the canvas, pad), cuts a token-aligned crop of the canvas (nano encoder only: it is
convolutional), and simulates a user (:mod:`.simulate`): a jittered box or a point inside each object,
then correction clicks sampled from the error region with the previous low-resolution logits as mask
prompt. Prompt coordinates and the dense positional encoding are those of the crop's window inside the
full canvas, so the model sees the same geometry as at inference.

Loss per mask (:mod:`.losses`): ``focal_weight × focal + dice``; single-point prompts use the three
ambiguity-aware outputs and keep the best (minimum) loss; the IoU head regresses the true IoU of each
output (MSE).

The training loop is a step generator (:func:`iter_training`, one step per optimiser step) run by
:func:`train_model` through :func:`~napari_sam.engine.steps.run_steps`; its checkpoints are
:mod:`.checkpoint`'s.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ...model import Sam
from ..steps import ProgressLike, run_steps
from .canvas import TOKEN, Canvas, crop_window, object_scale_canvas, prepare_canvas
from .checkpoint import Checkpoint, restore_random_state
from .data import ImageSource
from .losses import dice_loss, focal_loss, mask_iou
from .simulate import ObjectPrompts, correction_points, jittered_boxes, random_points, sample_objects

__all__ = ["TrainConfig", "TrainRun", "TrainState", "Trainer", "iter_training", "train_model"]

#: Batches in a row without a usable object after which training gives up (the labels are likely wrong).
MAX_EMPTY_BATCHES = 50


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_model` (all have working defaults)."""

    steps: int = 2000
    batch_images: int = 4
    objects_per_image: int = 8
    crop_size: int | None = 256
    lr: float = 6e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    correction_iters: int = 1
    point_fraction: float = 0.5
    box_jitter: float = 0.08
    focal_weight: float = 20.0
    iou_weight: float = 1.0
    freeze_encoder: bool = False
    min_object_pixels: int = 12
    object_scale: bool = False
    object_size_jitter: float = 0.2
    windows_per_image: int = 1
    seed: int = 0
    log_every: int = 25
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        if self.steps < 0 or self.batch_images < 1 or self.objects_per_image < 1:
            raise ValueError("steps must be >= 0, batch_images and objects_per_image >= 1")
        if self.crop_size is not None and (self.crop_size < 16 or self.crop_size % 16):
            raise ValueError(f"crop_size must be a multiple of 16 (or None), got {self.crop_size}")
        if not 0.0 <= self.point_fraction <= 1.0:
            raise ValueError(f"point_fraction must be within [0, 1], got {self.point_fraction}")
        if self.windows_per_image < 1 or self.object_size_jitter < 0:
            raise ValueError(
                f"windows_per_image must be >= 1 and object_size_jitter >= 0, got "
                f"{self.windows_per_image} and {self.object_size_jitter}"
            )


@dataclass(frozen=True)
class TrainRun:
    """Where one training run keeps its files, where it runs and what it measures on the way — the
    run's settings that are not hyper-parameters (:class:`TrainConfig`).

    Attributes
    ----------
    out_dir
        Where ``checkpoint.pt`` (every ``cfg.checkpoint_every`` steps and at the end) and
        ``history.json`` go (None: nowhere). With ``resume``, an existing checkpoint there is
        continued: it holds the weights, the optimiser, the step, the history and the random
        generators' states, so a run killed at any point and resumed ends with the same weights as an
        uninterrupted run (same seed, device and thread count).
    device
        Torch device.
    validate, validate_every
        Called with the model every ``validate_every`` steps and at the end; returns figures to log.
    resume
        Continue the checkpoint in ``out_dir`` when there is one.
    """

    out_dir: str | Path | None = None
    device: torch.device | str = "cpu"
    validate: Callable[[Sam], dict[str, float]] | None = None
    validate_every: int = 0
    resume: bool = True


@dataclass
class TrainState:
    """What :func:`train_model` returns: the history of logged losses and validation figures."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    validations: list[dict[str, float]] = field(default_factory=list)


class Trainer:
    """Runs the training steps for one model; see :func:`train_model`."""

    def __init__(self, model: Sam, cfg: TrainConfig, device: torch.device) -> None:
        self.model = model.to(device)
        self.cfg = cfg
        self.device = device
        params = [
            p
            for name, p in model.named_parameters()
            if not (cfg.freeze_encoder and name.startswith("image_encoder."))
        ]
        if cfg.freeze_encoder:
            for p in model.image_encoder.parameters():
                p.requires_grad_(False)
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.step = 0

    def learning_rate(self, step: int) -> float:
        """Linear warm-up over ``warmup_steps``, then a cosine decay to 0 at ``steps``."""
        cfg = self.cfg
        if step < cfg.warmup_steps:
            return cfg.lr * (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    def _decode(
        self,
        features: torch.Tensor,
        image_pe: torch.Tensor,
        prompts: ObjectPrompts,
        mask_input: torch.Tensor | None,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, K, h, w)`` low-resolution logits and ``(N, K)`` predicted IoU of ``N`` objects (``K`` = 3
        with ``multimask``, else 1) on one crop's ``(1, D, g, g)`` features."""
        pe_module = self.model.prompt_encoder
        points = None
        if prompts.points is not None and prompts.labels is not None:
            points = (prompts.points, prompts.labels)
        sparse, _ = pe_module(points, prompts.boxes, None)
        n = sparse.shape[0]
        grid = features.shape[-2:]
        if mask_input is None:
            dense = pe_module.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(n, -1, *grid)
        else:
            dense = pe_module.mask_downscaling(mask_input)
        selected = slice(1, None) if multimask else slice(0, 1)
        return self.model.mask_decoder.predict_masks(features, image_pe, sparse, dense, mask_tokens=selected)

    def _losses(
        self, low_res: torch.Tensor, iou_pred: torch.Tensor, truth: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-object loss (min over candidates), the chosen candidate index and its IoU."""
        logits = F.interpolate(low_res, truth.shape[-2:], mode="bilinear", align_corners=False)
        target = truth[:, None]
        mask_loss = self.cfg.focal_weight * focal_loss(logits, target) + dice_loss(logits, target)
        with torch.no_grad():
            iou = mask_iou(logits, target)
        iou_loss = F.mse_loss(iou_pred, iou, reduction="none")
        total = mask_loss + self.cfg.iou_weight * iou_loss
        best = total.argmin(dim=1)
        rows = torch.arange(total.shape[0], device=total.device)
        return total[rows, best], best, iou[rows, best]

    def _prompts(
        self, group: list[np.ndarray], as_points: bool, offset: torch.Tensor, rng: np.random.Generator
    ) -> ObjectPrompts:
        """A point inside each mask of ``group`` or its jittered box, in canvas coordinates."""
        device = self.device
        if as_points:
            pts = torch.as_tensor(random_points(group, rng), dtype=torch.float32, device=device)
            ones = torch.ones(pts.shape[:2], dtype=torch.int64, device=device)
            return ObjectPrompts(None, pts + offset, ones)
        jittered = jittered_boxes(group, self.cfg.box_jitter, rng)
        boxes = torch.as_tensor(jittered, dtype=torch.float32, device=device)
        return ObjectPrompts(boxes + offset.repeat(2), None, None)

    def _object_losses(
        self,
        features: torch.Tensor,
        b: int,
        image_pe: torch.Tensor,
        masks: list[np.ndarray],
        offset: torch.Tensor,
        rng: np.random.Generator,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(loss, iou)`` per object of crop ``b``, for the first prompt and for each correction click."""
        device = self.device
        use_points = rng.random(len(masks)) < self.cfg.point_fraction
        for as_points in (False, True):
            group = [m for m, p in zip(masks, use_points, strict=True) if p == as_points]
            if not group:
                continue
            truth = torch.from_numpy(np.stack(group).astype(np.float32)).to(device)
            prompts = self._prompts(group, as_points, offset, rng)
            # one slice of the batch's features per group: the gradients add up in the order (and
            # rounding) of the runs that trained the shipped model
            feats = features[b : b + 1]
            low, iou_pred = self._decode(feats, image_pe, prompts, None, multimask=as_points)
            loss, best, iou = self._losses(low, iou_pred, truth)
            yield loss, iou
            for _ in range(self.cfg.correction_iters):
                rows = torch.arange(low.shape[0], device=device)
                prev = low[rows, best].detach()[:, None]
                up = F.interpolate(prev, truth.shape[-2:], mode="bilinear", align_corners=False)
                pts, labs = correction_points(up[:, 0] > 0, truth > 0.5, rng)
                new_pts = torch.as_tensor(pts, dtype=torch.float32, device=device) + offset
                prompts = prompts.with_points(new_pts, torch.as_tensor(labs, device=device))
                low, iou_pred = self._decode(feats, image_pe, prompts, prev, multimask=False)
                loss, best, iou = self._losses(low, iou_pred, truth)
                yield loss, iou

    def train_step(self, canvases: list[Canvas], rng: np.random.Generator) -> dict[str, float] | None:
        """One optimiser step on a batch; None (and no step) when the crops hold no usable object."""
        cfg, device, model = self.cfg, self.device, self.model
        model.train()
        if cfg.freeze_encoder:
            model.image_encoder.eval()
        crop = cfg.crop_size or model.image_size
        windows = [crop_window(c, crop, rng) for c in canvases]
        pixels = torch.stack(
            [c.pixels[:, r : r + crop, q : q + crop] for c, (r, q) in zip(canvases, windows, strict=True)]
        ).to(device)
        with torch.set_grad_enabled(not cfg.freeze_encoder):
            features = model.image_encoder(pixels)
        full_pe = model.prompt_encoder.get_dense_pe()
        grid = crop // TOKEN
        losses, ious = [], []
        for b, (canvas, (r0, c0)) in enumerate(zip(canvases, windows, strict=True)):
            crop_labels = canvas.labels[r0 : r0 + crop, c0 : c0 + crop]
            masks = sample_objects(crop_labels, cfg.objects_per_image, cfg.min_object_pixels, rng)
            if not masks:
                continue
            t0, q0 = r0 // TOKEN, c0 // TOKEN
            image_pe = full_pe[:, :, t0 : t0 + grid, q0 : q0 + grid]
            offset = torch.tensor([c0, r0], dtype=torch.float32, device=device)
            for loss, iou in self._object_losses(features, b, image_pe, masks, offset, rng):
                losses.append(loss)
                ious.append(iou)
        if not losses:
            return None
        total = torch.cat(losses).mean()
        self._optimise(total)
        return {"loss": float(total.detach()), "iou": float(torch.cat(ious).mean())}

    def _optimise(self, total: torch.Tensor) -> None:
        """One AdamW step on ``total`` at this step's learning rate (gradients clipped to norm 1)."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        self.model.weights_sha256 = None  # the weights changed: embeddings made before no longer match

    def state_dict(self) -> dict[str, Any]:
        """The model, the optimiser and the step (a checkpoint adds the history and random states)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "config": json.dumps(asdict(self.cfg)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s record."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


def _batches(
    source: ImageSource, model: Sam, cfg: TrainConfig, rng: np.random.Generator
) -> Iterator[list[Canvas]]:
    """Endless batches of ``cfg.batch_images`` canvases drawn from ``source``: with ``cfg.object_scale``
    at nano's object-scale geometry, ``cfg.windows_per_image`` windows of each image drawn."""
    pending: list[Canvas] = []
    while True:
        batch: list[Canvas] = []
        while len(batch) < cfg.batch_images:
            if not pending:
                image, labels = source(rng)
                if cfg.object_scale:
                    pending = [
                        object_scale_canvas(image, labels, model, rng, cfg.object_size_jitter)
                        for _ in range(cfg.windows_per_image)
                    ]
                else:
                    pending = [prepare_canvas(image, labels, model)]
            batch.append(pending.pop())
        yield batch


def _check_crop_size(model: Sam, cfg: TrainConfig) -> None:
    if (
        cfg.crop_size is not None
        and model.config.encoder_type != "nano"
        and cfg.crop_size != model.image_size
    ):
        raise ValueError(
            f"crop training needs the convolutional nano encoder; for {model.name!r} use crop_size=None "
            "(whole canvas)"
        )


def iter_training(
    model: Sam, source: ImageSource, cfg: TrainConfig | None = None, run: TrainRun | None = None
) -> Generator[tuple[int, int], None, TrainState]:
    """:func:`train_model` as a step generator: yields ``(step, cfg.steps)`` after each optimiser step
    (first the step it starts from), returns the :class:`TrainState`. Arguments as :func:`train_model`."""
    cfg = cfg or TrainConfig()
    run = run or TrainRun()
    _check_crop_size(model, cfg)
    device = torch.device(run.device)
    trainer = Trainer(model, cfg, device)
    state = TrainState()
    checkpoint = Checkpoint(run.out_dir, device) if run.out_dir is not None else None
    saved = checkpoint.load() if checkpoint is not None and run.resume else {}
    if checkpoint is not None and saved:
        trainer.load_state_dict(saved)
        state.history, state.validations = checkpoint.history(saved)
    rng = np.random.default_rng([cfg.seed, trainer.step])
    torch.manual_seed(cfg.seed + trainer.step)
    # go on exactly where a killed run was: same draws, same weights
    recent = restore_random_state(saved, rng, device)
    batches = _batches(source, model, cfg, rng)
    start = time.perf_counter()
    yield trainer.step, cfg.steps
    for figures in _optimiser_steps(trainer, batches, rng):
        recent.append(figures)
        step = trainer.step
        if _due(step, cfg.log_every, cfg.steps):
            state.history.append(_log_entry(trainer, recent, start))
            recent = []
        if run.validate is not None and run.validate_every and _due(step, run.validate_every, cfg.steps):
            state.validations.append({"step": step, **_validation(model, run.validate)})
        if checkpoint is not None and _due(step, cfg.checkpoint_every, cfg.steps):
            checkpoint.save(trainer.state_dict(), state.history, state.validations, recent, rng)
        yield step, cfg.steps
    model.eval()
    state.step = trainer.step
    if checkpoint is not None:
        checkpoint.save(trainer.state_dict(), state.history, state.validations, recent, rng)
    return state


def _validation(model: Sam, validate: Callable[[Sam], dict[str, float]]) -> dict[str, float]:
    """``validate``'s figures for ``model``, measured in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        return validate(model)


def _optimiser_steps(
    trainer: Trainer, batches: Iterator[list[Canvas]], rng: np.random.Generator
) -> Iterator[dict[str, float]]:
    """Train until ``cfg.steps``: the figures of each optimiser step (batches without an object are
    skipped; :data:`MAX_EMPTY_BATCHES` of them in a row are a ValueError)."""
    cfg = trainer.cfg
    empty_batches = 0
    while trainer.step < cfg.steps:
        figures = trainer.train_step(next(batches), rng)
        if figures is not None:
            empty_batches = 0
            yield figures
            continue
        empty_batches += 1
        if empty_batches >= MAX_EMPTY_BATCHES:
            raise ValueError(
                f"{MAX_EMPTY_BATCHES} training batches in a row held no object of at least "
                f"{cfg.min_object_pixels} pixels: check that the labels are instance labels "
                "(0 = background)"
            )


def _due(step: int, every: int, last: int) -> bool:
    """Whether something done every ``every`` steps (and at the ``last``) is due after ``step``."""
    return step % every == 0 or step == last


def _log_entry(trainer: Trainer, recent: list[dict[str, float]], start: float) -> dict[str, float]:
    """The history entry of the steps since the last one: mean loss and IoU, learning rate, time."""
    step = trainer.step
    return {
        "step": step,
        "loss": float(np.nanmean([f["loss"] for f in recent])),
        "iou": float(np.nanmean([f["iou"] for f in recent])),
        "lr": trainer.learning_rate(step),
        "seconds": time.perf_counter() - start,
    }


def train_model(
    model: Sam,
    source: ImageSource,
    cfg: TrainConfig | None = None,
    run: TrainRun | None = None,
    *,
    progress: ProgressLike = True,
    cancel: Any = None,
) -> TrainState:
    """Train ``model`` in place on images drawn from ``source``.

    Parameters
    ----------
    model
        The model to train (the nano model from scratch, or any model to fine-tune).
    source
        ``rng → (image, labels)``; see :func:`napari_sam.engine.training.data.synthetic_source` and
        :func:`~napari_sam.engine.training.data.folder_source`.
    cfg
        Hyper-parameters (default ``TrainConfig()``).
    run
        Output folder (checkpoints, resuming), device and validation (default ``TrainRun()``: on the
        CPU, nothing written).
    progress
        ``True``: a progress bar (the default); a callable ``progress(step, steps)``; ``False``: quiet
        (see :data:`~napari_sam.engine.steps.ProgressLike`).
    cancel
        A :class:`threading.Event`: once set, training stops before its next step
        (:class:`~napari_sam.errors.Cancelled`; the last checkpoint stays).

    Returns
    -------
    TrainState
    """
    steps = iter_training(model, source, cfg, run)
    return run_steps(steps, progress=progress, cancel=cancel, what="training", unit="step")
