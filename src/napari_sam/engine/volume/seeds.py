"""Seeds given as prompts: prompts with z decoded on their own slices, as :func:`napari_sam.segment` does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..decode.objects import empty_objects, segment_stack, warn_empty_objects
from ..decode.prompts import normalize_prompts
from ..embed.embeddings import VolumeEmbeddings, image_layout
from ..loading import load_model


def prompt_arguments(labels_or_prompts: Any, points: Any, point_labels: Any, boxes: Any) -> tuple | None:
    """``(points, point_labels, boxes)`` when seeds are given as prompts, else None."""
    if isinstance(labels_or_prompts, Mapping):
        if points is not None or point_labels is not None or boxes is not None:
            raise ValueError("give prompts either as a mapping or as points= / boxes=, not both")
        unknown = set(labels_or_prompts) - {"points", "point_labels", "boxes"}
        if unknown:
            raise ValueError(
                "a prompts mapping holds 'points', 'point_labels' and 'boxes'; unknown keys "
                f"{sorted(unknown)}"
            )
        points = labels_or_prompts.get("points")
        point_labels = labels_or_prompts.get("point_labels")
        boxes = labels_or_prompts.get("boxes")
        if points is None and boxes is None:
            raise ValueError("the prompts mapping holds neither 'points' nor 'boxes'")
        return points, point_labels, boxes
    if points is None and boxes is None:
        if point_labels is not None:
            raise ValueError("point_labels given without points")
        return None
    if labels_or_prompts is not None:
        raise ValueError("give seed labels or prompts (points= / boxes=), not both")
    return points, point_labels, boxes


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
        max_col)`` with ``max_z = min_z + 1``.
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
    placeholder = np.broadcast_to(np.zeros((), dtype=np.uint8), embeddings.shape)
    seeds = segment_stack(
        placeholder,
        image_layout(placeholder, None),
        normalize_prompts(
            points=points, point_labels=point_labels, boxes=boxes, spatial_shape=embeddings.shape
        ),
        embeddings.model if model is None else load_model(model),
        embeddings,
        multimask="auto",
        batch_size=32,
        embed_options={},
        report_empty=False,
    )
    if clip_to_boxes and boxes is not None:
        for label, box in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 6), start=1):
            z = round(float(box[0]))
            r0, c0 = (max(0, int(np.floor(v))) for v in box[1:3])
            r1, c1 = (int(np.ceil(v)) for v in box[4:6])
            plane = seeds[z]
            inside = np.zeros(plane.shape, dtype=bool)
            inside[r0:r1, c0:c1] = True
            plane[(plane == label) & ~inside] = 0
    if report_empty:
        warn_empty_objects(empty_objects(seeds, prompt_slices(points, point_labels, boxes)))
    return seeds


def seeds_from_prompts(
    emb: VolumeEmbeddings, sam: Any, points: Any, point_labels: Any, boxes: Any
) -> tuple[np.ndarray, dict[int, list[int]], dict[int, int]]:
    """Seed labels from prompts, ``{label: [its slice]}`` of the objects that got pixels, and
    ``{label: its slice}`` of those that got none (left out; the others go on)."""
    seeds = seed_labels(
        emb, points=points, point_labels=point_labels, boxes=boxes, model=sam, report_empty=False
    )
    expected = prompt_slices(points, point_labels, boxes)
    empty = {lab: int(z) for lab, z in empty_objects(seeds, expected).items() if z is not None}
    found = {lab: [z] for lab, z in expected.items() if lab not in empty}
    return seeds, found, empty


def prompt_slices(points: Any, point_labels: Any, boxes: Any) -> dict[int, int]:
    """``{label: slice}`` of the objects :func:`napari_sam.segment` makes from (already checked) prompts."""
    bxs = np.zeros((0, 6)) if boxes is None else np.asarray(boxes, dtype=float).reshape(-1, 6)
    pts = np.zeros((0, 3)) if points is None else np.asarray(points, dtype=float).reshape(-1, 3)
    labs = np.ones(len(pts), dtype=int) if point_labels is None else np.asarray(point_labels).reshape(-1)
    out = {i + 1: round(float(b[0])) for i, b in enumerate(bxs)}
    for p, lab in zip(pts, labs, strict=True):
        on = np.round(bxs[:, 0]) == round(p[0])
        inside = (
            (bxs[on, 1] <= p[1]) & (p[1] < bxs[on, 4]) & (bxs[on, 2] <= p[2]) & (p[2] < bxs[on, 5])
        ).any()
        if lab == 1 and not inside:
            out[len(out) + 1] = round(float(p[0]))
    return out
