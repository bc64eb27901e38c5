"""One propagation step: prompts drawn from an object's mask on the previous slice, and the stop rules.

Everything here is napari order: masks ``(Y, X)``, points ``(row, col)``, boxes half-open
``(min_row, min_col, max_row, max_col)``. :func:`napari_sam.engine.decode.predict.predict` converts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..decode.coords import mask_to_box
from ..types import PropagationOptions


@dataclass(frozen=True)
class MaskSummary:
    """Area, centroid ``(row, col)`` and half-open bounding box of a 2D mask."""

    area: int
    centroid: np.ndarray
    bbox: tuple[int, int, int, int]

    @property
    def diameter(self) -> float:
        """Equivalent diameter, ``2 * sqrt(area / pi)``."""
        return 2.0 * math.sqrt(self.area / math.pi)


def summarize(mask: np.ndarray) -> MaskSummary | None:
    """:class:`MaskSummary` of a ``(Y, X)`` bool mask; None when it is empty."""
    rr, cc = np.nonzero(mask)
    if rr.size == 0:
        return None
    r0, c0, r1, c1 = (int(v) for v in mask_to_box(mask))
    return MaskSummary(area=int(rr.size), centroid=np.array([rr.mean(), cc.mean()]), bbox=(r0, c0, r1, c1))


def grown_box(summary: MaskSummary, margin: float, shape: tuple[int, int]) -> np.ndarray:
    """``(4,)`` the mask's bounding box grown by ``margin`` × its extent per side, clipped to ``shape``."""
    r0, c0, r1, c1 = summary.bbox
    dr = max(1.0, margin * (r1 - r0)) if margin > 0 else 0.0
    dc = max(1.0, margin * (c1 - c0)) if margin > 0 else 0.0
    return np.array(
        [max(0.0, r0 - dr), max(0.0, c0 - dc), min(float(shape[0]), r1 + dr), min(float(shape[1]), c1 + dc)]
    )


def interior_points(mask: np.ndarray, n: int) -> np.ndarray:
    """``(n, 2)`` ``(row, col)`` points well inside ``mask``: the most interior pixel first, then the
    pixels of the inner half (by distance to the border) farthest from the points chosen so far."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    first = np.unravel_index(int(np.argmax(distance)), mask.shape)
    chosen = [np.array(first, dtype=np.float64)]
    if n > 1:
        inner = np.argwhere(distance >= 0.5 * distance.max()).astype(np.float64)
        gap = np.linalg.norm(inner - chosen[0], axis=1)
        while len(chosen) < n:
            pick = inner[int(np.argmax(gap))]
            chosen.append(pick)
            gap = np.minimum(gap, np.linalg.norm(inner - pick, axis=1))
    return np.stack(chosen)


def overlapping_parts(mask: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The 8-connected regions of ``mask`` sharing a pixel with ``previous`` (both ``(Y, X)`` bool)."""
    from scipy import ndimage

    regions, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count <= 1:
        return mask if (mask & previous).any() else np.zeros_like(mask)
    touching = np.unique(regions[previous & mask])
    return np.isin(regions, touching[touching > 0])


def step_prompts(
    masks: list[np.ndarray],
    logits: list[np.ndarray | None],
    opts: PropagationOptions,
    *,
    tiled: bool,
    mask_prompt: Any,
) -> dict[str, Any]:
    """``predict`` keywords for a batch of objects, from their masks on the previous slice.

    Parameters
    ----------
    masks
        ``(Y, X)`` bool masks, one per object (none empty).
    logits
        The low-resolution logits that produced each mask, or None (a seed, or tiled embeddings).
    tiled
        The slice's embeddings are tiled: mask prompts must be binary full-size masks.
    mask_prompt
        ``mask → (4h, 4w) float32 logits`` for masks without logits (see
        :func:`napari_sam.engine.preprocess.mask_to_prompt_logits`); unused (may be None) when
        ``tiled``.
    """
    shape = masks[0].shape
    kwargs: dict[str, Any] = {}
    if "box" in opts.prompt:
        boxes = []
        for m in masks:
            summary = summarize(m)
            if summary is None:
                raise ValueError("step_prompts needs non-empty masks")
            boxes.append(grown_box(summary, opts.box_margin, shape))
        kwargs["box"] = np.stack(boxes)
    if "points" in opts.prompt:
        kwargs["points"] = np.stack([interior_points(m, opts.n_points) for m in masks])
        kwargs["point_labels"] = np.ones(kwargs["points"].shape[:2], dtype=np.int64)
    if "mask" in opts.prompt:
        if tiled:
            kwargs["mask_input"] = np.stack(masks)
        else:
            kwargs["mask_input"] = np.stack(
                [lo if lo is not None else mask_prompt(m) for m, lo in zip(masks, logits, strict=True)]
            ).astype(np.float32)
    return kwargs


def contrast(plane: np.ndarray | None, mask: np.ndarray) -> float | None:
    """Mean of ``plane`` ``(Y, X)`` inside ``mask`` minus its 5th percentile (None without a plane)."""
    if plane is None or not mask.any():
        return None
    return float(plane[mask].mean() - np.percentile(plane, 5))


@dataclass(frozen=True)
class SeedIntensity:
    """An object's brightness and that of its surroundings on its seed slice.

    Attributes
    ----------
    inside
        Median intensity inside the seed mask.
    around
        Median intensity in a ring around it (pixels within :func:`ring_width` of the mask).
    """

    inside: float
    around: float

    def keep(self, plane: np.ndarray, fraction: float) -> np.ndarray:
        """``(Y, X)`` bool: pixels of ``plane`` at least ``fraction`` of the way from ``around`` to
        ``inside`` (above the threshold for bright objects, below it for dark ones)."""
        threshold = self.around + fraction * (self.inside - self.around)
        return plane >= threshold if self.inside > self.around else plane <= threshold


#: An object counts as brighter (or darker) than its ring when the medians differ by at least this
#: fraction of the slice's intensity spread (95th minus 5th percentile).
MIN_SEED_CONTRAST = 0.1


def ring_width(summary: MaskSummary) -> int:
    """Width in pixels of the ring :func:`seed_intensity` samples around a mask: a quarter of its
    equivalent diameter, 2 to 16 pixels."""
    return int(np.clip(round(summary.diameter / 4), 2, 16))


def _window(summary: MaskSummary, margin: int, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Rows and columns of a mask's bounding box grown by ``margin`` pixels, clipped to ``shape``."""
    r0, c0, r1, c1 = summary.bbox
    return (
        slice(max(r0 - margin, 0), min(r1 + margin, shape[0])),
        slice(max(c0 - margin, 0), min(c1 + margin, shape[1])),
    )


def seed_intensity(plane: np.ndarray | None, mask: np.ndarray) -> SeedIntensity | None:
    """:class:`SeedIntensity` of the object ``mask`` on ``plane`` (both ``(Y, X)``).

    None without a plane, or when the object is not clearly brighter or darker than its ring
    (:data:`MIN_SEED_CONTRAST`), so that trimming by intensity would have no basis.
    """
    from scipy import ndimage

    summary = None if plane is None else summarize(mask)
    if plane is None or summary is None:
        return None
    width = ring_width(summary)
    window = _window(summary, width + 1, mask.shape)
    local, near = mask[window], plane[window]
    ring = ndimage.binary_dilation(local, iterations=width) & ~local
    if not ring.any():
        return None
    inside, around = float(np.median(near[local])), float(np.median(near[ring]))
    step = max(1, int(np.sqrt(plane.size / 250_000)))  # the slice's spread from about 250k pixels
    low, high = np.percentile(plane[::step, ::step], [5, 95])
    if abs(inside - around) < MIN_SEED_CONTRAST * max(float(high - low), 1e-12):
        return None
    return SeedIntensity(inside, around)


def trim_dim(mask: np.ndarray, plane: np.ndarray, seed: SeedIntensity, fraction: float) -> np.ndarray:
    """``mask`` without the pixels :meth:`SeedIntensity.keep` rejects, interior holes filled back.

    Holes are only filled where ``mask`` itself has pixels, so holes the decoder left stay open.
    Work is limited to the mask's bounding box.
    """
    from scipy import ndimage

    out = np.zeros_like(mask)
    summary = summarize(mask)
    if summary is not None:
        window = _window(summary, 1, mask.shape)
        local = mask[window]
        out[window] = ndimage.binary_fill_holes(local & seed.keep(plane[window], fraction)) & local
    return out


def stop_reason(
    previous: MaskSummary,
    current: MaskSummary | None,
    score: float,
    opts: PropagationOptions,
    contrast_ratio: float | None = None,
) -> str | None:
    """Why an object should stop on this slice, or None to go on.

    The reason is a key of :data:`~napari_sam.engine.volume.result.STOP_REASONS`.

    ``contrast_ratio`` is the object's contrast here over its best so far (None: not measured).
    """
    if score < opts.iou_threshold:
        return "score"
    if current is None or current.area < opts.min_area:
        return "vanished"
    ratio = current.area / previous.area
    if ratio > opts.max_area_change or ratio < 1.0 / opts.max_area_change:
        return "area"
    shift = float(np.linalg.norm(current.centroid - previous.centroid))
    if shift > opts.max_centroid_shift * previous.diameter:
        return "centroid"
    if contrast_ratio is not None and contrast_ratio < opts.min_contrast:
        return "contrast"
    return None
