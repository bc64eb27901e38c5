"""Decoder-based automatic segmentation of one 2D image (AIS, APG) as a step generator.

Three steps: embed the image (unless embeddings are given; large images in tiles), predict the instance
decoder's three maps (:func:`.maps.predict_maps`), turn them into labels — by a seeded watershed
(:func:`.ais.ais_labels`, ``"ais"``) or by prompting the mask decoder with the watershed's seeds
(:func:`.apg.apg_segment`, ``"apg"``). The result is an :class:`~.result.AutomaticResult` like AMG's.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ..embed.embeddings import compute_embeddings
from ..embed.encoder import Precision
from ..preprocess import Preprocessor
from ..types import Embeddings, InstanceOptions, TiledEmbeddings, check_choice
from .ais import ais_labels
from .apg import apg_segment
from .inputs import image_or_embeddings, model_for
from .maps import predict_maps
from .result import AutomaticResult, empty_result, label_boxes

__all__ = ["iter_instance", "labels_result"]

#: The steps of one image: embedding, maps, labels.
_STEPS = 3


def iter_instance(
    image: Any,
    mode: str,
    options: InstanceOptions,
    preprocessor: Preprocessor | None = None,
    *,
    model: Any = "nano",
    device: Any = "auto",
    embeddings: Embeddings | TiledEmbeddings | None = None,
    precision: Precision = "auto",
    return_masks: bool = False,
) -> Generator[tuple[int, int], None, AutomaticResult]:
    """AIS or APG of one 2D image; yields ``(done, total)`` steps, returns the result.

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)`` array, :class:`Embeddings` or :class:`TiledEmbeddings`.
    mode
        ``"ais"`` or ``"apg"``.
    options
        Thresholds, smoothing, sizes and APG's suppression.
    preprocessor
        How ``image`` is normalised (default :class:`Preprocessor()`).
    model, device, embeddings, precision, return_masks
        As :func:`napari_sam.automatic`.

    Raises
    ------
    ValueError
        The model has no instance decoder, or the embeddings were made by another model.
    """
    check_choice(mode, "mode", ("ais", "apg"))
    image, embeddings = image_or_embeddings(image, embeddings)
    yield 0, _STEPS
    if embeddings is None:
        preprocessor = preprocessor or Preprocessor()
        scaled, _ = preprocessor.normalized(image)
        if float(scaled.min()) == float(scaled.max()):  # a constant image has no objects
            yield _STEPS, _STEPS
            return empty_result((int(scaled.shape[0]), int(scaled.shape[1])), return_masks)
        sam = model_for(None, model, device, needs_decoder=mode)
        made = compute_embeddings(
            scaled, sam, normalize=None, precision=precision, object_size=preprocessor.object_size
        )
        if not isinstance(made, (Embeddings, TiledEmbeddings)):  # one 2D image gives one of these
            raise TypeError(f"a 2D image gave {type(made).__name__}")
        emb: Embeddings | TiledEmbeddings = made
    else:
        if image is not None:  # given beside the image: they must be its embeddings
            plane, _ = (preprocessor or Preprocessor()).channels(image)
            shape = (int(plane.shape[0]), int(plane.shape[1]))
            if tuple(embeddings.original_size) != shape:
                raise ValueError(
                    f"embeddings are of an image of shape {tuple(embeddings.original_size)}, but the image "
                    f"has shape {shape}"
                )
        sam = model_for(embeddings, model, device, needs_decoder=mode)
        emb = embeddings
    yield 1, _STEPS
    maps = predict_maps(sam, emb)
    yield 2, _STEPS
    if mode == "ais":
        labels = ais_labels(maps, options)
        scores = _mean_per_label(maps[0], labels)
    else:
        labels, scores = apg_segment(sam, emb, maps, options)
    yield _STEPS, _STEPS
    return labels_result(labels, scores, return_masks=return_masks)


def _mean_per_label(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(N,)`` float32: the mean of ``values`` over each label ``1..N`` of ``labels``."""
    n = int(labels.max()) if labels.size else 0
    sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=n + 1)[1:]
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    return (sums / np.maximum(counts, 1)).astype(np.float32)


def labels_result(labels: np.ndarray, scores: np.ndarray, *, return_masks: bool = False) -> AutomaticResult:
    """An :class:`AutomaticResult` for non-overlapping ``labels`` ``(H, W)`` numbered ``1..N``.

    ``scores`` ``(N,)`` is each label's score (APG: predicted IoU; AIS: mean foreground probability).
    ``stability_score`` and the prompt point are NaN (no single prompt made these objects); every
    object is visible, so ``mask_properties`` equals ``properties``.
    """
    labels = np.asarray(labels, dtype=np.uint32)
    n = int(labels.max()) if labels.size else 0
    if n == 0:
        return empty_result((int(labels.shape[0]), int(labels.shape[1])), return_masks)
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    present = np.flatnonzero(areas) + 1
    boxes = label_boxes(labels)
    nan = np.full(n, np.nan, dtype=np.float32)
    table = {
        "label": np.arange(1, n + 1, dtype=np.uint32),
        "score": np.asarray(scores, dtype=np.float32).reshape(n),
        "stability_score": nan,
        "area": areas.astype(np.int64),
        **{f"bbox-{i}": boxes[:, i] for i in range(4)},
        "point-0": nan.copy(),
        "point-1": nan.copy(),
    }
    if len(present) != n:  # numbering with gaps: keep the objects that exist
        table = {key: column[present - 1] for key, column in table.items()}
    masks = None
    if return_masks:
        masks = labels[None] == table["label"][:, None, None]
    return AutomaticResult(labels=labels, properties=table, mask_properties=dict(table), masks=masks)
