"""Propagating the objects of the current slice through a stack, for the annotator.

:func:`propagation_steps` is a generator (yields ``(done, total)``, returns a
:class:`~napari_sam.engine.propagate.PropagationResult`) for napari's ``thread_worker``;
:func:`write_propagated` then writes the new pixels into the labels layer as one undo step, never
over pixels that already hold a label.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from .embeddings import EmbeddingSettings, cache_for, preprocessing_of, stored
from .errors import AnnotatorError
from .prompts import image_spatial_shape


def stack_embeddings(image_layer: Any, settings: EmbeddingSettings) -> Any:
    """The lazily computing :class:`~napari_sam.engine.embeddings.VolumeEmbeddings` of a stack layer.

    Reuses the annotator's record when it has one (same settings); call on the UI thread (reads the
    layer's contrast limits). Nothing is embedded here.
    """
    from ..engine.embeddings import compute_embeddings
    from .embeddings import _REGISTRY, LayerEmbeddings

    shape = image_spatial_shape(image_layer)
    if len(shape) != 3:
        raise AnnotatorError(f"propagation needs a 3D image; '{image_layer.name}' has shape {shape}")
    record = stored(image_layer, settings)
    if record is None:
        record = LayerEmbeddings(settings=settings, shape=shape)
        _REGISTRY[image_layer] = record
    if record.volume is None:
        data = image_layer.data[0] if image_layer.multiscale else image_layer.data
        options = dict(preprocessing_of(image_layer))
        options.update(device=settings.device, precision=settings.precision, cache=cache_for(shape, settings))
        record.volume = compute_embeddings(data, settings.model, slices=[], **options)
    return record.volume


def propagation_steps(
    volume: Any,
    labels: np.ndarray,
    plane: int,
    *,
    objects: list[int] | None = None,
    z_range: tuple[int, int] | None = None,
    iou_threshold: float = 0.5,
    min_intensity: float = 0.5,
    image: Any = None,
) -> Generator[tuple[int, int], None, Any]:
    """Propagate the objects drawn on slice ``plane`` of ``labels`` (all of them, or ``objects``).

    Parameters
    ----------
    volume
        From :func:`stack_embeddings`.
    labels
        ``(Z, Y, X)`` integer labels (a copy of the layer's data); labels on other slices are kept.
    plane
        The seed slice.
    objects
        Labels to propagate (default: every label on ``plane``).
    z_range
        ``(start, stop)`` half-open slices; default the whole stack.
    iou_threshold
        Stop an object when its predicted IoU falls below this.
    min_intensity
        Trim the dim halo from propagated masks (see :func:`napari_sam.propagate`); 0: off.
    image
        The image layer's data (level 0): lets objects stop where their contrast fades.

    Returns
    -------
    PropagationResult
        Through ``StopIteration.value`` (the worker's ``returned`` signal).
    """
    from ..engine.propagate import iter_propagate

    labels = np.asarray(labels)
    if objects is None:
        found = np.unique(labels[plane])
        objects = [int(v) for v in found if v]
        if not objects:
            raise AnnotatorError(f"slice {plane} holds no objects to propagate: commit some first")
    return (
        yield from iter_propagate(
            volume,
            labels,
            seed_slices=[plane],
            objects=objects,
            z_range=z_range,
            iou_threshold=iou_threshold,
            min_intensity=min_intensity,
            image=image,
        )
    )


def write_propagated(layer: Any, before: np.ndarray, after: np.ndarray) -> int:
    """Write the pixels where ``after`` labels what was background in ``before``; one undo step.

    Returns
    -------
    int
        Pixels written.
    """
    current = np.asarray(layer.data)
    if current.shape != after.shape:
        raise AnnotatorError(f"labels layer '{layer.name}' changed shape during propagation")
    new = (after != before) & (current == 0) & (before == 0)
    if not new.any():
        return 0
    index = np.nonzero(new)
    layer.data_setitem(index, after[index].astype(current.dtype))
    return int(new.sum())
