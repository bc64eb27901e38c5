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

PROMPT_KINDS = ("box", "points", "mask")


@dataclass(frozen=True)
class PropagationOptions:
    """How each slice is prompted from the previous one, and when an object stops.

    Attributes
    ----------
    prompt
        Prompt kinds taken from the previous slice's mask, any of ``"box"`` (its bounding box grown
        by ``box_margin``), ``"points"`` (``n_points`` interior points) and ``"mask"`` (the previous
        prediction's low-resolution logits; a seed's binary mask on the first step).
    n_points
        Interior points sampled when ``"points"`` is used, >= 1.
    box_margin
        Growth of the box on each side, as a fraction of its extent along that axis (at least 1 pixel
        when > 0), so that a growing object is not cut by its previous box.
    multimask
        Decode 3 candidates and keep the best-scoring one (else a single mask).
    iou_threshold
        Stop when the predicted IoU falls below this, in [0, 1].
    min_area
        Stop when the mask (the part not owned by other objects) has fewer pixels than this.
    max_area_change
        Stop when the area grows or shrinks by more than this factor from one slice to the next, >= 1.
    max_centroid_shift
        Stop when the centroid moves by more than this fraction of the previous mask's equivalent
        diameter (``2 * sqrt(area / pi)``), > 0.
    min_contrast
        Stop when the object's contrast on the image (mean intensity inside the mask minus the
        slice's 5th percentile) falls below this fraction of the highest contrast it had on the slices
        so far, in [0, 1]; 0 turns the rule off. Out-of-focus light makes objects visible some slices
        beyond their end (the decoder keeps finding them there); 0.5 cuts them about where their signal
        halves. Needs the image (not only its embeddings).
    min_intensity
        Drop the pixels of each propagated mask whose intensity lies less than this fraction of the
        way from the object's surroundings to the object itself, both measured on its seed slice
        (medians inside the seed mask and in a ring around it; see :class:`SeedIntensity`); holes
        this opens inside the mask are filled back. Bright and dark objects are both handled; an
        object not clearly brighter or darker than its ring is left untrimmed. In [0, 1); 0 turns it
        off. Out-of-focus light makes the slices near an object's end show a blurred, dimmer and
        larger copy of it, and the decoder follows that halo; 0.5 keeps what is at least
        half-way bright. Needs the image.
    clip_to_box
        With ``"box"`` prompts: drop the parts of a prediction outside its box (the decoder often
        spills past small or faint objects); growth and drift from slice to slice are then at most
        ``box_margin`` per side, so it suits objects that shrink away from their seed (off by default).
    connected
        Keep only the parts of a prediction (8-connected regions) that overlap the object on the
        previous slice: pieces that leaked onto other objects are dropped before the checks.
    """

    prompt: tuple[str, ...] = ("box", "mask")
    n_points: int = 1
    box_margin: float = 0.0
    multimask: bool = False
    iou_threshold: float = 0.5
    min_area: int = 4
    max_area_change: float = 3.0
    max_centroid_shift: float = 0.5
    min_contrast: float = 0.5
    min_intensity: float = 0.5
    clip_to_box: bool = False
    connected: bool = True

    def __post_init__(self) -> None:
        kinds = (self.prompt,) if isinstance(self.prompt, str) else tuple(self.prompt)
        unknown = [k for k in kinds if k not in PROMPT_KINDS]
        if not kinds or unknown or len(set(kinds)) != len(kinds):
            raise ValueError(
                f"prompt must be a non-empty selection of {PROMPT_KINDS} without repeats, got "
                f"{self.prompt if isinstance(self.prompt, str) else kinds!r}"
            )
        object.__setattr__(self, "prompt", kinds)
        _integer(self, "n_points", 1)
        _integer(self, "min_area", 1)
        _number(self, "box_margin", 0.0, math.inf)
        _number(self, "iou_threshold", 0.0, 1.0)
        _number(self, "max_area_change", 1.0, math.inf)
        _number(self, "max_centroid_shift", 0.0, math.inf, open_low=True)
        _number(self, "min_contrast", 0.0, 1.0)
        _number(self, "min_intensity", 0.0, 1.0, open_high=True)
        for name in ("multimask", "clip_to_box", "connected"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


def _integer(opts: PropagationOptions, name: str, low: int) -> None:
    value = getattr(opts, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    object.__setattr__(opts, name, int(value))


def _number(
    opts: PropagationOptions,
    name: str,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    value = getattr(opts, name)
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        ok = (
            not math.isnan(value)
            and (value > low if open_low else value >= low)
            and (value < high if open_high else value <= high)
        )
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        bounds = f"{left}{low}, {high}{right}"
        raise ValueError(f"{name} must be a number in {bounds}, got {getattr(opts, name)!r}")
    object.__setattr__(opts, name, value)


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
