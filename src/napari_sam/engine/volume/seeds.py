"""Seeds given as prompts: prompts with z decoded on their own slices, as :func:`napari_sam.segment` does.

Prompts are checked once, by :func:`~napari_sam.engine.decode.prompts.normalize_prompts`, into a
:class:`~napari_sam.engine.types.Prompts` value (or come as one, from :func:`napari_sam.segment`);
everything below takes that value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..decode.objects import empty_objects, object_slices, segment_stack, warn_empty_objects
from ..decode.prompts import normalize_prompts
from ..embed.embeddings import VolumeEmbeddings
from ..loading import load_model
from ..types import Prompts

#: Prompts as given, before they are checked: ``{"points": …, "point_labels": …, "boxes": …}``.
RawPrompts = dict[str, Any]


def prompt_arguments(
    labels_or_prompts: Any, points: Any, point_labels: Any, boxes: Any
) -> Prompts | RawPrompts | None:
    """The prompts when seeds are given as prompts, else None (seeds given as labels, or none).

    A :class:`Prompts` value (already checked) comes back as it is; prompts given as a mapping or as
    ``points=`` / ``point_labels=`` / ``boxes=`` come back unchecked as a :data:`RawPrompts` mapping,
    for :func:`stack_prompts` to check once the stack's shape is known.
    """
    if isinstance(labels_or_prompts, (Prompts, Mapping)):
        if points is not None or point_labels is not None or boxes is not None:
            raise ValueError("give prompts either as a mapping or as points= / boxes=, not both")
        return labels_or_prompts if isinstance(labels_or_prompts, Prompts) else _mapped(labels_or_prompts)
    if points is None and boxes is None:
        if point_labels is not None:
            raise ValueError("point_labels given without points")
        return None
    if labels_or_prompts is not None:
        raise ValueError("give seed labels or prompts (points= / boxes=), not both")
    return {"points": points, "point_labels": point_labels, "boxes": boxes}


def _mapped(prompts: Mapping[str, Any]) -> RawPrompts:
    """The prompts of a ``{"points", "point_labels", "boxes"}`` mapping (points or boxes required)."""
    unknown = set(prompts) - {"points", "point_labels", "boxes"}
    if unknown:
        raise ValueError(
            f"a prompts mapping holds 'points', 'point_labels' and 'boxes'; unknown keys {sorted(unknown)}"
        )
    if prompts.get("points") is None and prompts.get("boxes") is None:
        raise ValueError("the prompts mapping holds neither 'points' nor 'boxes'")
    return {key: prompts.get(key) for key in ("points", "point_labels", "boxes")}


def stack_prompts(given: Prompts | RawPrompts, shape: tuple[int, int, int]) -> Prompts:
    """Prompts on a stack of ``shape`` ``(Z, Y, X)``, checked once.

    Raw prompts go through :func:`normalize_prompts` (its errors: shapes, points off the slices,
    ``z`` outside the stack, boxes spanning slices …). A :class:`Prompts` value is trusted, but must
    hold stack prompts (``(N, 3)`` points, ``(M, 6)`` boxes) on slices of this stack.
    """
    if not isinstance(given, Prompts):
        return normalize_prompts(**given, spatial_shape=shape)
    if given.points.ndim != 2 or given.points.shape[1] != 3 or given.boxes.shape[1] != 6:
        raise ValueError(
            "prompts for propagation must be prompts on a stack: (N, 3) points (z, row, col) and (M, 6) "
            f"boxes, got points of shape {given.points.shape} and boxes of shape {given.boxes.shape}"
        )
    if any(not 0 <= z < shape[0] for z in given.slices):
        raise ValueError(f"prompts on slices {given.slices} do not fit a stack of {shape[0]} slices")
    return given


def seed_labels(
    embeddings: VolumeEmbeddings,
    *,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    model: Any = None,
    clip_to_boxes: bool = True,
    report_empty: bool = True,
) -> np.ndarray:
    """Decode prompts with z on their own slices: the seeds that :func:`napari_sam.propagate` starts from.

    Objects are numbered as :func:`napari_sam.segment` numbers them (boxes first, then free
    foreground points). A box says the object lies inside it: with ``clip_to_boxes`` the pixels
    of a box's mask outside the box are dropped (the decoder sometimes spills onto neighbours).

    Parameters
    ----------
    embeddings
        The stack's :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings` (prompted slices are
        embedded on first use).
    points, point_labels, boxes
        ``(N, 3)`` ``(z, row, col)``, ``(N,)``, ``(M, 6)`` ``(min_z, min_row, min_col, max_z, max_row,
        max_col)`` with ``max_z = min_z + 1``; checked by :func:`normalize_prompts`.
    model
        The model to decode with (default: the embeddings' own).
    clip_to_boxes
        Drop the pixels of a box's mask outside the box.
    report_empty
        Emit one :class:`~napari_sam.errors.EmptyObjectsWarning` naming the objects left without
        pixels (after clipping) and their slices.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` uint32, objects on their prompted slices only; objects without pixels are
        absent (the others are all there).
    """
    shape = (int(embeddings.shape[0]), int(embeddings.shape[1]), int(embeddings.shape[2]))
    prompts = normalize_prompts(points=points, point_labels=point_labels, boxes=boxes, spatial_shape=shape)
    sam = embeddings.model if model is None else load_model(model)
    seeds = decode_seeds(embeddings, prompts, sam, clip_to_boxes=clip_to_boxes)
    if report_empty:
        warn_empty_objects(empty_objects(seeds, object_slices(prompts)))
    return seeds


def decode_seeds(
    embeddings: VolumeEmbeddings, prompts: Prompts, sam: Any, *, clip_to_boxes: bool
) -> np.ndarray:
    """``(Z, Y, X)`` uint32 labels of the objects of ``prompts`` (on a stack) on their own slices.

    As :func:`seed_labels`, without the check of the prompts and without the warning.
    """
    seeds = segment_stack(embeddings, prompts, sam, multimask="auto", batch_size=32, report_empty=False)
    if clip_to_boxes:
        for label, box in enumerate(prompts.boxes, start=1):
            _clip_to_box(seeds[int(box[0])], label, box[[1, 2, 4, 5]])
    return seeds


def _clip_to_box(plane: np.ndarray, label: int, box: np.ndarray) -> None:
    """Drop the pixels of ``label`` in ``plane`` ``(Y, X)`` outside the half-open ``(min_row, min_col,
    max_row, max_col)`` ``box`` (fractional edges: a pixel the box touches is inside)."""
    r0, c0 = (max(0, int(np.floor(v))) for v in box[:2])
    r1, c1 = (int(np.ceil(v)) for v in box[2:])
    inside = np.zeros(plane.shape, dtype=bool)
    inside[r0:r1, c0:c1] = True
    plane[(plane == label) & ~inside] = 0


def seeds_from_prompts(
    emb: VolumeEmbeddings, sam: Any, prompts: Prompts
) -> tuple[np.ndarray, dict[int, list[int]], dict[int, int]]:
    """Seed labels from checked prompts on the stack, ``{label: [its slice]}`` of the objects that got
    pixels, and ``{label: its slice}`` of those that got none (left out; the others go on)."""
    seeds = decode_seeds(emb, prompts, sam, clip_to_boxes=True)
    expected = object_slices(prompts)
    empty = {lab: int(z) for lab, z in empty_objects(seeds, expected).items() if z is not None}
    found = {lab: [z] for lab, z in expected.items() if lab not in empty}
    return seeds, found, empty
