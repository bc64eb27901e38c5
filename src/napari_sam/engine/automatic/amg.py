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
step 5 and the result are :mod:`.result`. This module holds :func:`iter_automatic` (one 2D image as a
step generator, an options object); the public entry points, which choose between AMG and the instance
decoder's modes, are in :mod:`.front`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import torch

from ..device import DeviceLike
from ..embed.encoder import Precision
from ..loading import ModelLike
from ..object_scale import central_window, effective_object_size, estimate_object_size
from ..preprocess import Preprocessor
from ..types import AutomaticOptions, Embeddings
from .generate import generate_masks
from .inputs import image_or_embeddings, model_for
from .result import AutomaticResult, empty_result, paint

__all__ = ["iter_automatic"]


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
    image, given = image_or_embeddings(image, embeddings, tiled=False)
    embeddings = given if isinstance(given, Embeddings) else None  # tiled=False: never TiledEmbeddings
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
    sam = model_for(embeddings, model, device)
    # inference mode is entered step by step inside, never across a yield (it is thread state and
    # would leak into the caller's code between steps)
    size = (preprocessor or Preprocessor()).object_size
    if scaled is not None and effective_object_size(size, sam) == "auto":
        # once for the image, as compute_embeddings measures it: every crop at one scale
        size = estimate_object_size(scaled[central_window(scaled.shape)]) or "fixed"
    masks = yield from generate_masks(sam, scaled, embeddings, image_shape, opts, precision, size)
    if not len(masks):
        return empty_result(image_shape, return_masks)
    with torch.inference_mode():
        return paint(masks, return_masks, opts.overlap)
