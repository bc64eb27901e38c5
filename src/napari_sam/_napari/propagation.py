"""Propagating the objects of the current slice through a stack, for the annotator.

:func:`propagation_steps` is a generator (yields ``(done, total)``, returns a
:class:`~napari_sam.engine.volume.propagate.PropagationResult`) for napari's ``thread_worker``;
:func:`write_propagated` then writes the new pixels into the labels layer as one undo step, never
over pixels that already hold a label.

With a SAM 2 model, :func:`memory_steps` follows the objects with SAM 2's memory instead
(:mod:`napari_sam.engine.volume.memory_propagation`): the labels of the seed slice keep their ids, the
annotator's uncommitted prompts on it become new objects with free ids.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import numpy as np

from ..errors import AnnotatorError
from .embeddings import EmbeddingSettings, embedding_options, preprocessing_of, stored
from .prompts import image_spatial_shape


def stack_embeddings(image_layer: Any, settings: EmbeddingSettings) -> Any:
    """The lazily computing :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings` of a stack layer.

    Reuses the annotator's record when it has one (same settings); call on the UI thread (reads the
    layer's contrast limits). Nothing is embedded here.
    """
    from ..engine.embed.embeddings import compute_embeddings
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
        options.update(embedding_options(shape, settings))
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
    from ..engine.volume.propagate import PropagationOptions, iter_propagate

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
            options=PropagationOptions(iou_threshold=iou_threshold, min_intensity=min_intensity),
            image=image,
        )
    )


def memory_model(choice: Any, device: str = "auto") -> Any:
    """The SAM 2 model of the Propagate panel's choice (a name, a weights file, or a loaded model).

    Raises
    ------
    AnnotatorError
        The choice is a SAM 1 model, or cannot be loaded (the message says why).
    """
    from ..engine.loading import load_any_model
    from ..model.sam2.sam2 import Sam2

    try:
        sam = load_any_model(choice, device)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise AnnotatorError(f"cannot load the SAM 2 model {_shown(choice)}: {exc}") from exc
    if not isinstance(sam, Sam2):
        raise AnnotatorError(
            f"{_shown(choice)} is a SAM 1 model: memory propagation needs a SAM 2 model "
            "(sam2.1_hiera_tiny … or its weights file); choose 'SAM 1' to propagate with the "
            "annotator's model"
        )
    return sam


def _shown(choice: Any) -> str:
    return repr(choice) if isinstance(choice, str) else type(choice).__name__


def memory_steps(
    image_layer: Any,
    model: Any,
    labels: np.ndarray,
    plane: int,
    *,
    prompts: Any = None,
    z_range: tuple[int, int] | None = None,
    stop_after_absent: int | None = None,
    corrections: Sequence[Any] = (),
) -> Generator[tuple[int, int], None, Any]:
    """Follow the objects of slice ``plane`` through the stack with a SAM 2 model's memory.

    Call on the UI thread (reads the layer's contrast limits); the frames are encoded while the
    generator runs. Every label on ``plane`` of ``labels`` is an object prompted with its mask (it
    keeps its id); ``prompts`` (the annotator's :class:`~napari_sam._napari.prompts.SlicePrompts` on
    ``plane``, not yet committed) add objects numbered from ``labels.max() + 1``.

    Parameters
    ----------
    image_layer
        The stack's image layer.
    model
        A loaded SAM 2 model (:func:`memory_model`).
    labels
        ``(Z, Y, X)`` integer labels (a copy of the target layer's data).
    plane
        The seed slice.
    prompts
        Prompts on ``plane`` (None or empty: only the labels).
    z_range
        ``(start, stop)`` half-open slices; default the whole stack.
    stop_after_absent
        Leave an object out after this many frames without it (per direction); None: never.
    corrections
        :class:`~napari_sam.engine.volume.memory_corrections.Correction` clicks that fix objects'
        tracked masks on other slices (:func:`~napari_sam.engine.volume.memory_propagation.propagate_memory`).

    Returns
    -------
    MemoryPropagationResult
        Through ``StopIteration.value``; its ``labels`` hold the final ids, and the seed slice keeps
        the seed labels as they were.
    """
    import dataclasses

    from ..engine.decode.prompts import normalize_prompts
    from ..engine.embed.sam2_frames import open_frames
    from ..engine.preprocess import Preprocessor
    from ..engine.volume.memory_corrections import correction_prompts
    from ..engine.volume.memory_propagation import (
        iter_propagate_memory,
        object_prompts,
        seed_label_prompts,
    )

    labels = np.asarray(labels)
    shape = image_spatial_shape(image_layer)
    if len(shape) != 3:
        raise AnnotatorError(f"propagation needs a 3D image; '{image_layer.name}' has shape {shape}")
    if labels.shape != shape:
        raise AnnotatorError(f"the labels {labels.shape} do not match the image's slices {shape}")
    if labels.min(initial=0) < 0:
        raise AnnotatorError("the labels hold negative values: SAM 2 seeds need labels >= 0")
    data = image_layer.data[0] if image_layer.multiscale else image_layer.data
    pre = Preprocessor(contrast_limits=preprocessing_of(image_layer).get("contrast_limits"))
    frames = open_frames(data, model, preprocessor=pre)
    tracker_prompts, _ = seed_label_prompts(labels, [plane])
    seeded = {p.obj_id for p in tracker_prompts}
    if prompts is not None and not prompts.empty:
        z = float(plane)
        points = np.column_stack([np.full(len(prompts.points), z), prompts.points])
        boxes = np.column_stack(
            [
                np.full(len(prompts.boxes), z),
                prompts.boxes[:, :2],
                np.full(len(prompts.boxes), z + 1),
                prompts.boxes[:, 2:],
            ]
        )
        checked = normalize_prompts(
            points=points if len(points) else None,
            point_labels=prompts.point_labels if len(points) else None,
            boxes=boxes if len(boxes) else None,
            spatial_shape=shape,
        )
        offset = int(labels.max(initial=0))
        new = object_prompts(checked, frames.frame_shape, model.image_size)
        tracker_prompts += [dataclasses.replace(p, obj_id=p.obj_id + offset) for p in new]
    if not tracker_prompts:
        raise AnnotatorError(
            f"slice {plane} holds no objects to propagate: commit some or place prompts on it first"
        )
    try:
        fixes = correction_prompts(
            corrections,
            labels=(p.obj_id for p in tracker_prompts),
            frame_shape=frames.frame_shape,
            image_size=model.image_size,
            window=z_range or (0, shape[0]),
        )
    except (TypeError, ValueError) as exc:
        raise AnnotatorError(str(exc)) from exc
    result = yield from iter_propagate_memory(
        frames, tracker_prompts, z_range=z_range, stop_after_absent=stop_after_absent, corrections=fixes
    )
    out = result.labels
    seed_plane = out[plane]
    keep = np.isin(seed_plane, list(seeded)) & (seed_plane != labels[plane])
    seed_plane[keep] = 0  # the seed labels stay as drawn on their own slice
    return result


def write_propagated(layer: Any, before: np.ndarray, after: np.ndarray) -> int:
    """Write the pixels where ``after`` labels what was background in ``before``; one undo step.

    Label values are written as they are: a value the layer's dtype cannot hold (the layer changed
    to a narrower dtype meanwhile) is refused, never wrapped onto another object's label.

    Returns
    -------
    int
        Pixels written.
    """
    current = np.asarray(layer.data)
    if current.shape != after.shape:
        raise AnnotatorError(f"labels layer '{layer.name}' changed shape during propagation")
    return _write(layer, (after != before) & (current == 0) & (before == 0), after, current.dtype)


def rewrite_propagated(
    layer: Any, labelled_before: np.ndarray, wrote: np.ndarray, written: np.ndarray, after: np.ndarray
) -> int:
    """Replace what earlier propagations wrote with ``after`` (a corrected run); one undo step.

    ``labelled_before`` (bool) is where the layer held labels before the first of them, ``wrote``
    (bool) where they wrote, ``written`` the values they left there (``layer.data[wrote]`` right after
    the last one). Pixels they wrote that still hold those values take ``after``'s value (0 where the
    corrected run left them out); background pixels that were background before take ``after``'s too.
    Pixels painted since, and every pixel no run wrote that holds a label (drawn before or during a
    run), are never touched.

    Returns
    -------
    int
        Pixels changed.
    """
    current = np.asarray(layer.data)
    if not current.shape == labelled_before.shape == wrote.shape == after.shape:
        raise AnnotatorError(f"labels layer '{layer.name}' changed shape since the propagation")
    own = np.zeros(current.shape, dtype=bool)
    own[wrote] = current[wrote] == written
    free = (current == 0) & ~labelled_before
    return _write(layer, (own | free) & (after != current), after, current.dtype)


def _write(layer: Any, where: np.ndarray, after: np.ndarray, dtype: np.dtype) -> int:
    """Set the pixels ``where`` of ``layer`` to ``after``'s values in one undo step; their count."""
    if not where.any():
        return 0
    index = np.nonzero(where)
    values = after[index]
    _check_fits(values, dtype, layer.name)
    layer.data_setitem(index, values.astype(dtype))
    return int(where.sum())


def _check_fits(values: np.ndarray, dtype: np.dtype, name: str) -> None:
    """AnnotatorError when some of the label ``values`` lie outside what ``dtype`` holds."""
    if not np.issubdtype(dtype, np.integer):
        return  # napari labels are integers; anything else is napari's to refuse
    info = np.iinfo(dtype)
    lo, hi = int(values.min()), int(values.max())
    if lo < info.min or hi > info.max:
        raise AnnotatorError(
            f"labels layer '{name}' is {dtype} and cannot hold label {hi if hi > info.max else lo}: "
            "nothing written (convert the layer to a wider dtype, e.g. uint64, and propagate again)"
        )


def propagation_message(result: Any, written: int, target: str) -> str:
    """What the Propagate panel says when a propagation is done.

    Parameters
    ----------
    result
        The :class:`~napari_sam.engine.volume.propagate.PropagationResult`.
    written
        Pixels written into the labels layer (from :func:`write_propagated`).
    target
        The labels layer's name.

    Returns
    -------
    str
        ``"propagated N objects: P pixels added to 'name'"``, then the prompted objects that got no
        pixels and their slices (``result.empty_objects``), when there are any.
    """
    n = len(result.seeds)
    text = f"propagated {n} object{'s' if n != 1 else ''}: {written} pixels added to '{target}'"
    empty = getattr(result, "empty_objects", None) or {}
    if empty:
        named = ", ".join(f"{label} (slice {z})" for label, z in sorted(empty.items()))
        text += f"; no mask for object{'s' if len(empty) != 1 else ''} {named}: left empty"
    return text
