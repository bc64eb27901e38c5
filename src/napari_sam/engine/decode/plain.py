"""Prompts → masks on precomputed embeddings. Stateless: every call gets everything it needs.

Coordinates are napari's: points ``(row, col)``, boxes ``(min_row, min_col, max_row, max_col)``
half-open, all in pixels of the original image. :mod:`napari_sam.engine.decode.coords` converts them.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...model import Sam
from ...model.transformer import ImageTokens
from ..loading import load_model, model_weights_id
from ..preprocess import mask_to_prompt_logits, upscale_logits
from ..types import Embeddings
from .coords import boxes_rc_to_xyxy, points_rc_to_xy, scale_xy


@dataclass(frozen=True)
class Prediction:
    """Masks predicted for ``N`` objects, ``K`` candidates each (K = 3 multimask, else 1).

    Attributes
    ----------
    masks
        ``(N, K, H, W)`` bool at the original image size (float32 logits if ``return_logits``).
    iou_scores
        ``(N, K)`` float32 predicted IoU of each mask.
    low_res_logits
        ``(N, K, 4h, 4w)`` float32 logits at the decoder's resolution (``(256, 256)`` for the
        official models); pass one as ``mask_input`` to refine the object.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> pred = ns.predict(ns.compute_embeddings(image), points=[[[14, 75]], [[74, 15]]])  # 2 objects
    >>> pred.masks.shape, pred.best_index.shape, pred.best_masks().shape
    ((2, 3, 128, 128), (2,), (2, 128, 128))
    """

    masks: np.ndarray
    iou_scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best_index(self) -> np.ndarray:
        """``(N,)`` index of the highest-scoring candidate of each object."""
        return np.argmax(self.iou_scores, axis=1)

    def best_masks(self) -> np.ndarray:
        """``(N, H, W)`` the highest-scoring mask of each object."""
        return self.masks[np.arange(self.masks.shape[0]), self.best_index]


def as_float_array(value: Any, name: str) -> np.ndarray:
    """``value`` as a float64 array; a ValueError naming ``name`` if it is not numeric or not finite."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def validate_points(
    points: Any, point_labels: Any, image_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Check ``(P, 2)`` or ``(N, P, 2)`` ``(row, col)`` points and their labels.

    Returns points as ``(N, P, 2)`` float64 and labels as ``(N, P)`` int64 (default all 1).
    """
    pts = as_float_array(points, "points")
    if pts.ndim == 2 and pts.shape[1] == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[-1] != 2 or pts.shape[1] == 0:
        raise ValueError(
            f"points must have shape (P, 2) rows (row, col), or (N, P, 2) for N objects; got "
            f"{np.shape(points)}"
        )
    h, w = image_shape
    outside = (pts[..., 0] < -0.5) | (pts[..., 0] > h - 0.5) | (pts[..., 1] < -0.5) | (pts[..., 1] > w - 0.5)
    if outside.any():
        first = pts[outside][0]
        raise ValueError(
            f"points outside the image: {first.tolist()} (row, col) is not within an image of "
            f"shape {image_shape}; {int(outside.sum())} point(s) outside"
        )
    if point_labels is None:
        labels = np.ones(pts.shape[:2], dtype=np.int64)
    else:
        labels = np.asarray(point_labels)
        if labels.ndim == 1 and pts.shape[0] == 1:
            labels = labels[None]
        if labels.shape != pts.shape[:2]:
            wanted = pts.shape[1:2] if pts.shape[0] == 1 else pts.shape[:2]
            raise ValueError(
                f"point_labels must have one label per point, shape {wanted}; "
                f"got shape {np.shape(point_labels)}"
            )
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(
                f"point_labels must be 1 (foreground) or 0 (background), got values "
                f"{sorted(set(np.unique(labels).tolist()) - {0, 1})}"
            )
        labels = labels.astype(np.int64)
    return pts, labels


def validate_boxes(boxes: Any, image_shape: tuple[int, int], name: str = "box") -> np.ndarray:
    """Check ``(4,)`` or ``(N, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` boxes.

    Boxes reaching past the image border are clipped to it; a box entirely outside is an error.
    Returns ``(N, 4)`` float64.
    """
    arr = as_float_array(boxes, name)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape (4,) or (N, 4) rows (min_row, min_col, max_row, max_col); "
            f"got {np.shape(boxes)}"
        )
    bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
    if bad.any():
        raise ValueError(
            f"{name} must have min < max on both axes (min_row, min_col, max_row, max_col); got "
            f"{arr[bad][0].tolist()}"
        )
    h, w = image_shape
    outside = (arr[:, 2] <= 0) | (arr[:, 3] <= 0) | (arr[:, 0] >= h) | (arr[:, 1] >= w)
    if outside.any():
        raise ValueError(
            f"{name} {arr[outside][0].tolist()} lies entirely outside the image of shape {image_shape}"
        )
    arr = arr.copy()
    arr[:, [0, 2]] = np.clip(arr[:, [0, 2]], 0, h)
    arr[:, [1, 3]] = np.clip(arr[:, [1, 3]], 0, w)
    return arr


def _mask_prompt(
    mask_input: Any, n_objects: int, embeddings: Embeddings, mask_input_size: tuple[int, int]
) -> torch.Tensor:
    arr = np.asarray(mask_input)
    is_binary = arr.dtype == bool or np.issubdtype(arr.dtype, np.integer)
    if is_binary and arr.shape[-2:] == tuple(embeddings.original_size):
        stack = arr.reshape(-1, *arr.shape[-2:])
        logits = torch.cat(
            [
                mask_to_prompt_logits(
                    m > 0,
                    image_size=embeddings.image_size,
                    mask_input_size=mask_input_size,
                    input_size=tuple(embeddings.input_size),
                )
                for m in stack
            ]
        )
    elif arr.shape[-2:] == tuple(mask_input_size) and np.issubdtype(arr.dtype, np.floating):
        logits = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(
            -1, 1, *mask_input_size
        )
    else:
        raise ValueError(
            f"mask_input must be low-resolution logits of shape {tuple(mask_input_size)} (float, "
            f"e.g. Prediction.low_res_logits[i, k]) or a binary mask of the image's shape "
            f"{tuple(embeddings.original_size)} (bool or integer); got shape {arr.shape}, dtype {arr.dtype}"
        )
    if logits.shape[0] == 1 and n_objects > 1:
        logits = logits.expand(n_objects, -1, -1, -1)
    if logits.shape[0] != n_objects:
        raise ValueError(
            f"mask_input holds {logits.shape[0]} masks for {n_objects} objects; give one or one per object"
        )
    return logits


def _object_count(pts: np.ndarray | None, bxs: np.ndarray | None) -> int:
    if pts is not None and bxs is not None and pts.shape[0] != bxs.shape[0]:
        if pts.shape[0] == 1:
            return bxs.shape[0]
        raise ValueError(
            f"points describe {pts.shape[0]} objects but box describes {bxs.shape[0]}; "
            "give the same number, or one set of points for all boxes"
        )
    return (pts.shape[0] if pts is not None else 0) or (bxs.shape[0] if bxs is not None else 0)


# prompt-independent decoder inputs of recently used embeddings (derived data, never state)
_PREPARED: weakref.WeakKeyDictionary[Embeddings, tuple[int, str, str, ImageTokens]] = (
    weakref.WeakKeyDictionary()
)
_PREPARED_LOCK = threading.Lock()
_PREPARED_MAX = 4  # images whose prepared inputs are kept at once (a few slices of a stack)


def prepared_image(embeddings: Embeddings, sam: Sam) -> ImageTokens:
    """The decoder's image-side inputs for ``embeddings`` without a mask prompt, computed once.

    Kept while ``embeddings`` is alive, for the last few images used (about 15 MB each for a 64×64
    embedding), so repeated prompts on one image skip the image-only part of the decoder's first block.
    """
    key = (id(sam), model_weights_id(sam, check_content=False), str(sam.device))
    with _PREPARED_LOCK:
        cached = _PREPARED.get(embeddings)
    if cached is not None and cached[:3] == key:
        return cached[3]
    pe = sam.prompt_encoder
    with torch.inference_mode():
        _, no_mask = pe(None, None, None)  # the dense "no mask" embedding every such prompt gets
        prepared = sam.mask_decoder.prepare_image(
            embeddings.features.to(sam.device), pe.get_dense_pe(), no_mask
        )
    with _PREPARED_LOCK:
        _PREPARED.pop(embeddings, None)
        while len(_PREPARED) >= _PREPARED_MAX:  # oldest first: the weak dict keeps insertion order
            _PREPARED.pop(next(iter(_PREPARED.keys())), None)
        _PREPARED[embeddings] = (*key, prepared)
    return prepared


def predict(
    embeddings: Embeddings,
    *,
    points: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    multimask: bool = True,
    best_only: bool = False,
    return_logits: bool = False,
    model: Sam | None = None,
) -> Prediction:
    """Predict masks for prompts on precomputed embeddings.

    Parameters
    ----------
    embeddings
        From :func:`napari_sam.compute_embeddings`.
    points
        ``(P, 2)`` ``(row, col)`` points describing one object, or ``(N, P, 2)`` for N objects.
    point_labels
        ``(P,)`` / ``(N, P)``: 1 foreground, 0 background. Default: all foreground.
    box
        ``(4,)`` or ``(N, 4)`` half-open ``(min_row, min_col, max_row, max_col)``. With points, each box
        is combined with the points of the same object.
    mask_input
        Logits from a previous :class:`Prediction` (``low_res_logits[i, k]``, shape ``(4h, 4w)``), or a
        binary mask of the image's shape; one for all objects or ``(N, ...)``.
    multimask
        True: 3 candidate masks per object (good for a single ambiguous point); False: one.
    best_only
        With ``multimask``: keep only the best-scoring candidate per object (K = 1); only that one is
        upsampled to full resolution.
    return_logits
        Return float32 logits instead of boolean masks.
    model
        The model to decode with; defaults to the one that computed ``embeddings``.

    Returns
    -------
    Prediction
        ``masks`` ``(N, K, H, W)`` at the image's size, ``iou_scores`` ``(N, K)`` and
        ``low_res_logits`` ``(N, K, 256, 256)``; K = 3 with ``multimask`` (1 with ``best_only``), else 1.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> emb = ns.compute_embeddings(image)  # once per image; then each prompt takes milliseconds
    >>> pred = ns.predict(emb, points=[[14, 75]])  # one click at row 14, column 75
    >>> pred.masks.shape, pred.masks.dtype, pred.iou_scores.shape
    ((1, 3, 128, 128), dtype('bool'), (1, 3))

    Refine the best candidate with a second click, feeding its logits back:

    >>> best = pred.low_res_logits[0, pred.best_index[0]]
    >>> better = ns.predict(emb, points=[[14, 75], [20, 90]], point_labels=[1, 0], mask_input=best,
    ...                     multimask=False)
    >>> better.masks.shape
    (1, 1, 128, 128)

    Two objects from two boxes in one call:

    >>> ns.predict(emb, box=[[0, 55, 29, 95], [54, 1, 96, 32]], multimask=False).masks.shape
    (2, 1, 128, 128)
    """
    from ..types import TiledEmbeddings
    from .tiled import predict_tiled

    for name, flag in (("multimask", multimask), ("best_only", best_only), ("return_logits", return_logits)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {flag!r}")
    if isinstance(embeddings, TiledEmbeddings):
        return predict_tiled(
            embeddings,
            points=points,
            point_labels=point_labels,
            box=box,
            mask_input=mask_input,
            multimask=multimask,
            best_only=best_only,
            return_logits=return_logits,
            model=model,
        )
    if not isinstance(embeddings, Embeddings):
        is_stack = hasattr(embeddings, "shape")
        hint = "; index a stack's VolumeEmbeddings by slice: embeddings[z]" if is_stack else ""
        raise TypeError(
            f"embeddings must be an Embeddings object from compute_embeddings(), got "
            f"{type(embeddings).__name__}{hint}"
        )
    sam = model or embeddings.model
    if sam is None:
        sam = load_model(embeddings.model_name)
    if model_weights_id(sam, check_content=False) != embeddings.weights_sha256:
        raise ValueError(
            f"model {sam.name!r} is not the model these embeddings were computed with "
            f"({embeddings.model_name!r}, weights {embeddings.weights_sha256[:12]}…)"
        )
    if points is None and point_labels is not None:
        raise ValueError("point_labels given without points")
    if points is None and box is None and mask_input is None:
        raise ValueError("predict needs at least one prompt: points, box or mask_input")

    shape = tuple(embeddings.original_size)
    pts = labels = bxs = None
    if points is not None:
        pts, labels = validate_points(points, point_labels, shape)
    if box is not None:
        bxs = validate_boxes(box, shape)
    n = _object_count(pts, bxs) or 1

    device = sam.device
    point_arg = box_arg = None
    if pts is not None and labels is not None:
        xy = scale_xy(points_rc_to_xy(pts), shape, embeddings.input_size)
        coords = torch.as_tensor(xy, dtype=torch.float32, device=device)
        label_t = torch.as_tensor(labels, dtype=torch.int64, device=device)
        if coords.shape[0] != n:
            coords, label_t = coords.expand(n, -1, -1), label_t.expand(n, -1)
        point_arg = (coords, label_t)
    if bxs is not None:
        xyxy = boxes_rc_to_xyxy(bxs)
        xyxy = scale_xy(xyxy.reshape(-1, 2, 2), shape, embeddings.input_size).reshape(-1, 4)
        box_arg = torch.as_tensor(xyxy, dtype=torch.float32, device=device)
    mask_arg = None
    if mask_input is not None:
        mask_arg = _mask_prompt(mask_input, n, embeddings, sam.prompt_encoder.mask_input_size)
        mask_arg = mask_arg.to(device)

    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(point_arg, box_arg, mask_arg)
        if mask_arg is None:
            image: torch.Tensor | ImageTokens = prepared_image(embeddings, sam)
            image_pe = None
        else:
            image, image_pe = embeddings.features.to(device), sam.prompt_encoder.get_dense_pe()
        low_res, iou = sam.mask_decoder(image, image_pe, sparse, dense, multimask_output=multimask)
        if best_only and low_res.shape[1] > 1:
            best = iou.argmax(dim=1)
            rows = torch.arange(low_res.shape[0], device=device)
            low_res, iou = low_res[rows, best][:, None], iou[rows, best][:, None]
        full = upscale_logits(
            low_res,
            input_size=embeddings.input_size,
            original_size=shape,
            image_size=embeddings.image_size,
        )
        masks = full if return_logits else full > sam.mask_threshold
    return Prediction(
        masks=masks.cpu().numpy(),
        iou_scores=iou.float().cpu().numpy(),
        low_res_logits=low_res.float().cpu().numpy(),
    )
