"""Automatic prompt generation (APG): the instance decoder's seeds, decoded by SAM's mask decoder.

micro-sam's ``AutomaticPromptGenerator.generate`` with its defaults, reimplemented:

1. one positive point per seed component of the maps (:mod:`.apg_seeds`);
2. each point decoded alone by the prompt encoder and mask decoder, in batches of ``batch_size`` (one
   mask per point; with ``multimask`` the best of three by predicted IoU), masks at the image's size
   thresholded at the model's ``mask_threshold``; on :class:`TiledEmbeddings` a point is decoded on the
   tile whose core holds it;
3. masks of at most ``min_size`` pixels dropped; greedy suppression by mask overlap (IoU, or
   intersection over the smaller mask) above ``nms_threshold``, masks ranked by predicted IoU × stability
   score (offset 1, as micro-sam's ``apply_nms``);
4. survivors painted largest first, a pixel keeping the first (largest) mask painted on it, as
   micro-sam's ``mask_data_to_segmentation``; each painted label is split into its 4-connected pieces,
   pieces under ``min_size`` pixels removed, labels numbered in raster order of their first pixel.

Masks are held as bool windows around them (never as full-size arrays), so memory grows with the
objects' areas, not with their number times the image's.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from ...model import Sam
from ..decode.coords import mask_to_box
from ..decode.plain import DecodeOptions, predict_plain
from ..decode.prompts import object_prompts
from ..types import Embeddings, InstanceOptions, TiledEmbeddings
from .ais import check_maps
from .apg_seeds import seed_points
from .candidates import UPSCALE_BUDGET
from .masks import mask_statistics

__all__ = [
    "SeedMasks",
    "apg_segment",
    "core_tiles",
    "decode_seeds",
    "mask_overlaps",
    "paint_masks",
    "suppress_masks",
]

#: Offset of the logit threshold for the stability score (micro-sam's ``batched_inference``).
STABILITY_OFFSET = 1.0
#: Rows of the pairwise box-overlap test done at once (bounds its memory to rows × N booleans).
_PAIR_ROWS = 1024
_CROSS = ndimage.generate_binary_structure(2, 1)


@dataclass
class SeedMasks:
    """Decoded masks, each a bool window of the image.

    Attributes
    ----------
    windows
        Per mask, ``(h, w)`` bool: the mask inside its box.
    boxes
        ``(N, 4)`` int64 half-open ``(min_row, min_col, max_row, max_col)`` in the image.
    areas
        ``(N,)`` int64 pixel counts.
    iou
        ``(N,)`` float32 predicted IoU.
    stability
        ``(N,)`` float32 stability score (IoU of the mask at ``threshold ± 1``).
    seeds
        ``(N,)`` int64 index of the point each mask was decoded from.
    """

    windows: list[np.ndarray]
    boxes: np.ndarray
    areas: np.ndarray
    iou: np.ndarray
    stability: np.ndarray
    seeds: np.ndarray

    def __len__(self) -> int:
        return len(self.windows)

    def take(self, index: np.ndarray) -> SeedMasks:
        """The masks ``index`` (int positions or a bool selection), in that order."""
        positions = np.arange(len(self))[index]
        return SeedMasks(
            windows=[self.windows[i] for i in positions],
            boxes=self.boxes[positions],
            areas=self.areas[positions],
            iou=self.iou[positions],
            stability=self.stability[positions],
            seeds=self.seeds[positions],
        )


def apg_segment(
    sam: Sam,
    embeddings: Embeddings | TiledEmbeddings,
    maps: np.ndarray,
    opts: InstanceOptions,
    *,
    image_shape: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels of one 2D image by APG (see the module docstring for the steps).

    Parameters
    ----------
    sam
        The model whose prompt encoder and mask decoder decode the seeds (the one that computed
        ``embeddings``).
    embeddings
        The image's embeddings, plain or tiled.
    maps
        ``(3, H, W)`` float maps of the instance decoder for this image: foreground, centre distance,
        boundary distance (``(row, col)`` pixel grid of the image).
    opts
        Thresholds, ``min_size_for("apg")``, ``nms_threshold``, ``intersection_over_min``,
        ``multimask`` and ``batch_size`` (the latter changes speed and memory, not the result).
    image_shape
        ``(H, W)`` of the image, when the caller wants it checked against ``maps`` and ``embeddings``.

    Returns
    -------
    labels
        ``(H, W)`` uint32, 0 = background, objects ``1..N`` (raster order of their first pixel).
    scores
        ``(N,)`` float32: the predicted IoU of label ``k`` at index ``k - 1``.

    Raises
    ------
    TypeError
        ``sam``, ``embeddings`` or ``opts`` of the wrong type.
    ValueError
        ``maps`` not ``(3, H, W)`` finite numbers, or ``maps``, ``image_shape`` and the embeddings'
        image size disagreeing.
    """
    maps = _check_inputs(sam, embeddings, maps, opts, image_shape)
    shape = (int(maps.shape[1]), int(maps.shape[2]))
    points = seed_points(maps, opts)
    if len(points) == 0:
        return np.zeros(shape, dtype=np.uint32), np.zeros(0, dtype=np.float32)
    min_size = opts.min_size_for("apg")
    masks = decode_seeds(sam, embeddings, points, opts)
    masks = masks.take(masks.areas > min_size)
    kept = suppress_masks(masks, opts.nms_threshold, opts.intersection_over_min)
    return paint_masks(masks.take(kept), shape, min_size)


def _check_inputs(
    sam: object,
    embeddings: object,
    maps: object,
    opts: object,
    image_shape: object,
) -> np.ndarray:
    if not isinstance(sam, Sam):
        raise TypeError(f"sam must be a napari_sam.model.Sam, got {type(sam).__name__}")
    if not isinstance(embeddings, (Embeddings, TiledEmbeddings)):
        raise TypeError(f"embeddings must be Embeddings or TiledEmbeddings, got {type(embeddings).__name__}")
    if not isinstance(opts, InstanceOptions):
        raise TypeError(f"opts must be an InstanceOptions, got {type(opts).__name__}")
    arr = check_maps(maps, stacks=False)
    shape = tuple(arr.shape[1:])
    if tuple(embeddings.original_size) != shape:
        raise ValueError(
            f"maps are {shape[0]}×{shape[1]} but the embeddings are of a "
            f"{embeddings.original_size[0]}×{embeddings.original_size[1]} image"
        )
    if image_shape is not None:
        given = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else image_shape
        if given != shape:
            raise ValueError(f"image_shape must be the maps' (H, W) = {shape}, got {image_shape!r}")
    return arr


def decode_seeds(
    sam: Sam, embeddings: Embeddings | TiledEmbeddings, points: np.ndarray, opts: InstanceOptions
) -> SeedMasks:
    """Decode each point alone into one mask (the best of three with ``opts.multimask``).

    Parameters
    ----------
    sam
        The model (its prompt encoder, mask decoder and ``mask_threshold``).
    embeddings
        The image's embeddings; on tiles, each point is decoded on the tile whose core holds it.
    points
        ``(N, 2)`` ``(row, col)`` pixel indices in the image.
    opts
        ``multimask`` and ``batch_size`` (points decoded at once, fewer when the image is so large that
        their up-sampled logits would pass :data:`~.candidates.UPSCALE_BUDGET` floats).

    Returns
    -------
    SeedMasks
        The non-empty masks (boxes in the image), ordered by seed.
    """
    parts: list[SeedMasks] = []
    if isinstance(embeddings, Embeddings):
        parts.append(_decode_on(sam, embeddings, points, np.arange(len(points)), (0, 0), opts))
    else:
        tiles = core_tiles(embeddings, points)
        for t in np.unique(tiles).tolist():
            window = embeddings.windows[t]
            mine = np.flatnonzero(tiles == t)
            local = points[mine] - np.asarray(window.bounds[:2])
            parts.append(_decode_on(sam, embeddings.tiles[t], local, mine, window.bounds[:2], opts))
    masks = _concat(parts)
    return masks.take(np.argsort(masks.seeds, kind="stable"))


def core_tiles(tiled: TiledEmbeddings, points: np.ndarray) -> np.ndarray:
    """``(N,)`` index of the tile whose core holds each ``(row, col)`` point."""
    out = np.full(len(points), -1, dtype=np.int64)
    for i, window in enumerate(tiled.windows):
        r0, c0, r1, c1 = window.core
        inside = (points[:, 0] >= r0) & (points[:, 0] < r1) & (points[:, 1] >= c0) & (points[:, 1] < c1)
        out[inside & (out < 0)] = i
    assert (out >= 0).all()  # the cores cover the image
    return out


def _decode_on(
    sam: Sam,
    emb: Embeddings,
    points: np.ndarray,
    seeds: np.ndarray,
    offset: tuple[int, int],
    opts: InstanceOptions,
) -> SeedMasks:
    """Points ``(n, 2)`` ``(row, col)`` in ``emb``'s image → masks, boxes shifted by ``offset``."""
    rows, cols = emb.original_size
    per_mask = max(rows * cols, emb.image_size * emb.image_size)
    step = max(1, min(int(opts.batch_size), UPSCALE_BUDGET // per_mask))
    decode = DecodeOptions(multimask=bool(opts.multimask), best_only=True, return_logits=True)
    threshold = float(sam.mask_threshold)
    windows: list[np.ndarray] = []
    records: list[tuple[int, int, int, int, int, float, float, int]] = []
    for start in range(0, len(points), step):
        batch = np.asarray(points[start : start + step], dtype=np.float64)
        prompts = object_prompts(None, batch[:, None, :], np.ones((len(batch), 1), dtype=np.int64))
        pred = predict_plain(emb, prompts, decode, model=sam)
        logits = torch.from_numpy(pred.masks[:, 0])
        stability, _, areas = mask_statistics(logits, threshold, STABILITY_OFFSET)
        for b, mask in enumerate((logits > threshold).numpy()):
            area = int(areas[b])
            if area == 0:
                continue
            r0, c0, r1, c1 = mask_to_box(mask).tolist()
            windows.append(mask[r0:r1, c0:c1].copy())
            box = (r0 + offset[0], c0 + offset[1], r1 + offset[0], c1 + offset[1])
            iou = float(pred.iou_scores[b, 0])
            records.append((*box, area, iou, float(stability[b]), int(seeds[start + b])))
    table = np.array(records, dtype=np.float64).reshape(-1, 8)
    return SeedMasks(
        windows=windows,
        boxes=table[:, :4].astype(np.int64),
        areas=table[:, 4].astype(np.int64),
        iou=table[:, 5].astype(np.float32),
        stability=table[:, 6].astype(np.float32),
        seeds=table[:, 7].astype(np.int64),
    )


def _concat(parts: list[SeedMasks]) -> SeedMasks:
    return SeedMasks(
        windows=[w for p in parts for w in p.windows],
        boxes=np.concatenate([p.boxes for p in parts]),
        areas=np.concatenate([p.areas for p in parts]),
        iou=np.concatenate([p.iou for p in parts]),
        stability=np.concatenate([p.stability for p in parts]),
        seeds=np.concatenate([p.seeds for p in parts]),
    )


def _touching_boxes(boxes: np.ndarray) -> Iterator[tuple[int, int]]:
    """Pairs ``i < j`` of half-open ``(N, 4)`` boxes sharing a pixel (memory: rows × N booleans)."""
    n = len(boxes)
    r0, c0, r1, c1 = boxes.T
    for start in range(0, n, _PAIR_ROWS):
        rows = slice(start, min(start + _PAIR_ROWS, n))
        touch = (r0[rows, None] < r1[None]) & (r0[None] < r1[rows, None])
        touch &= (c0[rows, None] < c1[None]) & (c0[None] < c1[rows, None])
        local, j = np.nonzero(touch)
        i = local + start
        yield from zip(i[j > i].tolist(), j[j > i].tolist(), strict=True)


def mask_overlaps(masks: SeedMasks, intersection_over_min: bool) -> list[tuple[int, int, float]]:
    """``(i, j, overlap)`` for every pair ``i < j`` of masks sharing a pixel: IoU, or intersection over
    the smaller mask."""
    b = masks.boxes
    pairs: list[tuple[int, int, float]] = []
    for i, j in _touching_boxes(b):
        r0, c0 = max(b[i, 0], b[j, 0]), max(b[i, 1], b[j, 1])
        r1, c1 = min(b[i, 2], b[j, 2]), min(b[i, 3], b[j, 3])
        mi = masks.windows[i][r0 - b[i, 0] : r1 - b[i, 0], c0 - b[i, 1] : c1 - b[i, 1]]
        mj = masks.windows[j][r0 - b[j, 0] : r1 - b[j, 0], c0 - b[j, 1] : c1 - b[j, 1]]
        inter = int(np.count_nonzero(mi & mj))
        if inter:
            ai, aj = int(masks.areas[i]), int(masks.areas[j])
            pairs.append((i, j, inter / (min(ai, aj) if intersection_over_min else ai + aj - inter)))
    return pairs


def suppress_masks(masks: SeedMasks, threshold: float, intersection_over_min: bool = False) -> np.ndarray:
    """Greedy suppression by mask overlap.

    Masks are visited by decreasing predicted IoU × stability (ties: lower position first); a mask is
    kept unless a kept mask ranked above it overlaps it by more than ``threshold``.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` int64 positions of the kept masks, best first.
    """
    n = len(masks)
    order = np.argsort(-(masks.iou * masks.stability).astype(np.float64), kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    beaten: list[list[int]] = [[] for _ in range(n)]  # per mask, the lower-ranked masks it suppresses
    for i, j, overlap in mask_overlaps(masks, intersection_over_min):
        if overlap > threshold:
            hi, lo = (i, j) if rank[i] < rank[j] else (j, i)
            beaten[hi].append(lo)
    alive = np.ones(n, dtype=bool)
    kept: list[int] = []
    for i in order.tolist():
        if alive[i]:
            kept.append(i)
            alive[beaten[i]] = False
    return np.array(kept, dtype=np.int64)


def paint_masks(masks: SeedMasks, shape: tuple[int, int], min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels from masks: largest painted first (a contested pixel keeps the larger mask), each label split
    into 4-connected pieces, pieces under ``min_size`` pixels removed, numbered in raster order.

    Returns
    -------
    labels
        ``(H, W)`` uint32.
    scores
        ``(N,)`` float32 predicted IoU of the mask each label comes from.
    """
    painted = np.zeros(shape, dtype=np.uint32)
    order = np.argsort(-masks.areas, kind="stable")
    for value, i in enumerate(order.tolist(), start=1):
        r0, c0, r1, c1 = masks.boxes[i].tolist()
        region = painted[r0:r1, c0:c1]
        region[masks.windows[i] & (region == 0)] = value
    pieces: list[tuple[int, int, np.ndarray, float]] = []  # (first pixel, mask, piece window, score)
    for value, i in enumerate(order.tolist(), start=1):
        r0, c0, r1, c1 = masks.boxes[i].tolist()
        parts, n = ndimage.label(painted[r0:r1, c0:c1] == value, structure=_CROSS)
        sizes = np.bincount(parts.ravel(), minlength=n + 1)
        for k in range(1, n + 1):
            if sizes[k] < min_size:
                continue
            piece = parts == k
            first = int(np.argmax(piece))
            fr, fc = divmod(first, piece.shape[1])
            pieces.append(((r0 + fr) * shape[1] + c0 + fc, i, piece, float(masks.iou[i])))
    pieces.sort(key=lambda p: p[0])
    labels = np.zeros(shape, dtype=np.uint32)
    for label, (_, i, piece, _) in enumerate(pieces, start=1):
        r0, c0, r1, c1 = masks.boxes[i].tolist()
        labels[r0:r1, c0:c1][piece] = label
    return labels, np.array([p[3] for p in pieces], dtype=np.float32)
