"""Prompts → labels on one slice or a stack: the decoding behind :func:`napari_sam.segment`.

Prompts are grouped into objects (:func:`plan_objects`), objects with the same prompt layout are
decoded together, and masks are painted into a labels array where their predicted IoU beats what is
already there. :mod:`napari_sam.engine.volume.propagate` seeds its objects through :func:`segment_stack`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import DuplicateBoxesWarning, EmptyObjectsWarning
from ..embed.embeddings import VolumeEmbeddings
from ..intensity import has_no_contrast
from ..types import Embeddings, Prompts, TiledEmbeddings
from .plain import DecodeOptions, predict_plain
from .prompts import object_prompts
from .tiled import localize

__all__ = [
    "ObjectPrompt",
    "collect_empty_objects",
    "decode_into",
    "empty_objects",
    "object_slices",
    "paint_by_score",
    "plan_objects",
    "segment_stack",
    "warn_empty_objects",
]


@dataclass
class ObjectPrompt:
    """The prompts of one object: an optional box and its points (napari coordinates)."""

    box: np.ndarray | None = None  # (4,) half-open (min_row, min_col, max_row, max_col)
    points: list[np.ndarray] = field(default_factory=list)  # (2,) (row, col) each
    labels: list[int] = field(default_factory=list)


def plan_objects(prompts: Prompts) -> list[ObjectPrompt]:
    """Group checked prompts on one image into objects, following the library's contract.

    Each box is one object; a point inside a box (half-open) belongs to the smallest box containing it
    and refines that object; every other foreground point is an object of its own; background points
    outside all boxes are negative points for every point-object. Objects are ordered boxes first
    (box order), then foreground points (point order).

    Parameters
    ----------
    prompts
        Flat prompts on a ``(Y, X)`` image: ``(N, 2)`` ``(row, col)`` points with ``(N,)`` 0/1 labels,
        ``(M, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` boxes.
    """
    boxes = prompts.boxes
    objects = [ObjectPrompt(box=b) for b in boxes]
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    free_pos: list[np.ndarray] = []
    free_neg: list[np.ndarray] = []
    for point, label in zip(prompts.points, prompts.point_labels, strict=True):
        inside = np.flatnonzero(_inside_boxes(point[None], boxes, each=True)[0])
        if len(inside):
            owner = objects[int(inside[np.argmin(areas[inside])])]
            owner.points.append(point)
            owner.labels.append(int(label))
        elif label == 1:
            free_pos.append(point)
        else:
            free_neg.append(point)
    for point in free_pos:
        objects.append(ObjectPrompt(points=[point, *free_neg], labels=[1] + [0] * len(free_neg)))
    return objects


def paint_by_score(
    labels: np.ndarray, best: np.ndarray, masks: np.ndarray, scores: np.ndarray, ids: Sequence[int]
) -> None:
    """Write masks into ``labels`` where their score beats the score already there."""
    for mask, score, label in zip(masks, scores, ids, strict=True):
        win = mask & (score > best)
        labels[win] = label
        best[win] = score


def merge_identical_boxes(
    objects: Sequence[ObjectPrompt], ids: Sequence[int], stacklevel: int = 3
) -> tuple[list[ObjectPrompt], list[int]]:
    """Drop the objects that are a copy of an earlier object's box (no points of their own).

    The first of identical boxes makes the object; a copy would only repeat its mask, and used to
    leave its label silently missing. One :class:`~napari_sam.errors.DuplicateBoxesWarning` names
    each ``(kept, dropped)`` pair by label (the box's number in :func:`napari_sam.segment`);
    ``stacklevel`` as :func:`warnings.warn`'s, counted from the caller of this function.
    """
    first: dict[bytes, int] = {}
    pairs: list[tuple[int, int]] = []
    kept: list[int] = []
    for k, (obj, label) in enumerate(zip(objects, ids, strict=True)):
        key = None if obj.box is None else np.asarray(obj.box, dtype=np.float64).tobytes()
        if key is not None and key in first and not obj.points:
            pairs.append((first[key], int(label)))
            continue
        if key is not None:
            first.setdefault(key, int(label))
        kept.append(k)
    if pairs:
        said = "; ".join(
            f"boxes {a} and {b} are identical: merged into one object (label {a}), label {b} is not used"
            for a, b in pairs
        )
        warnings.warn(DuplicateBoxesWarning(said, pairs), stacklevel=stacklevel + 1)
    return [objects[k] for k in kept], [int(ids[k]) for k in kept]


def decode_into(
    labels: np.ndarray,
    embeddings: Embeddings | TiledEmbeddings,
    objects: Sequence[ObjectPrompt],
    ids: Sequence[int],
    sam: Any,
    multimask: bool | str,
    batch_size: int,
    *,
    report_empty: bool = True,
    stacklevel: int = 2,
) -> None:
    """Decode ``objects`` on one slice and paint them into ``labels`` ``(Y, X)`` with labels ``ids``.

    On tiled embeddings each object is decoded on its tile (or a window centred on it) and painted
    into that window. Objects left without pixels (no mask, one entirely covered by other objects,
    or a merged copy of an identical box) are absent; with ``report_empty`` one
    :class:`~napari_sam.errors.EmptyObjectsWarning` names them all. ``stacklevel`` places the
    warnings as :func:`warnings.warn` does, counted from the caller of this function (2, the default:
    the caller's caller, such as the user's line calling :func:`napari_sam.segment`).
    """
    if not objects:
        return
    wanted = dict.fromkeys(int(v) for v in ids)  # a merged copy's label is missing too: reported
    objects, ids = merge_identical_boxes(objects, ids, stacklevel=stacklevel + 1)
    best = np.full(labels.shape, -np.inf, dtype=np.float32)
    for group in _prompt_groups(embeddings, objects, ids):
        region = _window_region(group.bounds)
        lone_point = not group.has_box and group.n_points == 1
        use_multi = lone_point if multimask == "auto" else bool(multimask)
        options = DecodeOptions(multimask=use_multi, best_only=True)
        for start in range(0, len(group.members), batch_size):
            chunk = group.members[start : start + batch_size]
            pred = predict_plain(group.embeddings, group.prompts(chunk), options, sam)
            chunk_ids = [member.label for member in chunk]
            paint_by_score(labels[region], best[region], pred.masks[:, 0], pred.iou_scores[:, 0], chunk_ids)
    if report_empty:
        warn_empty_objects(empty_objects(labels, wanted), stacklevel=stacklevel + 1)


@dataclass
class _Member:
    """One object of a :class:`_Group`: its label and prompts in the group's window."""

    label: int
    box: np.ndarray | None  # (4,)
    points: np.ndarray | None  # (P, 2)
    point_labels: np.ndarray | None  # (P,)


@dataclass
class _Group:
    """Objects decoded together: the same embeddings (window) and the same prompt layout (a box or
    not, as many points)."""

    embeddings: Embeddings
    bounds: tuple[int, int, int, int] | None  # the window in the image; None: the whole image
    has_box: bool
    n_points: int
    members: list[_Member] = field(default_factory=list)

    def prompts(self, chunk: Sequence[_Member]) -> Prompts:
        """The prompts of ``chunk``'s objects, one row per object (every member has a box when the
        group has, and ``n_points`` points)."""
        boxes = [m.box for m in chunk if m.box is not None]
        points = [m.points for m in chunk if m.points is not None]
        labels = [m.point_labels for m in chunk if m.point_labels is not None]
        return object_prompts(
            np.stack(boxes) if self.has_box else None,
            np.stack(points) if self.n_points else None,
            np.stack(labels) if self.n_points else None,
        )


def _prompt_groups(
    embeddings: Embeddings | TiledEmbeddings, objects: Sequence[ObjectPrompt], ids: Sequence[int]
) -> list[_Group]:
    """``objects`` (labels ``ids``) in groups decoded together, in order of first appearance; on tiled
    embeddings each object on its window (objects with no prompt inside the image are left out)."""
    groups: dict[tuple[Any, ...], _Group] = {}
    for obj, label in zip(objects, ids, strict=True):
        points = np.stack(obj.points) if obj.points else None
        point_labels = np.asarray(obj.labels) if obj.points else None
        bounds: tuple[int, int, int, int] | None = None  # the whole image
        if isinstance(embeddings, TiledEmbeddings):
            local = localize(embeddings, obj.box, points, point_labels)
            if local is None:
                continue
            emb, bounds, box = local.embeddings, local.bounds, local.box
            points, point_labels = local.points, local.labels
        else:
            emb, box = embeddings, obj.box
        n_points = 0 if points is None else len(points)
        key = (bounds, box is not None, n_points)
        group = groups.setdefault(key, _Group(emb, bounds, box is not None, n_points))
        group.members.append(_Member(int(label), box, points, point_labels))
    return list(groups.values())


def _window_region(bounds: tuple[int, int, int, int] | None) -> tuple[slice, slice]:
    """The ``(rows, cols)`` slices of a window ``(r0, c0, r1, c1)`` (None: everything)."""
    if bounds is None:
        return slice(None), slice(None)
    return slice(bounds[0], bounds[2]), slice(bounds[1], bounds[3])


def empty_objects(labels: np.ndarray, expected: Mapping[int, int | None]) -> dict[int, int | None]:
    """The expected objects that got no pixel: ``{label: slice}``, in label order.

    Parameters
    ----------
    labels
        ``(Y, X)`` or ``(Z, Y, X)`` integer labels.
    expected
        ``{label: slice}`` of the prompted objects; the slice indexes the first axis of a stack, None
        looks at the whole of ``labels`` (a 2D image).
    """
    present: dict[int | None, set[int]] = {}  # labels found on each slice, one scan per slice
    for z in set(expected.values()):
        present[z] = set(np.unique(labels if z is None else labels[z]).tolist())
    return {label: z for label, z in sorted(expected.items()) if label not in present[z]}


#: The list that :func:`collect_empty_objects` gathers reports into, per thread (None: warn).
_EMPTY_REPORTS: ContextVar[list[EmptyObjectsWarning] | None] = ContextVar("empty_reports", default=None)


@contextmanager
def collect_empty_objects() -> Iterator[list[EmptyObjectsWarning]]:
    """Gather the empty-object reports of the calls inside the block instead of warning them.

    The reports of this thread only (a :class:`contextvars.ContextVar`), so that a batch worker running
    several files in threads attributes each report to its own file; ``warnings.catch_warnings``
    would catch every thread's warnings.

    Yields
    ------
    list of EmptyObjectsWarning
        Filled as the calls in the block report objects without pixels.
    """
    found: list[EmptyObjectsWarning] = []
    token = _EMPTY_REPORTS.set(found)
    try:
        yield found
    finally:
        _EMPTY_REPORTS.reset(token)


def warn_empty_objects(empty: Mapping[int, int | None], stacklevel: int = 2) -> None:
    """Emit one :class:`~napari_sam.errors.EmptyObjectsWarning` naming ``empty`` (nothing when it is empty).

    Inside :func:`collect_empty_objects` the report goes to its list instead.

    Parameters
    ----------
    empty
        ``{label: slice or None}`` as returned by :func:`empty_objects`.
    stacklevel
        As :func:`warnings.warn`'s, counted from the caller of this function.
    """
    if empty:
        warning = EmptyObjectsWarning(list(empty), list(empty.values()))
        collector = _EMPTY_REPORTS.get()
        if collector is not None:
            collector.append(warning)
        else:
            warnings.warn(warning, stacklevel=stacklevel + 1)


def _inside_boxes(points: np.ndarray, boxes: np.ndarray, each: bool = False) -> np.ndarray:
    """Whether each ``(row, col)`` point lies in the half-open boxes: ``(N,)`` in at least one, or with
    ``each`` ``(N, M)`` in each one."""
    r, c = points[:, 0:1], points[:, 1:2]
    inside = (
        (boxes[None, :, 0] <= r)
        & (r < boxes[None, :, 2])
        & (boxes[None, :, 1] <= c)
        & (c < boxes[None, :, 3])
    )
    return inside if each else np.any(inside, axis=1)


def stack_object_ids(prompts: Prompts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How :func:`napari_sam.segment` numbers the objects of prompts on a stack: boxes first (given
    order), then the foreground points outside every box of their slice (given order).

    Returns
    -------
    tuple of numpy.ndarray
        ``(M,)`` each box's label, ``(N,)`` each point's label (0 for points that make no object of
        their own), ``(N,)`` bool: the point makes an object.
    """
    points, boxes = prompts.points, prompts.boxes
    free = np.zeros(len(points), dtype=bool)
    for z in np.unique(points[:, 0]):
        on = points[:, 0] == z
        plane_boxes = boxes[boxes[:, 0] == z][:, [1, 2, 4, 5]]
        free[on] = (prompts.point_labels[on] == 1) & ~_inside_boxes(points[on, 1:], plane_boxes)
    point_ids = np.zeros(len(points), dtype=np.int64)
    point_ids[free] = len(boxes) + np.arange(1, int(free.sum()) + 1)
    return np.arange(1, len(boxes) + 1), point_ids, free


def object_slices(prompts: Prompts) -> dict[int, int]:
    """``{label: slice}`` of the objects :func:`napari_sam.segment` makes from prompts on a stack
    (numbered as :func:`stack_object_ids` numbers them)."""
    box_ids, point_ids, free = stack_object_ids(prompts)
    out = {int(k): int(z) for k, z in zip(box_ids, prompts.boxes[:, 0], strict=True)}
    out.update((int(k), int(z)) for k, z in zip(point_ids[free], prompts.points[free, 0], strict=True))
    return out


def is_blank(embeddings: Embeddings | TiledEmbeddings) -> bool:
    """Whether the embedded image had no contrast (percentile limits ``low == high`` everywhere): such an
    image gets no objects, whatever the model decodes on it (a :class:`NoContrastWarning` said so)."""
    first = embeddings.tiles[0] if isinstance(embeddings, TiledEmbeddings) else embeddings
    params = first.preprocessing
    return params.normalize == "percentile" and has_no_contrast(params.contrast_limits)


def segment_stack(
    embeddings: VolumeEmbeddings,
    prompts: Prompts,
    sam: Any,
    multimask: bool | str,
    batch_size: int,
    *,
    report_empty: bool = True,
) -> np.ndarray:
    """:func:`napari_sam.segment` on a stack with prompts that each name their slice.

    Parameters
    ----------
    embeddings
        The stack's :class:`VolumeEmbeddings` (a prompted slice not computed yet is computed on use).
    prompts
        Checked prompts on the stack (``(N, 3)`` points, ``(M, 6)`` boxes).
    sam
        The model.
    multimask, batch_size
        As in :func:`napari_sam.segment`.
    report_empty
        Warn about objects left without pixels: one
        :class:`~napari_sam.errors.EmptyObjectsWarning` names them and their slices.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` uint32 labels of the embeddings' shape, objects on their prompted slices;
        objects left without pixels (no mask, or one entirely covered by other objects) are absent.
    """
    point_z, box_z = prompts.points[:, 0], prompts.boxes[:, 0]
    box_ids, point_ids, free = stack_object_ids(prompts)
    labels = np.zeros(embeddings.shape, dtype=np.uint32)
    for z in prompts.slices:
        on_p, on_b = point_z == z, box_z == z
        objects = plan_objects(prompts.on_slice(z))
        ids = [*box_ids[on_b].tolist(), *point_ids[on_p & free].tolist()]
        if is_blank(embeddings[z]):  # a flat slice: its objects stay empty (and are reported so)
            continue
        decode_into(labels[z], embeddings[z], objects, ids, sam, multimask, batch_size, report_empty=False)
    if report_empty:
        warn_empty_objects(empty_objects(labels, object_slices(prompts)), stacklevel=3)
    return labels
