"""Interactive SAM-style training: train the nano model from scratch, or fine-tune any model.

Each step draws images, prepares them exactly as inference does (normalise, resize the longest side
to the canvas, pad), cuts a token-aligned crop of the canvas (nano encoder only: it is convolutional),
and simulates a user: a jittered box or a point inside each object, then correction clicks sampled
from the error region with the previous low-resolution logits as mask prompt. Prompt coordinates and
the dense positional encoding are those of the crop's window inside the full canvas, so the model
sees the same geometry as at inference.

Loss per mask: ``focal_weight × focal + dice``; single-point prompts use the three ambiguity-aware
outputs and keep the best (minimum) loss; the IoU head regresses the true IoU of each output (MSE).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from ...model import Sam
from ..preprocess import prepare_image
from .data import ImageSource


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


@dataclass
class Canvas:
    """One training image prepared as model input, with its labels on the same canvas."""

    pixels: torch.Tensor  # (3, S, S) float32, normalised and padded
    labels: np.ndarray  # (S, S) int32 labels resized (nearest) to the canvas, 0 on the padding
    input_size: tuple[int, int]


@dataclass
class TrainState:
    """What :func:`train_model` returns: the history of logged losses and validation figures."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    validations: list[dict[str, float]] = field(default_factory=list)


def prepare_canvas(image: np.ndarray, labels: np.ndarray, model: Sam, **preprocess: Any) -> Canvas:
    """Preprocess like inference and put the labels on the same ``(S, S)`` canvas."""
    from PIL import Image

    labels = np.asarray(labels)
    if labels.shape != np.shape(image)[:2]:
        raise ValueError(f"labels shape {labels.shape} differs from the image's {np.shape(image)[:2]}")
    pixels, input_size, _, _ = prepare_image(
        image,
        image_size=model.image_size,
        pixel_mean=model.pixel_mean.cpu(),
        pixel_std=model.pixel_std.cpu(),
        max_upscale=model.max_upscale,
        **preprocess,
    )
    resized = Image.fromarray(labels.astype(np.int32)).resize(
        (input_size[1], input_size[0]), Image.Resampling.NEAREST
    )
    canvas = np.zeros((model.image_size, model.image_size), dtype=np.int32)
    canvas[: input_size[0], : input_size[1]] = np.asarray(resized)
    return Canvas(pixels=pixels[0], labels=canvas, input_size=input_size)


def _crop_window(canvas: Canvas, crop: int, rng: np.random.Generator, patch: int = 16) -> tuple[int, int]:
    """Token-aligned top-left corner ``(row, col)`` of a crop over the image part of the canvas."""
    corners = []
    for extent in canvas.input_size:
        last = max(0, min(extent, canvas.labels.shape[0]) - crop)
        corners.append(int(rng.integers(0, last // patch + 1)) * patch)
    return corners[0], corners[1]


@dataclass
class ObjectPrompts:
    """Prompts for ``N`` objects of one crop, in canvas ``(x, y)`` pixel coordinates."""

    boxes: torch.Tensor | None  # (N, 4) or None
    points: torch.Tensor | None  # (N, P, 2) or None
    labels: torch.Tensor | None  # (N, P)

    def with_points(self, points: torch.Tensor, labels: torch.Tensor) -> ObjectPrompts:
        """These prompts plus ``(N, 1, 2)`` more points with ``(N, 1)`` labels."""
        if self.points is None or self.labels is None:
            return ObjectPrompts(self.boxes, points, labels)
        return ObjectPrompts(
            self.boxes, torch.cat([self.points, points], 1), torch.cat([self.labels, labels], 1)
        )


def _sample_objects(labels: np.ndarray, cfg: TrainConfig, rng: np.random.Generator) -> list[np.ndarray]:
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    keep = ids[counts >= cfg.min_object_pixels]
    if keep.size == 0:
        return []
    chosen = rng.choice(keep, size=min(cfg.objects_per_image, keep.size), replace=False)
    return [labels == i for i in chosen]


def _box_of(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=np.float64)


def _jittered_boxes(masks: list[np.ndarray], cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    boxes = np.stack([_box_of(m) for m in masks])
    sides = np.stack([boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1], axis=1)
    noise = rng.normal(0.0, cfg.box_jitter, size=boxes.shape) * np.concatenate([sides, sides], axis=1)
    noise = np.clip(noise, -20, 20)
    side = masks[0].shape[0] - 1
    return np.clip(boxes + noise, 0, side)


def _random_points(masks: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    points = []
    for m in masks:
        rows, cols = np.nonzero(m)
        k = rng.integers(0, rows.size)
        points.append([cols[k], rows[k]])
    return np.asarray(points, dtype=np.float64)[:, None, :]


def _correction_points(
    pred: torch.Tensor, truth: torch.Tensor, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One click per object on its error region: ``(N, 1, 2)`` (x, y) crop coords and ``(N, 1)`` labels."""
    points, labels = [], []
    errors = (pred != truth).cpu().numpy()
    truth_np = truth.cpu().numpy() > 0.5
    for err, gt in zip(errors, truth_np, strict=True):
        rows, cols = np.nonzero(err)
        if rows.size == 0:  # already perfect: click inside the object
            rows, cols = np.nonzero(gt)
        k = rng.integers(0, rows.size)
        points.append([cols[k], rows[k]])
        labels.append(1 if gt[rows[k], cols[k]] else 0)
    return np.asarray(points, np.float64)[:, None, :], np.asarray(labels, np.int64)[:, None]


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels.

    ``(N, K, H, W)`` logits and ``(N, 1, H, W)`` target → ``(N, K)``.
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * ce * (1 - p_t) ** gamma).mean(dim=(-1, -2))


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Dice`` of soft masks: ``(N, K, H, W)``, ``(N, 1, H, W)`` → ``(N, K)``."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(-1, -2))
    total = prob.sum(dim=(-1, -2)) + target.sum(dim=(-1, -2))
    return 1.0 - (2.0 * inter + 1.0) / (total + 1.0)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded masks: ``(N, K, H, W)``, ``(N, 1, H, W)`` → ``(N, K)``."""
    pred = logits > 0
    gt = target > 0.5
    inter = (pred & gt).sum(dim=(-1, -2)).float()
    union = (pred | gt).sum(dim=(-1, -2)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


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

    def train_step(self, canvases: list[Canvas], rng: np.random.Generator) -> dict[str, float] | None:
        """One optimiser step on a batch; None (and no step) when the crops hold no usable object."""
        cfg, device, model = self.cfg, self.device, self.model
        model.train()
        if cfg.freeze_encoder:
            model.image_encoder.eval()
        crop = cfg.crop_size or model.image_size
        windows = [_crop_window(c, crop, rng) for c in canvases]
        pixels = torch.stack(
            [c.pixels[:, r : r + crop, q : q + crop] for c, (r, q) in zip(canvases, windows, strict=True)]
        ).to(device)
        with torch.set_grad_enabled(not cfg.freeze_encoder):
            features = model.image_encoder(pixels)
        full_pe = model.prompt_encoder.get_dense_pe()
        grid = crop // 16
        losses, ious = [], []
        for b, (canvas, (r0, c0)) in enumerate(zip(canvases, windows, strict=True)):
            crop_labels = canvas.labels[r0 : r0 + crop, c0 : c0 + crop]
            masks = _sample_objects(crop_labels, cfg, rng)
            if not masks:
                continue
            image_pe = full_pe[:, :, r0 // 16 : r0 // 16 + grid, c0 // 16 : c0 // 16 + grid]
            offset = torch.tensor([c0, r0], dtype=torch.float32, device=device)
            use_points = rng.random(len(masks)) < cfg.point_fraction
            for as_points in (False, True):
                group = [m for m, p in zip(masks, use_points, strict=True) if p == as_points]
                if not group:
                    continue
                truth = torch.from_numpy(np.stack(group).astype(np.float32)).to(device)
                if as_points:
                    pts = torch.as_tensor(_random_points(group, rng), dtype=torch.float32, device=device)
                    ones = torch.ones(pts.shape[:2], dtype=torch.int64, device=device)
                    prompts = ObjectPrompts(None, pts + offset, ones)
                else:
                    boxes = torch.as_tensor(
                        _jittered_boxes(group, cfg, rng), dtype=torch.float32, device=device
                    )
                    prompts = ObjectPrompts(boxes + offset.repeat(2), None, None)
                feats = features[b : b + 1]
                low, iou_pred = self._decode(feats, image_pe, prompts, None, multimask=as_points)
                loss, best, iou = self._losses(low, iou_pred, truth)
                losses.append(loss)
                ious.append(iou)
                for _ in range(cfg.correction_iters):
                    rows = torch.arange(low.shape[0], device=device)
                    prev = low[rows, best].detach()[:, None]
                    up = F.interpolate(prev, truth.shape[-2:], mode="bilinear", align_corners=False)
                    pts, labs = _correction_points(up[:, 0] > 0, truth > 0.5, rng)
                    new_pts = torch.as_tensor(pts, dtype=torch.float32, device=device) + offset
                    new_labs = torch.as_tensor(labs, device=device)
                    prompts = prompts.with_points(new_pts, new_labs)
                    low, iou_pred = self._decode(feats, image_pe, prompts, prev, multimask=False)
                    loss, best, iou = self._losses(low, iou_pred, truth)
                    losses.append(loss)
                    ious.append(iou)
        if not losses:
            return None
        total = torch.cat(losses).mean()
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(self.step)
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        self.optimizer.step()
        self.step += 1
        model.weights_sha256 = None  # the weights changed: embeddings made before no longer match
        return {"loss": float(total.detach()), "iou": float(torch.cat(ious).mean())}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "config": json.dumps(asdict(self.cfg)),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])


def _batches(
    source: ImageSource, model: Sam, cfg: TrainConfig, rng: np.random.Generator
) -> Iterator[list[Canvas]]:
    while True:
        batch = []
        while len(batch) < cfg.batch_images:
            image, labels = source(rng)
            batch.append(prepare_canvas(image, labels, model))
        yield batch


def train_model(
    model: Sam,
    source: ImageSource,
    cfg: TrainConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    validate: Callable[[Sam], dict[str, float]] | None = None,
    validate_every: int = 0,
    progress: bool = True,
    resume: bool = True,
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
        Hyper-parameters.
    out_dir
        Where ``checkpoint.pt`` (every ``cfg.checkpoint_every`` steps and at the end) and
        ``history.json`` go; with ``resume``, an existing checkpoint there is continued. The
        checkpoint holds the weights, the optimiser, the step, the history and the random generators'
        states, so a run killed at any point and resumed ends with the same weights as an
        uninterrupted run (same seed, device and thread count).
    device
        Torch device.
    validate, validate_every
        Called with the model every ``validate_every`` steps and at the end; returns figures to log.
    progress
        Show a tqdm progress bar.

    Returns
    -------
    TrainState
    """
    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig()
    if (
        cfg.crop_size is not None
        and model.config.encoder_type != "nano"
        and cfg.crop_size != model.image_size
    ):
        raise ValueError(
            f"crop training needs the convolutional nano encoder; for {model.name!r} use crop_size=None "
            "(whole canvas)"
        )
    device = torch.device(device)
    trainer = Trainer(model, cfg, device)
    state = TrainState()
    out = Path(out_dir) if out_dir is not None else None
    checkpoint = out / "checkpoint.pt" if out is not None else None
    saved: dict[str, Any] = {}
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and checkpoint is not None and checkpoint.is_file():
            saved = torch.load(checkpoint, map_location=device, weights_only=True)
            trainer.load_state_dict(saved)
            history = out / "history.json"
            if "history" in saved:
                loaded = json.loads(saved["history"])
            else:  # a checkpoint of an older version
                loaded = json.loads(history.read_text()) if history.is_file() else {}
            state.history = loaded.get("history", [])
            state.validations = loaded.get("validations", [])
    rng = np.random.default_rng([cfg.seed, trainer.step])
    torch.manual_seed(cfg.seed + trainer.step)
    recent: list[dict[str, float]] = []
    if "numpy_rng" in saved:  # go on exactly where the killed run was: same draws, same weights
        rng.bit_generator.state = json.loads(saved["numpy_rng"])
        torch.set_rng_state(saved["torch_rng"].cpu())
        if device.type == "cuda" and "cuda_rng" in saved:
            torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
        recent = json.loads(saved["history"]).get("recent", [])
    batches = _batches(source, model, cfg, rng)
    bar = tqdm(total=cfg.steps, initial=trainer.step, disable=not progress, desc="training")
    start = time.perf_counter()

    def save() -> None:
        if out is None or checkpoint is None:
            return
        payload = {"history": state.history, "validations": state.validations}
        record = {
            **trainer.state_dict(),
            "history": json.dumps({**payload, "recent": recent}),
            "numpy_rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
        }
        if device.type == "cuda":
            record["cuda_rng"] = torch.cuda.get_rng_state(device)
        tmp = checkpoint.with_suffix(".tmp")
        torch.save(record, tmp)
        tmp.replace(checkpoint)
        tmp = out / "history.json.tmp"
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(out / "history.json")

    empty_batches = 0
    while trainer.step < cfg.steps:
        figures = trainer.train_step(next(batches), rng)
        if figures is None:
            empty_batches += 1
            if empty_batches >= 50:
                raise ValueError(
                    f"50 training batches in a row held no object of at least {cfg.min_object_pixels} "
                    "pixels: check that the labels are instance labels (0 = background)"
                )
            continue
        empty_batches = 0
        recent.append(figures)
        bar.update(1)
        step = trainer.step
        if step % cfg.log_every == 0 or step == cfg.steps:
            entry = {
                "step": step,
                "loss": float(np.nanmean([f["loss"] for f in recent])),
                "iou": float(np.nanmean([f["iou"] for f in recent])),
                "lr": trainer.learning_rate(step),
                "seconds": time.perf_counter() - start,
            }
            state.history.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", iou=f"{entry['iou']:.3f}")
            recent = []
        if validate is not None and validate_every and (step % validate_every == 0 or step == cfg.steps):
            model.eval()
            with torch.no_grad():
                state.validations.append({"step": step, **validate(model)})
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            save()
    bar.close()
    model.eval()
    state.step = trainer.step
    save()
    return state
