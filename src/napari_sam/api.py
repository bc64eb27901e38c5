"""Headless entry points: ``segment()`` turns an image and prompts into a labels array."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine.device import DeviceLike
from .engine.embeddings import Embeddings, compute_embeddings
from .engine.loading import ModelLike, load_model
from .engine.predict import predict, validate_boxes, validate_points
from .engine.preprocess import DEFAULT_PERCENTILES, NormalizeMode

__all__ = ["TrainResult", "plan_objects", "segment", "train"]


@dataclass
class ObjectPrompt:
    """The prompts of one object: an optional box and its points (napari coordinates)."""

    box: np.ndarray | None = None  # (4,) half-open (min_row, min_col, max_row, max_col)
    points: list[np.ndarray] = field(default_factory=list)  # (2,) (row, col) each
    labels: list[int] = field(default_factory=list)

    @property
    def group_key(self) -> tuple[bool, int]:
        """Objects with equal keys are decoded together in one batch."""
        return (self.box is not None, len(self.points))


def _spatial_ndim(image: Any, channel_axis: int | None) -> int:
    shape = np.shape(image)
    if channel_axis is not None:
        return len(shape) - 1
    if len(shape) == 3 and shape[-1] <= 4:
        return 2
    if len(shape) == 4 and shape[-1] <= 4:
        return 3
    return len(shape)


def plan_objects(
    points: np.ndarray | None, point_labels: np.ndarray | None, boxes: np.ndarray | None
) -> list[ObjectPrompt]:
    """Group validated prompts into objects, following the library's contract.

    Each box is one object; a point inside a box (half-open) belongs to the smallest box containing it
    and refines that object; every other foreground point is an object of its own; background points
    outside all boxes are negative points for every point-object. Objects are ordered boxes first
    (box order), then foreground points (point order).

    Parameters
    ----------
    points
        ``(N, 2)`` ``(row, col)`` or None.
    point_labels
        ``(N,)`` 0/1 or None.
    boxes
        ``(M, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` or None.
    """
    objects = [ObjectPrompt(box=b) for b in (boxes if boxes is not None else [])]
    free_pos: list[np.ndarray] = []
    free_neg: list[np.ndarray] = []
    if points is not None and point_labels is not None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if boxes is not None else None
        for point, label in zip(points, point_labels, strict=True):
            owner = None
            if boxes is not None and areas is not None:
                r, c = point
                inside = (boxes[:, 0] <= r) & (r < boxes[:, 2]) & (boxes[:, 1] <= c) & (c < boxes[:, 3])
                if inside.any():
                    candidates = np.flatnonzero(inside)
                    owner = int(candidates[np.argmin(areas[candidates])])
            if owner is not None:
                objects[owner].points.append(point)
                objects[owner].labels.append(int(label))
            elif label == 1:
                free_pos.append(point)
            else:
                free_neg.append(point)
    for point in free_pos:
        objects.append(ObjectPrompt(points=[point, *free_neg], labels=[1] + [0] * len(free_neg)))
    return objects


def _paint(
    labels: np.ndarray, best: np.ndarray, masks: np.ndarray, scores: np.ndarray, ids: Sequence[int]
) -> None:
    """Write masks into ``labels`` where their score beats the score already there."""
    for mask, score, label in zip(masks, scores, ids, strict=True):
        win = mask & (score > best)
        labels[win] = label
        best[win] = score


def segment(
    image: Any,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    *,
    multimask: bool | str = "auto",
    embeddings: Embeddings | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Segment objects given by points and boxes; return a labels image.

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)`` numpy, dask or zarr array, any integer or float dtype.
    points
        ``(N, 2)`` ``(row, col)`` napari coordinates.
    point_labels
        ``(N,)``: 1 foreground, 0 background (default all 1).
    boxes
        ``(M, 4)`` ``(min_row, min_col, max_row, max_col)``, half-open like ``regionprops().bbox``.
    model
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, a weights path or a loaded model.
    device
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
    multimask
        ``"auto"``: a lone foreground point picks the best of 3 candidate masks; boxes and several
        points give one mask. True / False force either.
    embeddings
        Precomputed embeddings of ``image`` to reuse (skips the encoder).
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing, see :func:`napari_sam.engine.preprocess.prepare_image`.
    batch_size
        Objects decoded per call.

    Returns
    -------
    numpy.ndarray
        ``uint32`` labels with the image's spatial shape. Object ``k`` (boxes first, then foreground
        points, each in given order) gets label ``k + 1``; where masks overlap, the one with the higher
        predicted IoU wins.

    Examples
    --------
    >>> labels = segment(img, boxes=[[10, 10, 50, 60]], model="sam_vit_b_01ec64.pth")  # doctest: +SKIP
    """
    if _spatial_ndim(image, channel_axis) == 3:
        raise NotImplementedError(
            "segment() on 3D stacks (Z, Y, X) is not available in this version yet; segment one "
            "slice at a time (image[z]) with 2D points / boxes"
        )
    if points is None and boxes is None:
        raise NotImplementedError(
            "automatic segmentation (segment() with no points or boxes) is not available in this "
            "version yet; pass points= or boxes="
        )
    if multimask not in ("auto", True, False):
        raise ValueError(f"multimask must be 'auto', True or False, got {multimask!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    sam = load_model(model, device) if embeddings is None else (embeddings.model or load_model(model, device))
    if embeddings is None:
        embeddings = compute_embeddings(
            image,
            sam,
            normalize=normalize,
            percentiles=percentiles,
            contrast_limits=contrast_limits,
            channel=channel,
            channel_axis=channel_axis,
        )
    shape = tuple(embeddings.original_size)
    if tuple(np.shape(image)[:2]) != shape and channel_axis is None:
        raise ValueError(
            f"embeddings are of an image of shape {shape}, but image has shape {np.shape(image)}"
        )

    pts = labs = bxs = None
    if points is not None:
        pts_arr = np.asarray(points, dtype=float)
        if pts_arr.ndim != 2 or pts_arr.shape[1] != 2:
            raise ValueError(
                f"points must have shape (N, 2) rows (row, col) for a 2D image, got {pts_arr.shape}"
            )
        if pts_arr.shape[0]:
            p3, l3 = validate_points(pts_arr, point_labels, shape)
            pts, labs = p3[0], l3[0]
    elif point_labels is not None:
        raise ValueError("point_labels given without points")
    if boxes is not None:
        box_arr = np.asarray(boxes, dtype=float)
        if box_arr.ndim != 2 or box_arr.shape[1] != 4:
            raise ValueError(
                f"boxes must have shape (M, 4) rows (min_row, min_col, max_row, max_col) for a 2D "
                f"image, got {box_arr.shape}"
            )
        if box_arr.shape[0]:
            bxs = validate_boxes(box_arr, shape, name="boxes")

    objects = plan_objects(pts, labs, bxs)
    labels = np.zeros(shape, dtype=np.uint32)
    if not objects:
        return labels
    best = np.full(shape, -np.inf, dtype=np.float32)
    groups: dict[tuple[bool, int], list[int]] = {}
    for index, obj in enumerate(objects):
        groups.setdefault(obj.group_key, []).append(index)
    for (has_box, n_points), members in groups.items():
        lone_point = not has_box and n_points == 1
        use_multi = lone_point if multimask == "auto" else bool(multimask)
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            kwargs: dict[str, Any] = {}
            if has_box:
                kwargs["box"] = np.stack([objects[i].box for i in chunk])
            if n_points:
                kwargs["points"] = np.stack([np.stack(objects[i].points) for i in chunk])
                kwargs["point_labels"] = np.array([objects[i].labels for i in chunk])
            pred = predict(embeddings, multimask=use_multi, best_only=True, model=sam, **kwargs)
            _paint(labels, best, pred.masks[:, 0], pred.iou_scores[:, 0], [i + 1 for i in chunk])
    return labels


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    weights: Any  # Path of the trained model (safetensors)
    step: int
    history: list[dict[str, float]]


def train(
    data: Any,
    model: ModelLike = "nano",
    *,
    out: Any,
    steps: int = 500,
    batch_images: int = 4,
    objects_per_image: int = 8,
    crop_size: int = 256,
    lr: float = 1e-4,
    freeze_encoder: bool = False,
    seed: int = 0,
    device: DeviceLike = "auto",
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a model on annotated images (SAM-style interactive training).

    Parameters
    ----------
    data
        A folder of image/label pairs (``images/NAME.tif`` + ``labels/NAME.tif``, or ``NAME.tif`` +
        ``NAME_labels.tif``), or a callable ``rng → (image, labels)``.
    model
        Starting point: ``"nano"``, ``"vit_b"`` …, or a weights path. A new copy is trained; models
        already loaded elsewhere are not changed.
    out
        Output folder: ``checkpoint.pt`` (resumed when present), ``history.json``, ``model.safetensors``.
    steps, batch_images, objects_per_image, lr, seed
        Training length and batch composition.
    crop_size
        Side of the training crops on the 1024 canvas (nano only; ViT models use the whole canvas).
    freeze_encoder
        Train only the prompt encoder and mask decoder.

    Returns
    -------
    TrainResult
        ``weights`` is usable as ``model=`` everywhere.
    """
    import copy
    from pathlib import Path

    import torch

    from .engine.device import resolve_device
    from .engine.loading import open_model
    from .engine.train import TrainConfig, train_model
    from .engine.train_data import folder_source
    from .model import Sam, save_safetensors

    source = data if callable(data) else folder_source(data)
    sam = open_model(model) if not isinstance(model, Sam) else copy.deepcopy(model).cpu()
    nano = sam.config.encoder_type == "nano"
    cfg = TrainConfig(
        steps=steps,
        batch_images=batch_images,
        objects_per_image=objects_per_image,
        crop_size=crop_size if nano else None,
        lr=lr,
        freeze_encoder=freeze_encoder,
        seed=seed,
        checkpoint_every=100,
    )
    folder = Path(out)
    state = train_model(sam, source, cfg, out_dir=folder, device=resolve_device(device), progress=progress)
    weights = folder / "model.safetensors"
    save_safetensors(sam.cpu(), weights, config=sam.config, dtype=torch.float16)
    return TrainResult(weights=weights, step=state.step, history=state.history)
