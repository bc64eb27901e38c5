"""Automatic mask generation ("segment everything"): a grid of point prompts → one labels image.

The steps are those of the official ``SamAutomaticMaskGenerator`` and give the same masks for the
same options, but every step runs batched on the model's device and the result is a non-overlapping
labels image instead of a list of overlapping run-length-encoded masks:

1. for the whole image (and, with ``crop_n_layers``, overlapping crops): embed it, then decode a
   regular grid of single-point prompts in batches of ``points_per_batch`` (3 masks per point);
2. drop masks whose predicted IoU is ``<= pred_iou_thresh``; up-sample the rest to the image (crop)
   size chunk by chunk to get each mask's stability score, box and area, and drop unstable masks,
   masks cut by an inner crop edge (and, optionally, masks larger than ``max_area_fraction``);
   only the low-resolution logits of the survivors are kept;
3. box non-maximum suppression per crop (:func:`napari_sam.engine.automatic.nms.nms`), then across crops
   (smaller crops win), then optionally by mask overlap (``mask_nms_thresh``);
4. optional small-region clean-up (holes and islands below ``min_mask_region_area``) and another
   suppression that prefers untouched masks, as in the official generator;
5. paint: masks by decreasing predicted IoU (or increasing area, ``overlap="area"``), each pixel
   keeps the first mask covering it; labels are renumbered ``1..N`` in that order; a per-object
   table goes with them.

No step loops over masks at full resolution except the optional clean-up, which works inside each
mask's bounding box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from ...model import Sam
from ..decode.coords import boxes_xyxy_to_rc, points_xy_to_rc, scale_xy
from ..device import DeviceLike
from ..embed.embeddings import compute_embeddings
from ..embed.encoder import Precision
from ..loading import ModelLike, load_model, model_weights_id
from ..preprocess import (
    DEFAULT_PERCENTILES,
    NormalizeMode,
    as_channels_last_2d,
    normalize_intensity,
    select_channels,
    upscale_logits,
)
from ..steps import run_steps
from ..types import Embeddings
from .cleanup import clean_mask, window_of
from .grid import CropBox, crop_boxes, layer_point_grids
from .masks import mask_statistics, masks_to_boxes, near_crop_edge, paint_first_hit
from .nms import nms, nms_overlaps

__all__ = [
    "PRESETS",
    "AutomaticOptions",
    "AutomaticResult",
    "automatic",
    "automatic_labels",
    "iter_automatic",
]

#: Float elements of up-sampled logits held at once (bounds the memory of the full-resolution steps).
_UPSCALE_BUDGET = 1 << 25
#: Largest prompt grid side accepted (a million single-point prompts per crop already takes hours).
MAX_POINTS_PER_SIDE = 1024


@dataclass(frozen=True)
class AutomaticOptions:
    """Options of the automatic mask generator; the defaults are the official generator's.

    Attributes
    ----------
    points_per_side
        Grid points along each side of the image (``n × n`` prompts on the whole image).
    points_per_batch
        Prompts decoded together (memory vs speed; does not change the result).
    pred_iou_thresh
        Keep masks whose predicted IoU is above this, in [0, 1].
    stability_score_thresh
        Keep masks whose stability score is at least this, in [0, 1].
    stability_score_offset
        Logit offset of the two thresholds compared by the stability score.
    mask_threshold
        Logit above which a pixel belongs to a mask.
    box_nms_thresh
        Box IoU above which the lower-scoring of two masks of one crop is dropped, in [0, 1].
    crop_n_layers
        Extra layers of crops (layer ``i`` has ``2**i × 2**i`` crops), 0 = whole image only.
    crop_nms_thresh
        Box IoU for suppression across crops, in [0, 1].
    crop_overlap_ratio
        Overlap of neighbouring crops as a fraction of the shorter image side, in [0, 1).
    crop_n_points_downscale_factor
        Layer ``i`` uses ``points_per_side / factor**i`` points per side.
    min_mask_region_area
        Fill holes and remove islands smaller than this many pixels (0 = off).
    max_area_fraction
        Drop masks covering more than this fraction of their crop (1 = off; not an official option —
        useful against "background" masks in microscopy).
    min_area
        Drop masks with fewer pixels (0 = off; not an official option).
    point_in_mask
        Drop masks that do not contain the grid point that prompted them (not an official option;
        with models never trained on background clicks such masks are mostly spurious).
    mask_nms_thresh
        After the box suppression, drop a mask when its overlap with a higher-scoring kept mask
        (intersection over the smaller of the two) exceeds this (1 = off; not an official option).
        Unlike boxes, masks of touching round objects hardly overlap, while duplicates and parts
        of one object do.
    overlap
        Who keeps a pixel covered by several masks: ``"score"`` the higher predicted IoU, ``"area"``
        the smaller mask (a mask merging several objects cannot swallow them).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    max_area_fraction: float = 1.0
    min_area: int = 0
    point_in_mask: bool = False
    mask_nms_thresh: float = 1.0
    overlap: str = "score"

    def __post_init__(self) -> None:
        def integer(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))

        def number(
            name: str, low: float, high: float, *, open_low: bool = False, open_high: bool = False
        ) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            value = float(value)
            too_low = value <= low if open_low else value < low
            too_high = value >= high if open_high else value > high
            if not math.isfinite(value) or too_low or too_high:
                left, right = "(" if open_low else "[", ")" if open_high else "]"
                raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
            object.__setattr__(self, name, value)

        integer("points_per_side", 1)
        if self.points_per_side > MAX_POINTS_PER_SIDE:
            raise ValueError(
                f"points_per_side must be an integer >= 1 and <= {MAX_POINTS_PER_SIDE} "
                f"({MAX_POINTS_PER_SIDE}² prompts per crop), got {self.points_per_side!r}"
            )
        integer("points_per_batch", 1)
        integer("crop_n_layers", 0)
        integer("crop_n_points_downscale_factor", 1)
        integer("min_mask_region_area", 0)
        integer("min_area", 0)
        if not isinstance(self.point_in_mask, (bool, np.bool_)):
            raise ValueError(f"point_in_mask must be True or False, got {self.point_in_mask!r}")
        object.__setattr__(self, "point_in_mask", bool(self.point_in_mask))
        if self.overlap not in ("score", "area"):
            raise ValueError(f"overlap must be 'score' or 'area', got {self.overlap!r}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            number(name, 0.0, 1.0)
        number("crop_overlap_ratio", 0.0, 1.0, open_high=True)
        number("max_area_fraction", 0.0, 1.0, open_low=True)
        number("mask_nms_thresh", 0.0, 1.0)
        number("stability_score_offset", 0.0, math.inf, open_high=True)
        number("mask_threshold", -math.inf, math.inf, open_low=True, open_high=True)
        last = int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers)
        if last < 1:
            raise ValueError(
                f"points_per_side={self.points_per_side} with crop_n_points_downscale_factor="
                f"{self.crop_n_points_downscale_factor} leaves no points on crop layer {self.crop_n_layers}"
            )


#: Named option sets. ``"nuclei"``: chosen for the shipped nano model on fluorescence nuclei by
#: ``benchmarks/bench_automatic.py tune`` (synthetic ``nuclei`` images, seeds 20000+; docs/benchmarks.md):
#: nano's IoU head and logits are less sharp than the official models' (lower IoU and stability
#: thresholds), touching nuclei give overlapping partial masks (suppression by mask overlap: a mask
#: mostly inside a better one goes), and background clicks give tiny or image-sized masks (area limits).
PRESETS: dict[str, dict[str, Any]] = {
    "nuclei": {
        "pred_iou_thresh": 0.5,
        "stability_score_thresh": 0.5,
        "box_nms_thresh": 1.0,
        "mask_nms_thresh": 0.5,
        "min_area": 50,
        "max_area_fraction": 0.02,
        "overlap": "score",
    },
}


def auto_preset(model: Any) -> str | None:
    """What ``preset="auto"`` means for ``model`` (a name, path or loaded model): ``"nuclei"`` for the
    shipped nano model (with the official thresholds its masks almost never survive), else ``None``
    (the official defaults)."""
    name = model if isinstance(model, str) else getattr(model, "name", None)
    return "nuclei" if name == "nano" else None


def resolve_options(preset: str | None = None, **options: Any) -> AutomaticOptions:
    """Options from the official defaults, then ``preset``, then the given (non-None) values.

    Raises
    ------
    ValueError
        An unknown preset or option name, or an invalid value.
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be None or one of {sorted(PRESETS)}, got {preset!r}")
        values.update(PRESETS[preset])
    known = {f.name for f in fields(AutomaticOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown automatic segmentation option(s) {unknown}; known: {sorted(known)}")
    values.update({k: v for k, v in options.items() if v is not None})
    return AutomaticOptions(**values)


@dataclass(frozen=True)
class AutomaticResult:
    """What :func:`automatic` produced.

    Attributes
    ----------
    labels
        ``(H, W)`` uint32: 0 background, objects ``1..N`` in overlap order (by default decreasing
        predicted IoU).
    properties
        One row per label (row ``i`` ↔ label ``i + 1``), numpy arrays keyed like
        ``skimage.measure.regionprops_table``: ``label``, ``score`` (predicted IoU),
        ``stability_score``, ``area`` (pixels in ``labels``), ``bbox-0 … bbox-3`` (half-open
        ``(min_row, min_col, max_row, max_col)`` of the label), ``point-0``, ``point-1`` (the
        ``(row, col)`` prompt that found it). ``pandas.DataFrame(result.properties)`` makes a table.
    mask_properties
        The same keys for every kept mask before overlaps were resolved (official output order;
        ``area`` and ``bbox`` of the whole mask, ``label`` the label it became or 0 if it was hidden).
    masks
        ``(M, H, W)`` bool, those masks (only with ``return_masks=True``; else None).

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> result = ns.automatic(image, points_per_side=2, return_masks=True)
    >>> sorted(result.properties)[-5:]  # also area, bbox-0 … bbox-3 (half-open), label
    ['label', 'point-0', 'point-1', 'score', 'stability_score']
    >>> result.masks.shape[1:], result.masks.dtype
    ((128, 128), dtype('bool'))
    """

    labels: np.ndarray
    properties: dict[str, np.ndarray]
    mask_properties: dict[str, np.ndarray]
    masks: np.ndarray | None = None

    @property
    def n_objects(self) -> int:
        return int(self.properties["label"].shape[0])


@dataclass
class _CropRun:
    """One crop's geometry in the model."""

    crop: CropBox
    input_size: tuple[int, int]
    image_size: int


@dataclass
class _MaskSet:
    """Kept masks: per-mask records plus how to rebuild each mask at full resolution.

    Masks are stored as their low-resolution logits (``low_res``, with the crop they came from), or —
    after the clean-up — as bool windows (``windows``: image slices and the window array).
    """

    image_shape: tuple[int, int]
    runs: list[_CropRun]
    iou: torch.Tensor  # (N,) float32
    stability: torch.Tensor  # (N,) float32
    boxes: torch.Tensor  # (N, 4) int64 inclusive (x0, y0, x1, y1), image frame
    areas: torch.Tensor  # (N,) int64
    points: torch.Tensor  # (N, 2) float64 (x, y), image frame
    crop_index: torch.Tensor  # (N,) int64
    low_res: torch.Tensor | None  # (N, h, w) float32
    mask_threshold: float
    windows: list[tuple[tuple[slice, slice], np.ndarray]] | None = None

    def __len__(self) -> int:
        return int(self.iou.shape[0])

    def take(self, index: torch.Tensor) -> _MaskSet:
        index = index.to(self.iou.device)
        windows = None if self.windows is None else [self.windows[i] for i in index.tolist()]
        return replace(
            self,
            iou=self.iou[index],
            stability=self.stability[index],
            boxes=self.boxes[index],
            areas=self.areas[index],
            points=self.points[index],
            crop_index=self.crop_index[index],
            low_res=None if self.low_res is None else self.low_res[index],
            windows=windows,
        )

    def chunk_size(self) -> int:
        side = max(run.image_size for run in self.runs) if self.runs else 1
        per_mask = max(side * side, self.image_shape[0] * self.image_shape[1])
        return max(1, _UPSCALE_BUDGET // per_mask)

    def dense(self, index: torch.Tensor) -> torch.Tensor:
        """``(C, H, W)`` bool masks ``index`` (in that order) at the image size, on the device."""
        device = self.iou.device
        out = torch.zeros((int(index.shape[0]), *self.image_shape), dtype=torch.bool, device=device)
        if self.windows is not None:
            for j, i in enumerate(index.tolist()):
                where, window = self.windows[i]
                out[j][where] = torch.from_numpy(window).to(device)
            return out
        assert self.low_res is not None  # one of the two storages is always set
        crops = self.crop_index[index]
        for c in torch.unique(crops).tolist():
            rows = torch.nonzero(crops == c).flatten()
            run = self.runs[c]
            logits = _upscale(self.low_res[index[rows]], run)
            box = run.crop
            out[rows, box.y0 : box.y1, box.x0 : box.x1] = logits > self.mask_threshold
        return out

    def iter_dense(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(positions, masks)`` chunks of the masks in ``order``."""
        step = self.chunk_size()
        for start in range(0, int(order.shape[0]), step):
            positions = torch.arange(start, min(start + step, int(order.shape[0])), device=order.device)
            yield positions, self.dense(order[positions])


def _coord_dtype(device: torch.device) -> torch.dtype:
    """float64 for point coordinates, except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def _upscale(low_res: torch.Tensor, run: _CropRun) -> torch.Tensor:
    """``(N, h, w)`` low-resolution logits → ``(N, rows, cols)`` at the crop's size."""
    return upscale_logits(
        low_res[:, None], input_size=run.input_size, original_size=run.crop.shape, image_size=run.image_size
    )[:, 0]


def _empty_set(
    image_shape: tuple[int, int], runs: list[_CropRun], device: torch.device, thr: float
) -> _MaskSet:
    return _MaskSet(
        image_shape=image_shape,
        runs=runs,
        iou=torch.zeros(0, device=device),
        stability=torch.zeros(0, device=device),
        boxes=torch.zeros((0, 4), dtype=torch.int64, device=device),
        areas=torch.zeros(0, dtype=torch.int64, device=device),
        points=torch.zeros((0, 2), dtype=_coord_dtype(device), device=device),
        crop_index=torch.zeros(0, dtype=torch.int64, device=device),
        low_res=None,
        mask_threshold=thr,
    )


def _cat(
    sets: Sequence[_MaskSet],
    image_shape: tuple[int, int],
    runs: list[_CropRun],
    thr: float,
    device: torch.device,
) -> _MaskSet:
    sets = [s for s in sets if len(s)]
    if not sets:
        return _empty_set(image_shape, runs, device, thr)
    first = sets[0]
    return replace(
        first,
        runs=runs,
        iou=torch.cat([s.iou for s in sets]),
        stability=torch.cat([s.stability for s in sets]),
        boxes=torch.cat([s.boxes for s in sets]),
        areas=torch.cat([s.areas for s in sets]),
        points=torch.cat([s.points for s in sets]),
        crop_index=torch.cat([s.crop_index for s in sets]),
        low_res=torch.cat([s.low_res for s in sets if s.low_res is not None]),
    )


def _decode_batch(
    sam: Sam, features: torch.Tensor, points_xy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single positive points ``(B, 2)`` ``(x, y)`` in the model input frame → 3 masks each.

    Returns ``(3B, h, w)`` low-resolution logits and ``(3B,)`` predicted IoU, point-major.
    """
    labels = torch.ones((points_xy.shape[0], 1), dtype=torch.int64, device=points_xy.device)
    sparse, dense = sam.prompt_encoder((points_xy[:, None, :], labels), None, None)
    low_res, iou = sam.mask_decoder(
        features, sam.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True
    )
    return low_res.flatten(0, 1).float(), iou.flatten(0, 1).float()


def _crop_masks(
    sam: Sam,
    features: torch.Tensor,
    run: _CropRun,
    crop_id: int,
    grid: np.ndarray,
    image_shape: tuple[int, int],
    opts: AutomaticOptions,
) -> Generator[int, None, _MaskSet]:
    """Decode and filter one crop's grid; yields after each batch; returns the crop's NMS survivors."""
    crop = run.crop
    rows, cols = crop.shape
    # grid is (x, y) in the unit square (generated in that order): scale to crop pixels, then to the
    # model input frame; both steps keep (x, y) order
    points_crop = grid * np.array([cols, rows], dtype=np.float64)
    points_model = scale_xy(points_crop, crop.shape, run.input_size)
    kept: list[_MaskSet] = []
    for start in range(0, len(points_model), opts.points_per_batch):
        stop = start + opts.points_per_batch
        with torch.inference_mode():
            batch = _decode_and_filter(
                sam,
                features,
                run,
                crop_id,
                points_model[start:stop],
                points_crop[start:stop],
                image_shape,
                opts,
            )
        kept.append(batch)
        yield 1
    with torch.inference_mode():
        merged = _cat(kept, image_shape, [run], opts.mask_threshold, sam.device)
        if not len(merged):
            return merged
        return merged.take(nms(merged.boxes.float(), merged.iou, opts.box_nms_thresh))


def _decode_and_filter(
    sam: Sam,
    features: torch.Tensor,
    run: _CropRun,
    crop_id: int,
    points_model: np.ndarray,
    points_crop: np.ndarray,
    image_shape: tuple[int, int],
    opts: AutomaticOptions,
) -> _MaskSet:
    """One batch of grid points (``(B, 2)`` ``(x, y)`` in the model and crop frames): decode, then
    the IoU, stability, area and crop-edge filters."""
    device = sam.device
    crop = run.crop
    # float64 as the official generator passes them (float32 where the device has no float64)
    pts = torch.as_tensor(points_model, dtype=_coord_dtype(device), device=device)
    low_res, iou = _decode_batch(sam, features, pts)
    source = torch.as_tensor(points_crop, dtype=_coord_dtype(device), device=device).repeat_interleave(
        3, dim=0
    )
    if opts.pred_iou_thresh > 0:
        keep = iou > opts.pred_iou_thresh
        low_res, iou, source = low_res[keep], iou[keep], source[keep]
    chunk = max(1, _UPSCALE_BUDGET // (run.image_size * run.image_size))
    stability = torch.zeros(0, device=device)
    boxes = torch.zeros((0, 4), dtype=torch.int64, device=device)
    areas = torch.zeros(0, dtype=torch.int64, device=device)
    at_point = torch.zeros(0, dtype=torch.bool, device=device)
    if low_res.shape[0]:
        # pixel under each prompt point (crop frame): x → column, y → row
        cols = source[:, 0].floor().long().clamp(0, crop.shape[1] - 1)
        rows = source[:, 1].floor().long().clamp(0, crop.shape[0] - 1)
        parts = []
        for i in range(0, low_res.shape[0], chunk):
            logits = _upscale(low_res[i : i + chunk], run)
            index = torch.arange(logits.shape[0], device=device)
            hit = logits[index, rows[i : i + chunk], cols[i : i + chunk]] > opts.mask_threshold
            parts.append((*mask_statistics(logits, opts.mask_threshold, opts.stability_score_offset), hit))
        stability = torch.cat([p[0] for p in parts])
        offset = torch.tensor([crop.x0, crop.y0, crop.x0, crop.y0], dtype=torch.int64, device=device)
        boxes = torch.cat([p[1] for p in parts]) + offset
        areas = torch.cat([p[2] for p in parts])
        at_point = torch.cat([p[3] for p in parts])
    keep = torch.ones_like(iou, dtype=torch.bool)
    if opts.stability_score_thresh > 0:
        keep &= stability >= opts.stability_score_thresh
    if opts.max_area_fraction < 1:
        keep &= areas <= opts.max_area_fraction * crop.area
    if opts.min_area > 0:
        keep &= areas >= opts.min_area
    if opts.point_in_mask:
        keep &= at_point
    keep &= ~near_crop_edge(boxes, crop.xyxy, (0, 0, image_shape[1], image_shape[0]))
    offset_xy = torch.tensor([crop.x0, crop.y0], dtype=_coord_dtype(device), device=device)
    return _MaskSet(
        image_shape=image_shape,
        runs=[run],
        iou=iou[keep],
        stability=stability[keep],
        boxes=boxes[keep],
        areas=areas[keep],
        points=source[keep] + offset_xy,
        crop_index=torch.full((int(keep.sum()),), crop_id, dtype=torch.int64, device=device),
        low_res=low_res[keep],
        mask_threshold=opts.mask_threshold,
    )


def _clean(masks: _MaskSet, opts: AutomaticOptions) -> _MaskSet:
    """Small-region clean-up and the official follow-up suppression (untouched masks preferred)."""
    n = len(masks)
    windows: list[tuple[tuple[slice, slice], np.ndarray]] = []
    untouched = np.zeros(n, dtype=np.float32)
    new_boxes = np.zeros((n, 4), dtype=np.int64)
    areas = np.zeros(n, dtype=np.int64)
    boxes = masks.boxes.cpu().numpy()
    for positions, dense in masks.iter_dense(torch.arange(n, device=masks.iou.device)):
        dense_np = dense.cpu().numpy()
        for j, i in enumerate(positions.tolist()):
            where, box_in = window_of(boxes[i], masks.image_shape)
            window, changed = clean_mask(dense_np[j][where], box_in, opts.min_mask_region_area)
            windows.append((where, window))
            untouched[i] = 0.0 if changed else 1.0
            areas[i] = int(window.sum())
            local = masks_to_boxes(torch.from_numpy(window)[None])[0].numpy()
            new_boxes[i] = local + np.array([where[1].start, where[0].start] * 2) * bool(window.any())
    device = masks.iou.device
    cleaned = replace(
        masks,
        boxes=torch.from_numpy(new_boxes).to(device),
        areas=torch.from_numpy(areas).to(device),
        low_res=None,
        windows=windows,
    )
    threshold = max(opts.box_nms_thresh, opts.crop_nms_thresh)
    keep = nms(cleaned.boxes.float(), torch.from_numpy(untouched).to(device), threshold)
    return cleaned.take(keep)


def _generate(
    sam: Sam,
    scaled: np.ndarray | None,
    embeddings: Embeddings | None,
    image_shape: tuple[int, int],
    opts: AutomaticOptions,
    precision: Precision,
) -> Generator[tuple[int, int], None, _MaskSet]:
    """All steps up to (not including) painting; yields ``(done, total)`` progress."""
    boxes = crop_boxes(image_shape, opts.crop_n_layers, opts.crop_overlap_ratio)
    grids = layer_point_grids(opts.points_per_side, opts.crop_n_layers, opts.crop_n_points_downscale_factor)
    total = sum(math.ceil(len(grids[b.layer]) / opts.points_per_batch) + 1 for b in boxes)
    done = 0
    runs: list[_CropRun] = []
    per_crop: list[_MaskSet] = []
    yield done, total
    for crop_id, box in enumerate(boxes):
        if crop_id == 0 and embeddings is not None:
            emb = embeddings
        else:
            assert scaled is not None  # checked by the caller: crops need the image
            # every crop is embedded whole (as the official generator does), however large: the grid
            # covers the crop; for big images, crop_n_layers adds finer crops
            emb = compute_embeddings(
                scaled[box.y0 : box.y1, box.x0 : box.x1], sam, normalize=None, precision=precision, tile=False
            )
        run = _CropRun(box, tuple(emb.input_size), emb.image_size)
        runs.append(run)
        done += 1
        yield done, total
        features = emb.features.to(sam.device)
        steps = _crop_masks(sam, features, run, crop_id, grids[box.layer], image_shape, opts)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                per_crop.append(stop.value)
                break
            done += 1
            yield done, total
    for crop_set in per_crop:
        crop_set.runs = runs
    with torch.inference_mode():
        masks = _cat(per_crop, image_shape, runs, opts.mask_threshold, sam.device)
        if len(boxes) > 1 and len(masks):
            crop_areas = torch.tensor([b.area for b in boxes], dtype=torch.float32, device=masks.iou.device)
            scores = 1.0 / crop_areas[masks.crop_index]
            masks = masks.take(nms(masks.boxes.float(), scores, opts.crop_nms_thresh))
        if opts.mask_nms_thresh < 1 and len(masks) > 1:
            masks = masks.take(_mask_nms(masks, opts.mask_nms_thresh))
        if opts.min_mask_region_area > 0 and len(masks):
            masks = _clean(masks, opts)
    return masks


#: Mask overlaps for ``mask_nms_thresh`` are measured on a grid of at most this many pixels a side.
_OVERLAP_SIDE = 256


def _mask_nms(masks: _MaskSet, threshold: float) -> torch.Tensor:
    """Indices kept by greedy suppression on intersection-over-smaller-mask (by predicted IoU).

    Masks are compared on a regular subsample of the image (every ``k``-th row and column, at most
    :data:`_OVERLAP_SIDE` a side), which estimates areas and intersections without bias.
    """
    h, w = masks.image_shape
    step = max(1, math.ceil(max(h, w) / _OVERLAP_SIDE))
    n = len(masks)
    parts = []
    for _, dense in masks.iter_dense(torch.arange(n, device=masks.iou.device)):
        parts.append(dense[:, ::step, ::step].flatten(1).to(torch.float32))
    flat = torch.cat(parts)
    inter = flat @ flat.T
    area = inter.diagonal()
    smaller = torch.minimum(area[:, None], area[None, :]).clamp(min=1.0)
    return nms_overlaps(inter / smaller, masks.iou, threshold)


def _table(
    masks: _MaskSet, labels_of_masks: np.ndarray, areas: np.ndarray, bboxes_rc: np.ndarray
) -> dict[str, np.ndarray]:
    points_rc = points_xy_to_rc(masks.points.cpu().numpy())
    return {
        "label": labels_of_masks.astype(np.uint32),
        "score": masks.iou.cpu().numpy().astype(np.float32),
        "stability_score": masks.stability.cpu().numpy().astype(np.float32),
        "area": areas.astype(np.int64),
        **{f"bbox-{i}": bboxes_rc[:, i].astype(np.int64) for i in range(4)},
        "point-0": points_rc[:, 0],
        "point-1": points_rc[:, 1],
    }


def _paint(masks: _MaskSet, return_masks: bool, overlap: str) -> AutomaticResult:
    """Resolve overlaps (``overlap``: by predicted IoU or smaller area first) into one labels image."""
    from scipy import ndimage

    n = len(masks)
    device = masks.iou.device
    h, w = masks.image_shape
    if overlap == "area":
        order = torch.sort(masks.areas, stable=True).indices
    else:
        order = torch.sort(masks.iou, descending=True, stable=True).indices
    canvas = torch.zeros((h, w), dtype=torch.int64, device=device)
    for positions, dense in masks.iter_dense(order):
        paint_first_hit(canvas, dense, positions + 1)  # provisional label = rank + 1
    canvas_np = canvas.cpu().numpy()
    counts = np.bincount(canvas_np.ravel(), minlength=n + 1)[1:]  # per rank
    visible = counts > 0
    lut = np.zeros(n + 1, dtype=np.uint32)
    lut[1:][visible] = np.arange(1, int(visible.sum()) + 1, dtype=np.uint32)
    labels = lut[canvas_np]

    order_np = order.cpu().numpy()
    ranked = masks.take(order[torch.from_numpy(visible).to(device)])
    slices = ndimage.find_objects(labels)
    bboxes = np.array(
        [[s[0].start, s[1].start, s[0].stop, s[1].stop] for s in slices if s is not None], dtype=np.int64
    ).reshape(-1, 4)
    properties = _table(ranked, lut[1:][visible], counts[visible], bboxes)

    label_of_mask = np.zeros(n, dtype=np.uint32)
    label_of_mask[order_np] = lut[1:]
    mask_boxes = boxes_xyxy_to_rc(masks.boxes.cpu().numpy().astype(np.float64)).astype(np.int64)
    empty = masks.areas.cpu().numpy() == 0
    mask_boxes[empty] = 0
    mask_properties = _table(masks, label_of_mask, masks.areas.cpu().numpy(), mask_boxes)
    dense_masks = None
    if return_masks:
        dense_masks = np.zeros((n, h, w), dtype=bool)
        for positions, dense in masks.iter_dense(torch.arange(n, device=device)):
            dense_masks[positions.cpu().numpy()] = dense.cpu().numpy()
    return AutomaticResult(
        labels=labels, properties=properties, mask_properties=mask_properties, masks=dense_masks
    )


def _empty_result(image_shape: tuple[int, int], return_masks: bool) -> AutomaticResult:
    masks = _empty_set(image_shape, [], torch.device("cpu"), 0.0)
    bboxes = np.zeros((0, 4), dtype=np.int64)
    table = _table(masks, np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64), bboxes)
    return AutomaticResult(
        labels=np.zeros(image_shape, dtype=np.uint32),
        properties=table,
        mask_properties=dict(table),
        masks=np.zeros((0, *image_shape), dtype=bool) if return_masks else None,
    )


def iter_automatic(
    image: Any,
    *,
    preset: str | None = None,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    precision: Precision = "auto",
    return_masks: bool = False,
    **options: Any,
) -> Generator[tuple[int, int], None, AutomaticResult]:
    """:func:`automatic` as a generator: yields ``(done, total)`` steps, returns the result.

    Made for napari's ``thread_worker`` (yielded values → progress, the return value → ``returned``);
    closing the generator cancels the run between two decoder batches. Arguments as :func:`automatic`.
    """
    opts = resolve_options(preset, **options)
    if isinstance(image, Embeddings):
        if embeddings is not None and embeddings is not image:
            raise ValueError("pass the embeddings once: as the first argument or as embeddings=")
        embeddings, image = image, None
    if embeddings is not None and not isinstance(embeddings, Embeddings):
        raise TypeError(f"embeddings must be an Embeddings object, got {type(embeddings).__name__}")
    if image is None and embeddings is None:
        raise ValueError("automatic() needs an image or Embeddings")
    if image is None and opts.crop_n_layers > 0:
        raise ValueError(
            "crop_n_layers > 0 needs the image itself (each crop is embedded separately); pass the "
            "image, optionally with embeddings= for the whole-image step"
        )

    scaled = None
    if image is not None:
        arr = as_channels_last_2d(image, channel_axis=channel_axis)
        arr, _ = select_channels(arr, channel)
        scaled, *_ = normalize_intensity(
            arr, normalize=normalize, percentiles=percentiles, contrast_limits=contrast_limits
        )
        image_shape = (int(scaled.shape[0]), int(scaled.shape[1]))
        if embeddings is not None and tuple(embeddings.original_size) != image_shape:
            raise ValueError(
                f"embeddings are of an image of shape {tuple(embeddings.original_size)}, but the image "
                f"has shape {image_shape}"
            )
    else:
        assert embeddings is not None
        image_shape = tuple(int(v) for v in embeddings.original_size)  # type: ignore[assignment]

    if scaled is not None and embeddings is None and float(scaled.min()) == float(scaled.max()):
        yield 1, 1  # a constant image has no objects
        return _empty_result(image_shape, return_masks)

    if embeddings is not None:
        sam = embeddings.model if embeddings.model is not None else load_model(model, device)
        if model_weights_id(sam) != embeddings.weights_sha256:
            raise ValueError(
                f"model {sam.name!r} is not the model these embeddings were computed with "
                f"({embeddings.model_name!r})"
            )
    else:
        sam = load_model(model, device)

    # inference mode is entered step by step inside, never across a yield (it is thread state and
    # would leak into the caller's code between steps)
    masks = yield from _generate(sam, scaled, embeddings, image_shape, opts, precision)
    if not len(masks):
        return _empty_result(image_shape, return_masks)
    with torch.inference_mode():
        return _paint(masks, return_masks, opts.overlap)


def automatic(
    image: Any,
    *,
    points_per_side: int | None = None,
    points_per_batch: int | None = None,
    pred_iou_thresh: float | None = None,
    stability_score_thresh: float | None = None,
    stability_score_offset: float | None = None,
    mask_threshold: float | None = None,
    box_nms_thresh: float | None = None,
    crop_n_layers: int | None = None,
    crop_nms_thresh: float | None = None,
    crop_overlap_ratio: float | None = None,
    crop_n_points_downscale_factor: int | None = None,
    min_mask_region_area: int | None = None,
    max_area_fraction: float | None = None,
    min_area: int | None = None,
    point_in_mask: bool | None = None,
    mask_nms_thresh: float | None = None,
    overlap: str | None = None,
    preset: str | None = None,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    precision: Precision = "auto",
    return_masks: bool = False,
    progress: Callable[[int, int], Any] | None = None,
) -> AutomaticResult:
    """Segment every object of a 2D image without prompts (automatic mask generation).

    Every option left at None takes the ``preset``'s value if it has one, else the official
    ``SamAutomaticMaskGenerator`` default (in brackets below).

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)`` array of any integer or float dtype, or :class:`Embeddings`
        (then ``crop_n_layers`` must be 0).
    points_per_side
        [32] Grid of ``n × n`` single-point prompts over the image.
    points_per_batch
        [64] Prompts decoded at once (memory vs speed; same result).
    pred_iou_thresh
        [0.88] Keep masks with predicted IoU above this, in [0, 1].
    stability_score_thresh
        [0.95] Keep masks with a stability score of at least this, in [0, 1].
    stability_score_offset
        [1.0] Logit offset for the stability score.
    mask_threshold
        [0.0] Logit threshold of the masks.
    box_nms_thresh
        [0.7] Box IoU for non-maximum suppression within a crop, in [0, 1].
    crop_n_layers
        [0] Extra crop layers (``2**i × 2**i`` crops on layer ``i``), for small objects in big images.
    crop_nms_thresh
        [0.7] Box IoU for suppression across crops, in [0, 1].
    crop_overlap_ratio
        [512 / 1500] Overlap of neighbouring crops (fraction of the shorter side).
    crop_n_points_downscale_factor
        [1] Points per side on layer ``i`` are divided by ``factor**i``.
    min_mask_region_area
        [0] Fill holes and remove islands smaller than this (pixels).
    max_area_fraction
        [1.0] Drop masks covering more than this fraction of the image (crop); not an official option.
    min_area
        [0] Drop masks with fewer pixels; not an official option.
    point_in_mask
        [False] Drop masks that do not contain their own prompt point; not an official option.
    mask_nms_thresh
        [1.0] Drop masks overlapping a better kept mask by more than this (intersection over the
        smaller mask); 1 = off; not an official option.
    overlap
        ["score"] Where masks overlap, the higher predicted IoU wins (``"score"``) or the smaller
        mask (``"area"``); labels are numbered in that order.
    preset
        None, or ``"nuclei"``: pred_iou_thresh 0.5, stability_score_thresh 0.5, box_nms_thresh 1.0
        (off), mask_nms_thresh 0.5, min_area 50, max_area_fraction 0.02, overlap ``"score"`` — chosen
        for the nano model on fluorescence nuclei (see the benchmarks page).
    model, device
        The model (name, weights path or loaded model) and where to run it.
    embeddings
        Precomputed embeddings of ``image`` for the whole-image step.
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing, see :func:`napari_sam.engine.preprocess.prepare_image`; crops are cut from the
        image normalised once as a whole.
    precision
        Encoder arithmetic (see :func:`napari_sam.compute_embeddings`); the decoder runs in float32.
    return_masks
        Also return every kept mask before overlaps are resolved (``(M, H, W)`` bool; memory!).
    progress
        Called as ``progress(done, total)`` after each step (embedding a crop, decoding a batch).

    Returns
    -------
    AutomaticResult
        ``labels`` (``(Y, X)`` uint32, overlaps resolved by predicted IoU), ``properties`` (one row per
        label) and ``mask_properties`` / ``masks`` (every kept mask).

    Raises
    ------
    ValueError
        Invalid options (e.g. ``points_per_side=0``, a threshold outside [0, 1]) or input.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, truth = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> result = ns.automatic(image, preset="nuclei", points_per_side=3)  # 9 prompts; default 32 × 32
    >>> result.labels.shape, result.labels.dtype
    ((128, 128), dtype('uint32'))
    >>> n = int(result.labels.max())  # objects found
    >>> all(len(column) == n for column in result.properties.values())
    True
    """
    options = {
        "points_per_side": points_per_side,
        "points_per_batch": points_per_batch,
        "pred_iou_thresh": pred_iou_thresh,
        "stability_score_thresh": stability_score_thresh,
        "stability_score_offset": stability_score_offset,
        "mask_threshold": mask_threshold,
        "box_nms_thresh": box_nms_thresh,
        "crop_n_layers": crop_n_layers,
        "crop_nms_thresh": crop_nms_thresh,
        "crop_overlap_ratio": crop_overlap_ratio,
        "crop_n_points_downscale_factor": crop_n_points_downscale_factor,
        "min_mask_region_area": min_mask_region_area,
        "max_area_fraction": max_area_fraction,
        "min_area": min_area,
        "point_in_mask": point_in_mask,
        "mask_nms_thresh": mask_nms_thresh,
        "overlap": overlap,
    }
    steps = iter_automatic(
        image,
        preset=preset,
        model=model,
        device=device,
        embeddings=embeddings,
        normalize=normalize,
        percentiles=percentiles,
        contrast_limits=contrast_limits,
        channel=channel,
        channel_axis=channel_axis,
        precision=precision,
        return_masks=return_masks,
        **options,
    )
    return run_steps(steps, progress=progress, what="automatic segmentation")


def automatic_labels(
    image: Any,
    *,
    stack: bool = False,
    channel_axis: int | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    preset: str | None = "auto",
    **kwargs: Any,
) -> np.ndarray:
    """Labels of :func:`automatic` for a 2D image, or slice by slice for a ``(Z, Y, X[, C])`` stack.

    In a stack every slice is segmented on its own (objects are not linked across slices) and gets
    labels that continue the previous slices' numbering, so no two slices share a label. The stack is
    normalised as one volume. Other keywords go to :func:`automatic`.

    ``preset="auto"`` (what ``segment()`` without prompts uses) picks ``"nuclei"`` for the shipped
    nano model — with the official thresholds its masks almost never survive — and the official
    defaults for every other model.

    Returns
    -------
    numpy.ndarray
        ``uint32`` labels with the image's spatial shape.
    """
    if preset == "auto":
        preset = auto_preset(kwargs.get("model", "nano"))
    kwargs["preset"] = preset
    if not stack:
        return automatic(
            image,
            channel_axis=channel_axis,
            normalize=normalize,
            percentiles=percentiles,
            contrast_limits=contrast_limits,
            **kwargs,
        ).labels
    volume = np.asarray(image)
    if channel_axis is not None:
        volume = np.moveaxis(volume, channel_axis, -1)
    if volume.ndim == 3:
        volume = volume[..., None]
    if volume.ndim != 4:
        raise ValueError(f"a stack must be (Z, Y, X) or (Z, Y, X, C), got shape {np.shape(image)}")
    z, rows, cols, channels = volume.shape
    flat = as_channels_last_2d(volume.reshape(z * rows, cols, channels))
    flat, _ = select_channels(flat, kwargs.pop("channel", None))
    scaled, *_ = normalize_intensity(
        flat, normalize=normalize, percentiles=percentiles, contrast_limits=contrast_limits
    )
    scaled = scaled.reshape(z, rows, cols, -1)
    out = np.zeros((z, rows, cols), dtype=np.uint32)
    offset = 0
    for index in range(z):
        labels = automatic(scaled[index], normalize=None, **kwargs).labels
        out[index] = np.where(labels > 0, labels + np.uint32(offset), 0)
        offset += int(labels.max())
    return out
