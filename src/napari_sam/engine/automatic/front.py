"""The entry points of automatic segmentation: :func:`automatic` (one 2D image, keyword options),
:func:`iter_plan` (the same as a step generator, a checked :class:`~.plan.AutomaticPlan`) and
:func:`automatic_labels` (an image or a stack, slice by slice).

The mode — the instance decoder's AIS or APG, or the prompt grid (AMG) — is chosen by the plan
(:mod:`.plan`); AMG runs in :mod:`.amg`, the decoder modes in :mod:`.instance`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..device import DeviceLike
from ..embed.encoder import Precision
from ..embed.layout import read_slice
from ..loading import ModelLike, load_model
from ..object_scale import central_window, effective_object_size, estimate_object_size
from ..preprocess import Preprocessor
from ..steps import ProgressLike, run_steps
from ..types import (
    DEFAULT_PERCENTILES,
    INSTANCE_OPTION_NAMES,
    Embeddings,
    NormalizeMode,
    TiledEmbeddings,
)
from .amg import iter_automatic
from .inputs import image_or_embeddings
from .instance import iter_instance
from .options import OPTION_NAMES, PRESETS
from .plan import AutomaticPlan
from .result import AutomaticResult, empty_result
from .stack import stack_layout, volume_preprocessor

__all__ = ["PRESETS", "AutomaticPlan", "AutomaticResult", "automatic", "automatic_labels", "iter_plan"]


def iter_plan(
    image: Any,
    plan: AutomaticPlan,
    preprocessor: Preprocessor | None = None,
    *,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | TiledEmbeddings | None = None,
    precision: Precision = "auto",
    return_masks: bool = False,
) -> Generator[tuple[int, int], None, AutomaticResult]:
    """Automatic segmentation of one 2D image as ``plan`` says; yields ``(done, total)``, returns the result.

    The model is loaded first (it settles ``mode="auto"``), then the chosen mode runs (and checks that the
    model made any embeddings given):
    :func:`~.amg.iter_automatic` or :func:`~.instance.iter_instance`.
    """
    image, embeddings = image_or_embeddings(image, embeddings)
    if embeddings is None and _constant(image):  # no objects; no model needed to know it
        yield 1, 1
        plane, _ = (preprocessor or Preprocessor()).channels(image)
        return empty_result((int(plane.shape[0]), int(plane.shape[1])), return_masks)
    # the model that settles "auto"; the mode's own run checks that it made the embeddings (once)
    own = embeddings.model if embeddings is not None else None
    sam = own if own is not None else load_model(model, device)
    mode = plan.mode_for(sam)
    source = image if image is not None else embeddings
    extra = embeddings if image is not None else None  # embeddings given beside the image
    if mode == "amg":
        if isinstance(embeddings, TiledEmbeddings):
            raise ValueError(
                "mode='amg' needs the whole image's embeddings, not tiled ones: pass the image, or use "
                "mode='ais' / 'apg' with a model that has an instance decoder"
            )
        steps = iter_automatic(
            source,
            plan.amg,
            preprocessor,
            model=sam,
            device=device,
            embeddings=extra if isinstance(extra, Embeddings) else None,
            precision=precision,
            return_masks=return_masks,
        )
    else:
        steps = iter_instance(
            source,
            mode,
            plan.instance,
            preprocessor,
            model=sam,
            device=device,
            embeddings=extra,
            precision=precision,
            return_masks=return_masks,
        )
    return (yield from steps)


def _constant(image: Any) -> bool:
    """Whether ``image`` is a plain 2D image (real numbers, finite) whose values are all the same.

    Anything else is left to the mode's own checks, which name what is wrong.
    """
    values = np.asarray(image)
    kind = values.dtype.kind
    if kind not in "uif" or values.ndim not in (2, 3) or not values.size:
        return False
    low, high = float(values.min()), float(values.max())
    return bool(np.isfinite(low)) and low == high


def automatic(
    image: Any,
    *,
    mode: str = "auto",
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
    foreground_threshold: float | None = None,
    center_distance_threshold: float | None = None,
    boundary_distance_threshold: float | None = None,
    foreground_smoothing: float | None = None,
    distance_smoothing: float | None = None,
    min_size: int | None = None,
    nms_threshold: float | None = None,
    intersection_over_min: bool | None = None,
    multimask: bool | None = None,
    batch_size: int | None = None,
    preset: str | None = "auto",
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | TiledEmbeddings | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    precision: Precision = "auto",
    object_size: float | str | None = None,
    return_masks: bool = False,
    progress: ProgressLike = None,
) -> AutomaticResult:
    """Segment every object of a 2D image without prompts.

    Three methods (``mode``): with a model that carries an instance decoder (micro-sam's AIS / APG),
    **AIS** — the decoder's foreground / centre-distance / boundary-distance maps and a seeded watershed
    (fast) — or **APG** — the watershed's seeds as point prompts for the mask decoder, then suppression
    of overlaps; with any model, **AMG** — a grid of point prompts (the official automatic mask generator;
    slow). ``mode="auto"`` runs AIS when the model has a decoder and AMG otherwise; options of one family
    only (prompt-grid or decoder options) choose that family. An option the chosen mode would not use is
    refused. Every option left at None takes the ``preset``'s value if it has one, else its default (in
    brackets below: the official generator's for AMG, micro-sam's for AIS / APG).

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)`` array of any integer or float dtype, :class:`Embeddings` (AMG:
        then ``crop_n_layers`` must be 0) or, for AIS / APG, :class:`TiledEmbeddings`.
    mode
        ``"auto"``, ``"ais"``, ``"apg"`` or ``"amg"`` (see above).
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
    foreground_threshold, center_distance_threshold, boundary_distance_threshold
        [0.5 each] AIS / APG: foreground is where the foreground map is above its threshold; seeds are
        the foreground pixels whose centre and boundary distances are both below theirs.
    foreground_smoothing, distance_smoothing
        [1.0, 1.6] AIS: Gaussian sigmas (pixels) for the foreground and the distance maps.
    min_size
        [AIS 0, APG 25] Objects with fewer pixels are removed.
    nms_threshold
        [0.9] APG: a mask overlapping a better one by more than this (IoU) is dropped.
    intersection_over_min
        [False] APG: measure that overlap over the smaller mask instead.
    multimask
        [False] APG: decode three masks per seed, keep the best by predicted IoU.
    batch_size
        [32] APG: seeds decoded together (memory vs speed; same result).
    preset
        AMG thresholds: ``"auto"`` (default: ``"nuclei"`` for the shipped nano model, the official
        values for other models), None (the official values), or ``"nuclei"``: pred_iou_thresh 0.5,
        stability_score_thresh 0.5, box_nms_thresh 1.0 (off), mask_nms_thresh 0.5, min_area 50,
        max_area_fraction 0.02, overlap ``"score"`` — chosen for the nano model on fluorescence nuclei
        (see the benchmarks page). A preset other than ``"auto"`` / None chooses AMG.
    model, device
        The model (name, weights path or loaded model) and where to run it.
    embeddings
        Precomputed embeddings of ``image`` for the whole-image step.
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing, see :func:`napari_sam.engine.preprocess.prepare_image`; crops are cut from the
        image normalised once as a whole.
    precision
        Encoder arithmetic (see :func:`napari_sam.compute_embeddings`); the decoder runs in float32.
    object_size
        The objects' diameter in pixels, ``"auto"`` or ``"fixed"``: how the image is scaled onto the
        canvas (AIS / APG: and tiled), as ``compute_embeddings(object_size=)``; None: the model's choice
        (nano estimates). AMG embeds each crop whole, at that scale where it fits the canvas.
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
        Invalid options (e.g. ``points_per_side=0``, a threshold outside [0, 1]) or input; an unknown
        ``mode``; an option the mode does not use; ``mode="ais"`` / ``"apg"`` with a model that has no
        instance decoder.

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
    # the keyword options above are exactly AutomaticOptions' and InstanceOptions' fields (a test keeps
    # them in step)
    given = locals()
    kinds = (Embeddings, TiledEmbeddings)
    made_by = image if isinstance(image, kinds) else embeddings if isinstance(embeddings, kinds) else None
    plan = AutomaticPlan.make(
        mode,
        preset,
        model=made_by.model_name if made_by is not None else model,  # whose preset "auto" means
        amg_options={name: given[name] for name in OPTION_NAMES},
        instance_options={name: given[name] for name in INSTANCE_OPTION_NAMES},
    )
    preprocessor = Preprocessor(
        normalize, percentiles, contrast_limits, channel, channel_axis, object_size=object_size
    )
    steps = iter_plan(
        image,
        plan,
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
    plan: AutomaticPlan,
    preprocessor: Preprocessor,
    *,
    stack: bool = False,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: Embeddings | TiledEmbeddings | None = None,
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
    plan
        The mode and its options (:meth:`AutomaticPlan.make`).
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
        steps = iter_plan(image, plan, preprocessor, **run)
        return run_steps(steps, what="automatic segmentation").labels
    if not hasattr(image, "shape"):  # a list of slices
        image = np.asarray(image)
    layout = stack_layout(tuple(int(n) for n in image.shape), preprocessor.channel_axis)
    per_slice = replace(preprocessor, channel_axis=layout.slice_channel_axis)
    per_slice = volume_preprocessor(image, layout, per_slice)
    size = per_slice.object_size
    if size is None:  # the model's choice (the model is cached: the run below gets the same one)
        size = effective_object_size(size, load_model(model, device))
    if size == "auto":
        # one size for the whole stack, from its middle slice as compute_embeddings measures a stack's
        middle, _ = per_slice.normalized(read_slice(image, layout, layout.n_slices // 2))
        size = estimate_object_size(middle[central_window(middle.shape)])
        per_slice = replace(per_slice, object_size=size or "fixed")
    out = np.zeros(layout.spatial_shape, dtype=np.uint32)
    offset = 0
    for z in range(layout.n_slices):
        steps = iter_plan(read_slice(image, layout, z), plan, per_slice, **run)
        labels = run_steps(steps, what="automatic segmentation").labels
        out[z] = np.where(labels > 0, labels + np.uint32(offset), 0)
        offset += int(labels.max())
    return out
