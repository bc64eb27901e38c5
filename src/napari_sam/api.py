"""Headless entry points: ``segment()`` turns an image and prompts into a labels array."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .engine.device import DeviceLike
from .engine.embeddings import Embeddings, ImageLayout, VolumeEmbeddings, compute_embeddings, image_layout
from .engine.loading import ModelLike, load_model
from .engine.predict import predict, validate_boxes, validate_points
from .engine.preprocess import DEFAULT_PERCENTILES, NormalizeMode
from .engine.tiling import DEFAULT_TILE_THRESHOLD, TiledEmbeddings, localize

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
    embeddings: Embeddings | TiledEmbeddings | VolumeEmbeddings | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    batch_size: int = 32,
    cache: Any = None,
    overwrite: bool = False,
    tile: Any = None,
    tile_threshold: int = DEFAULT_TILE_THRESHOLD,
    precision: str = "auto",
    propagate: bool = True,
    propagate_options: dict[str, Any] | None = None,
) -> np.ndarray:
    """Segment objects given by points and boxes; return a labels image.

    Parameters
    ----------
    image
        ``(Y, X[, C])`` image or ``(Z, Y, X[, C])`` stack: numpy, dask or zarr array, any integer or
        float dtype.
    points
        ``(N, 2)`` ``(row, col)`` napari coordinates; for a stack ``(N, 3)`` ``(z, row, col)``, each
        point on its slice.
    point_labels
        ``(N,)``: 1 foreground, 0 background (default all 1).
    boxes
        ``(M, 4)`` ``(min_row, min_col, max_row, max_col)``, half-open like ``regionprops().bbox``; for
        a stack ``(M, 6)`` ``(min_z, min_row, min_col, max_z, max_row, max_col)`` with
        ``max_z = min_z + 1`` (a box drawn on one slice). Prompts only act on their own slice; only
        slices with prompts are embedded.
    model
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, a weights path or a loaded model.
    device
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
    multimask
        ``"auto"``: a lone foreground point picks the best of 3 candidate masks; boxes and several
        points give one mask. True / False force either.
    embeddings
        Precomputed embeddings of ``image`` to reuse (skips the encoder): :class:`Embeddings` or
        :class:`~napari_sam.engine.tiling.TiledEmbeddings` for an image, :class:`VolumeEmbeddings`
        for a stack.
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing, see :func:`napari_sam.engine.preprocess.prepare_image`.
    batch_size
        Objects decoded per call.
    cache, overwrite, tile, tile_threshold, precision
        Embedding options, see :func:`napari_sam.compute_embeddings`. With ``cache=`` a folder, the
        image is embedded once and later calls read the embeddings back (features stored as float16).
    propagate
        Stacks only. With prompts: True (default) propagates each prompted object up and down through
        the stack from its slice (:func:`napari_sam.propagate`; prompts are decoded with ``"auto"``
        multimask); False segments only the prompted slices. Without prompts: True links the
        per-slice automatic objects across slices into 3D objects
        (:func:`napari_sam.engine.linking.link_slices`); False keeps one label per slice object.
    propagate_options
        Keywords for :func:`napari_sam.propagate` (``z_range``, ``iou_threshold``, ``prompt`` …).

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
    if points is None and boxes is None:  # no prompts: automatic segmentation, slice by slice
        from .engine.automatic import automatic_labels

        stack = image_layout(image, channel_axis).is_volume
        auto_labels = automatic_labels(
            image,
            stack=stack,
            model=model,
            device=device,
            embeddings=embeddings if isinstance(embeddings, Embeddings) else None,
            normalize=normalize,
            percentiles=percentiles,
            contrast_limits=contrast_limits,
            channel=channel,
            channel_axis=channel_axis,
            precision=precision,
        )
        if stack and propagate:
            from .engine.linking import link_slices

            return link_slices(auto_labels)
        return auto_labels
    if multimask not in ("auto", True, False):
        raise ValueError(f"multimask must be 'auto', True or False, got {multimask!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")

    layout = image_layout(image, channel_axis)
    embed_options: dict[str, Any] = {
        "normalize": normalize,
        "percentiles": percentiles,
        "contrast_limits": contrast_limits,
        "channel": channel,
        "channel_axis": channel_axis,
        "cache": cache,
        "overwrite": overwrite,
        "tile": tile,
        "tile_threshold": tile_threshold,
        "precision": precision,
    }
    given_model = getattr(embeddings, "model", None)
    sam = given_model if given_model is not None else load_model(model, device)
    if layout.is_volume and propagate:
        from .engine.propagate import propagate as propagate_stack

        return propagate_stack(
            image,
            points=points,
            point_labels=point_labels,
            boxes=boxes,
            model=sam,
            embeddings=embeddings,
            **(propagate_options or {}),
            **embed_options,
        ).labels
    if layout.is_volume:
        return _segment_stack(
            image, layout, points, point_labels, boxes, sam, embeddings, multimask, batch_size, embed_options
        )
    if embeddings is None:
        embeddings = compute_embeddings(image, sam, **embed_options)
    if not isinstance(embeddings, (Embeddings, TiledEmbeddings)):
        raise TypeError(
            "embeddings for a 2D image must be Embeddings or TiledEmbeddings, got "
            f"{type(embeddings).__name__}"
        )
    shape = tuple(embeddings.original_size)
    if layout.plane_shape != shape:
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
    _decode_into(labels, embeddings, objects, list(range(1, len(objects) + 1)), sam, multimask, batch_size)
    return labels


def _decode_into(
    labels: np.ndarray,
    embeddings: Embeddings | TiledEmbeddings,
    objects: Sequence[ObjectPrompt],
    ids: Sequence[int],
    sam: Any,
    multimask: bool | str,
    batch_size: int,
) -> None:
    """Decode ``objects`` on one slice and paint them into ``labels`` ``(Y, X)`` with labels ``ids``.

    On tiled embeddings each object is decoded on its tile (or a window centred on it) and painted
    into that window.
    """
    if not objects:
        return
    best = np.full(labels.shape, -np.inf, dtype=np.float32)
    # (embeddings, window slices, has box, points per object) -> [(label, box, points, point labels)]
    groups: dict[tuple[Any, ...], list[tuple[int, Any, Any, Any]]] = {}
    window_embeddings: dict[Any, Any] = {}
    for obj, label in zip(objects, ids, strict=True):
        obj_points = np.stack(obj.points) if obj.points else None
        obj_labels = np.asarray(obj.labels) if obj.points else None
        if isinstance(embeddings, TiledEmbeddings):
            local = localize(embeddings, obj.box, obj_points, obj_labels)
            if local is None:
                continue
            bounds, box, obj_points, obj_labels = local.bounds, local.box, local.points, local.labels
            window_embeddings[bounds] = local.embeddings
        else:
            bounds, box = None, obj.box
        n_points = 0 if obj_points is None else len(obj_points)
        groups.setdefault((bounds, box is not None, n_points), []).append(
            (label, box, obj_points, obj_labels)
        )
    for (bounds, has_box, n_points), members in groups.items():
        emb = embeddings if bounds is None else window_embeddings[bounds]
        region = (
            (slice(None), slice(None))
            if bounds is None
            else (slice(bounds[0], bounds[2]), slice(bounds[1], bounds[3]))
        )
        lone_point = not has_box and n_points == 1
        use_multi = lone_point if multimask == "auto" else bool(multimask)
        for start in range(0, len(members), batch_size):
            chunk = members[start : start + batch_size]
            kwargs: dict[str, Any] = {}
            if has_box:
                kwargs["box"] = np.stack([m[1] for m in chunk])
            if n_points:
                kwargs["points"] = np.stack([m[2] for m in chunk])
                kwargs["point_labels"] = np.stack([m[3] for m in chunk])
            pred = predict(emb, multimask=use_multi, best_only=True, model=sam, **kwargs)
            _paint(
                labels[region], best[region], pred.masks[:, 0], pred.iou_scores[:, 0], [m[0] for m in chunk]
            )


def _as_slice_index(values: np.ndarray, n_slices: int, what: str) -> np.ndarray:
    """Integer slice numbers from float ``values``; clear errors for fractions and out-of-range slices."""
    rounded = np.round(values)
    if not np.allclose(values, rounded, atol=1e-6):
        raise ValueError(
            f"{what} must name whole slice numbers, got {values[~np.isclose(values, rounded)][:3]}"
        )
    out = rounded.astype(np.int64)
    bad = (out < 0) | (out >= n_slices)
    if bad.any():
        raise ValueError(f"{what} {out[bad][:3].tolist()} out of range for a stack of {n_slices} slices")
    return out


def _inside_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """``(N,)`` bool: point ``(row, col)`` lies in at least one half-open box (as :func:`plan_objects`)."""
    if len(boxes) == 0 or len(points) == 0:
        return np.zeros(len(points), dtype=bool)
    r, c = points[:, 0:1], points[:, 1:2]
    inside = (
        (boxes[None, :, 0] <= r)
        & (r < boxes[None, :, 2])
        & (boxes[None, :, 1] <= c)
        & (c < boxes[None, :, 3])
    )
    return inside.any(axis=1)


def _segment_stack(
    image: Any,
    layout: ImageLayout,
    points: Any,
    point_labels: Any,
    boxes: Any,
    sam: Any,
    embeddings: Any,
    multimask: bool | str,
    batch_size: int,
    embed_options: dict[str, Any],
) -> np.ndarray:
    """:func:`segment` on a ``(Z, Y, X[, C])`` stack with prompts that each name their slice."""
    n_slices, rows, cols = (int(v) for v in layout.spatial_shape)
    plane = (rows, cols)
    pts = np.zeros((0, 3))
    labs = np.zeros(0, dtype=np.int64)
    if points is not None:
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(
                f"points must have shape (N, 3) rows (z, row, col) for a 3D stack, got {pts.shape}"
            )
        if len(pts):
            _, l3 = validate_points(pts[:, 1:], point_labels, plane)
            labs = l3[0]
    elif point_labels is not None:
        raise ValueError("point_labels given without points")
    bxs = np.zeros((0, 6))
    if boxes is not None:
        bxs = np.asarray(boxes, dtype=float)
        if bxs.ndim != 2 or bxs.shape[1] != 6:
            raise ValueError(
                "boxes must have shape (M, 6) rows (min_z, min_row, min_col, max_z, max_row, max_col) for "
                f"a 3D stack, got {bxs.shape}"
            )
        if len(bxs) and not np.allclose(bxs[:, 3], bxs[:, 0] + 1):
            bad = bxs[~np.isclose(bxs[:, 3], bxs[:, 0] + 1)][0]
            raise ValueError(
                f"every 3D box must lie on one slice (max_z == min_z + 1), got {bad.tolist()}; objects "
                "are followed through the stack by propagation (segment(..., propagate=True), "
                "napari_sam.propagate), not by boxes spanning slices"
            )
    point_z = _as_slice_index(pts[:, 0], n_slices, "points z") if len(pts) else np.zeros(0, np.int64)
    box_z = _as_slice_index(bxs[:, 0], n_slices, "boxes min_z") if len(bxs) else np.zeros(0, np.int64)
    plane_boxes = validate_boxes(bxs[:, [1, 2, 4, 5]], plane, name="boxes") if len(bxs) else np.zeros((0, 4))

    # global object numbering: boxes first (given order), then free foreground points (given order)
    box_ids = np.arange(1, len(bxs) + 1)
    free = np.zeros(len(pts), dtype=bool)
    for z in np.unique(point_z):
        on = point_z == z
        free[on] = (labs[on] == 1) & ~_inside_boxes(pts[on, 1:], plane_boxes[box_z == z])
    point_ids = np.zeros(len(pts), dtype=np.int64)
    point_ids[free] = len(bxs) + np.arange(1, int(free.sum()) + 1)

    prompted = sorted(set(point_z.tolist()) | set(box_z.tolist()))
    if embeddings is None:
        embeddings = compute_embeddings(image, sam, slices=prompted, **embed_options)
    elif not isinstance(embeddings, VolumeEmbeddings):
        raise TypeError(
            f"embeddings for a 3D stack must be VolumeEmbeddings, got {type(embeddings).__name__}"
        )
    if tuple(embeddings.shape) != tuple(layout.spatial_shape):
        raise ValueError(
            f"embeddings are of a stack of shape {embeddings.shape}, but image has shape {layout.shape}"
        )
    labels = np.zeros(layout.spatial_shape, dtype=np.uint32)
    for z in prompted:
        on_p, on_b = point_z == z, box_z == z
        objects = plan_objects(
            pts[on_p, 1:] if on_p.any() else None,
            labs[on_p] if on_p.any() else None,
            plane_boxes[on_b] if on_b.any() else None,
        )
        ids = [*box_ids[on_b].tolist(), *point_ids[on_p & free].tolist()]
        _decode_into(labels[z], embeddings[z], objects, ids, sam, multimask, batch_size)
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
