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

Where each part lives: the options are :class:`~napari_sam.engine.types.AutomaticOptions` (presets in
:mod:`.options`); steps 1–4 are :mod:`.generate` (the kept masks a :class:`.candidates.MaskCandidates`);
step 5 and the result are :mod:`.result`. This module holds the entry points: :func:`automatic` (one 2D
image, keyword options), :func:`iter_automatic` (the same as a step generator, an options object) and
:func:`automatic_labels` (an image or a stack, slice by slice).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ...model import Sam
from ..device import DeviceLike
from ..embed.encoder import Precision
from ..embed.layout import read_slice
from ..loading import ModelLike, load_model, model_weights_id
from ..preprocess import Preprocessor
from ..steps import ProgressLike, run_steps
from ..types import DEFAULT_PERCENTILES, AutomaticOptions, Embeddings, NormalizeMode
from .generate import generate_masks
from .options import OPTION_NAMES, PRESETS, resolve_options
from .result import AutomaticResult, empty_result, paint
from .stack import stack_layout, volume_preprocessor

__all__ = [
    "PRESETS",
    "AutomaticOptions",
    "AutomaticResult",
    "automatic",
    "automatic_labels",
    "iter_automatic",
]


def _image_or_embeddings(image: Any, embeddings: Embeddings | None) -> tuple[Any, Embeddings | None]:
    """``(image, embeddings)`` with Embeddings given as the image moved to their place; checked."""
    if isinstance(image, Embeddings):
        if embeddings is not None and embeddings is not image:
            raise ValueError("pass the embeddings once: as the first argument or as embeddings=")
        embeddings, image = image, None
    if embeddings is not None and not isinstance(embeddings, Embeddings):
        raise TypeError(f"embeddings must be an Embeddings object, got {type(embeddings).__name__}")
    if image is None and embeddings is None:
        raise ValueError("automatic() needs an image or Embeddings")
    return image, embeddings


def _model_for(embeddings: Embeddings | None, model: ModelLike, device: DeviceLike) -> Sam:
    """The model to decode with: the embeddings' own, else ``model`` — which must have made them."""
    if embeddings is None:
        return load_model(model, device)
    sam = embeddings.model if embeddings.model is not None else load_model(model, device)
    if model_weights_id(sam) != embeddings.weights_sha256:
        raise ValueError(
            f"model {sam.name!r} is not the model these embeddings were computed with "
            f"({embeddings.model_name!r})"
        )
    return sam


def iter_automatic(
    image: Any,
    options: AutomaticOptions | None = None,
    preprocessor: Preprocessor | None = None,
    *,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | None = None,
    precision: Precision = "auto",
    return_masks: bool = False,
) -> Generator[tuple[int, int], None, AutomaticResult]:
    """:func:`automatic` as a step generator: yields ``(done, total)`` steps, returns the result.

    Made for napari's ``thread_worker`` (yielded values → progress, the return value → ``returned``)
    and :func:`~napari_sam.engine.steps.run_steps`; closing the generator cancels the run between two
    decoder batches.

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)`` array, or :class:`Embeddings`.
    options
        Default: the official ones (see :func:`~napari_sam.engine.automatic.options.resolve_options`).
    preprocessor
        How ``image`` is normalised (default :class:`Preprocessor()`); crops are cut from the image
        normalised once as a whole.
    model, device, embeddings, precision, return_masks
        As :func:`automatic`.
    """
    opts = options if options is not None else AutomaticOptions()
    image, embeddings = _image_or_embeddings(image, embeddings)
    if image is None and opts.crop_n_layers > 0:
        raise ValueError(
            "crop_n_layers > 0 needs the image itself (each crop is embedded separately); pass the "
            "image, optionally with embeddings= for the whole-image step"
        )
    scaled = None
    if image is not None:
        scaled, _ = (preprocessor or Preprocessor()).normalized(image)
        image_shape = (int(scaled.shape[0]), int(scaled.shape[1]))
        if embeddings is not None and tuple(embeddings.original_size) != image_shape:
            raise ValueError(
                f"embeddings are of an image of shape {tuple(embeddings.original_size)}, but the image "
                f"has shape {image_shape}"
            )
    else:
        assert embeddings is not None
        image_shape = (int(embeddings.original_size[0]), int(embeddings.original_size[1]))

    if scaled is not None and embeddings is None and float(scaled.min()) == float(scaled.max()):
        yield 1, 1  # a constant image has no objects
        return empty_result(image_shape, return_masks)
    sam = _model_for(embeddings, model, device)
    # inference mode is entered step by step inside, never across a yield (it is thread state and
    # would leak into the caller's code between steps)
    masks = yield from generate_masks(sam, scaled, embeddings, image_shape, opts, precision)
    if not len(masks):
        return empty_result(image_shape, return_masks)
    with torch.inference_mode():
        return paint(masks, return_masks, opts.overlap)


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
    progress: ProgressLike = None,
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
        Called as ``progress(done, total)`` after each step (embedding a crop, decoding a batch);
        ``True`` shows a progress bar.

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
    # the keyword options above are exactly AutomaticOptions' fields (a test keeps them in step)
    given = {name: value for name, value in locals().items() if name in OPTION_NAMES}
    opts = resolve_options(preset, **given)
    preprocessor = Preprocessor(normalize, percentiles, contrast_limits, channel, channel_axis)
    steps = iter_automatic(
        image,
        opts,
        preprocessor,
        model=model,
        device=device,
        embeddings=embeddings,
        precision=precision,
        return_masks=return_masks,
    )
    return run_steps(steps, progress=progress, what="automatic segmentation")


def automatic_labels(
    image: Any,
    options: AutomaticOptions,
    preprocessor: Preprocessor,
    *,
    stack: bool = False,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | None = None,
    precision: Precision = "auto",
) -> np.ndarray:
    """Labels of :func:`automatic` for a 2D image, or slice by slice for a ``(Z, Y, X[, C])`` stack.

    In a stack every slice is segmented on its own (objects are not linked across slices) and gets
    labels that continue the previous slices' numbering, so no two slices share a label. The stack is
    read one slice at a time (numpy, zarr and dask arrays stay lazy) and normalised as one volume:
    percentiles are taken over evenly spaced sample slices, as for embeddings with
    ``percentile_scope="volume"`` (every pixel of a stack of up to 16 slices of up to 2**18 pixels).

    Parameters
    ----------
    image
        ``(Y, X[, C])`` image, or with ``stack`` a ``(Z, Y, X[, C])`` stack (or a list of slices).
    options
        The automatic segmentation options (:func:`~napari_sam.engine.automatic.options.resolve_options`
        makes them from a preset and keywords).
    preprocessor
        How intensities are normalised; its ``channel_axis`` is an axis of ``image`` (of the whole
        stack with ``stack``).
    stack
        Segment a stack slice by slice.
    model, device, embeddings, precision
        As :func:`automatic` (``embeddings``: of a 2D image only).

    Returns
    -------
    numpy.ndarray
        ``uint32`` labels with the image's spatial shape.
    """
    run: dict[str, Any] = {"model": model, "device": device, "embeddings": embeddings, "precision": precision}
    if not stack:
        steps = iter_automatic(image, options, preprocessor, **run)
        return run_steps(steps, what="automatic segmentation").labels
    if not hasattr(image, "shape"):  # a list of slices
        image = np.asarray(image)
    layout = stack_layout(tuple(int(n) for n in image.shape), preprocessor.channel_axis)
    per_slice = replace(preprocessor, channel_axis=layout.slice_channel_axis)
    per_slice = volume_preprocessor(image, layout, per_slice)
    out = np.zeros(layout.spatial_shape, dtype=np.uint32)
    offset = 0
    for z in range(layout.n_slices):
        steps = iter_automatic(read_slice(image, layout, z), options, per_slice, **run)
        labels = run_steps(steps, what="automatic segmentation").labels
        out[z] = np.where(labels > 0, labels + np.uint32(offset), 0)
        offset += int(labels.max())
    return out
