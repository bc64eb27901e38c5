"""The mask generator: crops → grid prompts → decoded, filtered and suppressed :class:`MaskCandidates`.

Steps 1 to 4 of :mod:`napari_sam.engine.automatic.amg`: every crop (the whole image first) is embedded,
its point grid decoded in batches (3 masks per point), each batch filtered (predicted IoU, stability,
area, prompt point, crop edge) and each crop's survivors suppressed by box overlap; then suppression
across crops, by mask overlap, and the optional small-region clean-up. Work is written as a step
generator (:mod:`napari_sam.engine.steps`): one step per crop embedded and per batch decoded.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import replace

import numpy as np
import torch

from ...model import Sam
from ..decode.coords import boxes_rc_to_xyxy, mask_to_box, scale_xy
from ..embed.embeddings import compute_embeddings
from ..embed.encoder import Precision
from ..types import AutomaticOptions, Embeddings
from .candidates import UPSCALE_BUDGET, CropRun, MaskCandidates, coord_dtype, upscale_to_crop
from .cleanup import clean_mask, window_of
from .grid import CropBox, crop_boxes, layer_point_grids
from .masks import mask_statistics, near_crop_edge
from .nms import nms, nms_overlaps

__all__ = ["generate_masks"]

#: Mask overlaps for ``mask_nms_thresh`` are measured on a grid of at most this many pixels a side.
_OVERLAP_SIDE = 256


def generate_masks(
    sam: Sam,
    scaled: np.ndarray | None,
    embeddings: Embeddings | None,
    image_shape: tuple[int, int],
    opts: AutomaticOptions,
    precision: Precision,
    object_size: float | str | None = None,
) -> Generator[tuple[int, int], None, MaskCandidates]:
    """Every kept mask of an image, before overlaps are resolved; yields ``(done, total)`` steps.

    Parameters
    ----------
    sam
        The model.
    scaled
        ``(H, W, C)`` image already on the model's 0–255 scale (crops are cut from it), or None when
        ``embeddings`` stand for the whole image and there are no crops.
    embeddings
        The whole image's embeddings, or None to embed ``scaled``.
    image_shape
        ``(H, W)``.
    opts
        The options.
    precision
        Encoder arithmetic for the crops embedded here.
    object_size
        ``compute_embeddings(object_size=)`` of the crops embedded here (each embedded whole: the scale
        is at most what fits the canvas).

    Returns
    -------
    MaskCandidates
        The kept masks, in the official generator's order.
    """
    boxes = crop_boxes(image_shape, opts.crop_n_layers, opts.crop_overlap_ratio)
    grids = layer_point_grids(opts.points_per_side, opts.crop_n_layers, opts.crop_n_points_downscale_factor)
    total = sum(math.ceil(len(grids[b.layer]) / opts.points_per_batch) + 1 for b in boxes)
    done = 0
    runs: list[CropRun] = []
    per_crop: list[MaskCandidates] = []
    yield done, total
    for crop_id, box in enumerate(boxes):
        emb = (
            embeddings
            if crop_id == 0 and embeddings is not None
            else _embed_crop(sam, scaled, box, precision, object_size)
        )
        run = CropRun(box, tuple(emb.input_size), emb.image_size)  # type: ignore[arg-type]
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
        masks = MaskCandidates.concat(per_crop, image_shape, runs, opts.mask_threshold, sam.device)
        return _suppress_and_clean(masks, boxes, opts)


def _embed_crop(
    sam: Sam, scaled: np.ndarray | None, box: CropBox, precision: Precision, object_size: float | str | None
) -> Embeddings:
    """Embeddings of one crop of the (already normalised) image.

    Every crop is embedded whole (as the official generator does), however large: the grid covers the
    crop; for big images, ``crop_n_layers`` adds finer crops.
    """
    assert scaled is not None  # checked by the caller: crops need the image
    crop = scaled[box.y0 : box.y1, box.x0 : box.x1]
    emb = compute_embeddings(
        crop, sam, normalize=None, precision=precision, tile=False, object_size=object_size
    )
    assert isinstance(emb, Embeddings)  # one 2D image, untiled
    return emb


def _suppress_and_clean(
    masks: MaskCandidates, boxes: list[CropBox], opts: AutomaticOptions
) -> MaskCandidates:
    """Suppression across crops (smaller crops win), by mask overlap, then the optional clean-up."""
    if len(boxes) > 1 and len(masks):
        crop_areas = torch.tensor([b.area for b in boxes], dtype=torch.float32, device=masks.iou.device)
        scores = 1.0 / crop_areas[masks.crop_index]
        masks = masks.take(nms(masks.boxes.float(), scores, opts.crop_nms_thresh))
    if opts.mask_nms_thresh < 1 and len(masks) > 1:
        masks = masks.take(_mask_nms(masks, opts.mask_nms_thresh))
    if opts.min_mask_region_area > 0 and len(masks):
        masks = _clean(masks, opts)
    return masks


def _decode_points(
    sam: Sam, features: torch.Tensor, points_xy: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Single positive points ``(B, 2)`` ``(x, y)`` in the model input frame → 3 masks each.

    Returns ``(3B, h, w)`` float32 low-resolution logits and ``(3B,)`` float32 predicted IoU,
    point-major.
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
    run: CropRun,
    crop_id: int,
    grid: np.ndarray,
    image_shape: tuple[int, int],
    opts: AutomaticOptions,
) -> Generator[int, None, MaskCandidates]:
    """Decode and filter one crop's grid; yields after each batch; returns the crop's NMS survivors."""
    crop = run.crop
    rows, cols = crop.shape
    # grid is (x, y) in the unit square (generated in that order): scale to crop pixels, then to the
    # model input frame; both steps keep (x, y) order
    points_crop = grid * np.array([cols, rows], dtype=np.float64)
    points_model = scale_xy(points_crop, crop.shape, run.input_size)
    kept: list[MaskCandidates] = []
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
        merged = MaskCandidates.concat(kept, image_shape, [run], opts.mask_threshold, sam.device)
        if not len(merged):
            return merged
        return merged.take(nms(merged.boxes.float(), merged.iou, opts.box_nms_thresh))


def _decode_and_filter(
    sam: Sam,
    features: torch.Tensor,
    run: CropRun,
    crop_id: int,
    points_model: np.ndarray,
    points_crop: np.ndarray,
    image_shape: tuple[int, int],
    opts: AutomaticOptions,
) -> MaskCandidates:
    """One batch of grid points (``(B, 2)`` ``(x, y)`` in the model and crop frames): decode, then
    the IoU, stability, area and crop-edge filters."""
    device = sam.device
    crop = run.crop
    # float64 as the official generator passes them (float32 where the device has no float64)
    pts = torch.as_tensor(points_model, dtype=coord_dtype(device), device=device)
    low_res, iou = _decode_points(sam, features, pts)
    source = torch.as_tensor(points_crop, dtype=coord_dtype(device), device=device).repeat_interleave(
        3, dim=0
    )
    if opts.pred_iou_thresh > 0:
        keep = iou > opts.pred_iou_thresh
        low_res, iou, source = low_res[keep], iou[keep], source[keep]
    stability, boxes, areas, at_point = _statistics(low_res, source, run, opts)
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
    offset_xy = torch.tensor([crop.x0, crop.y0], dtype=coord_dtype(device), device=device)
    return MaskCandidates(
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


def _statistics(
    low_res: torch.Tensor, source: torch.Tensor, run: CropRun, opts: AutomaticOptions
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per mask, at the crop's size (up-sampled chunk by chunk): stability score, inclusive box in the
    image frame, area, and whether its prompt point ``source`` (``(x, y)``, crop frame) lies inside."""
    device = low_res.device
    crop = run.crop
    if not low_res.shape[0]:
        empty = torch.zeros(0, device=device)
        boxes = torch.zeros((0, 4), dtype=torch.int64, device=device)
        return (
            empty,
            boxes,
            torch.zeros(0, dtype=torch.int64, device=device),
            torch.zeros(0, dtype=torch.bool, device=device),
        )
    # pixel under each prompt point (crop frame): x → column, y → row
    cols = source[:, 0].floor().long().clamp(0, crop.shape[1] - 1)
    rows = source[:, 1].floor().long().clamp(0, crop.shape[0] - 1)
    chunk = max(1, UPSCALE_BUDGET // (run.image_size * run.image_size))
    parts = []
    for i in range(0, low_res.shape[0], chunk):
        logits = upscale_to_crop(low_res[i : i + chunk], run)
        index = torch.arange(logits.shape[0], device=device)
        hit = logits[index, rows[i : i + chunk], cols[i : i + chunk]] > opts.mask_threshold
        parts.append((*mask_statistics(logits, opts.mask_threshold, opts.stability_score_offset), hit))
    offset = torch.tensor([crop.x0, crop.y0, crop.x0, crop.y0], dtype=torch.int64, device=device)
    stability, boxes, areas, at_point = (torch.cat([p[k] for p in parts]) for k in range(4))
    return stability, boxes + offset, areas, at_point


def _clean(masks: MaskCandidates, opts: AutomaticOptions) -> MaskCandidates:
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
            if window.any():  # an emptied mask keeps the zero box, as in the official generator
                local = boxes_rc_to_xyxy(mask_to_box(window)).astype(np.int64)
                new_boxes[i] = local + np.array([where[1].start, where[0].start] * 2)
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


def _mask_nms(masks: MaskCandidates, threshold: float) -> torch.Tensor:
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
