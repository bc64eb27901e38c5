"""Refining given labels (from Cellpose, StarDist, a threshold …) with Segment Anything.

Each label is one object. Its prompt is the official way SAM takes an object it has seen before: the
label's bounding box plus its mask as the mask prompt (the binary mask resized like the image and
turned into low-resolution logits, :func:`~napari_sam.engine.preprocess.mask_to_prompt_logits`),
optionally with correction points (foreground / background clicks) of that label. The refined mask
replaces the label's pixels under the same id.

Rules, whatever the labels hold:

- the input array is never modified; the result is a new array of the same shape and dtype;
- labels that are not refined (not asked for, too small, or whose refined mask came back empty) keep
  their pixels exactly; a refined mask never takes pixels of a label that is not refined;
- refined masks that overlap are resolved by predicted IoU (the higher wins);
- a label holding two objects (a merge) is split by one background click on the object that does not
  belong: that object is taken out of the label's prompts, and a part of a label that its refined mask
  leaves out and that looks like an object of its own becomes a new label, refined the same way,
  rather than being dropped (:attr:`RefineOptions.split_merged`, :mod:`~napari_sam.engine.leftovers`);
- one bad label never sinks the rest: it is skipped and named in one :class:`RefineWarning`.

A stack ``(Z, Y, X)`` is refined slice by slice: each slice's pieces of a label are refined on that
slice (there is no propagation between slices); ids are kept across slices.

:func:`refine_steps` is the step generator (yields ``(done, total)`` objects, returns a
:class:`RefineResult`), so napari runs it in a worker with a progress bar; :func:`refine_labels` runs it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import RefineWarning
from .decode.coords import mask_to_box
from .decode.plain import DecodeOptions, predict_plain
from .decode.prompts import object_prompts
from .decode.tiled import localize
from .embed.embeddings import embed_image
from .label_prompts import assign_points, label_boxes
from .leftovers import cut_at_click, object_at, object_pieces
from .object_scale import object_size_of_boxes
from .steps import ProgressLike, run_steps
from .types import (
    Embeddings,
    EmbedOptions,
    ImageLayout,
    Prompts,
    TiledEmbeddings,
    check_field,
    check_flag,
    check_int,
)

__all__ = [
    "RefineOptions",
    "RefineResult",
    "RefineWarning",
    "assign_points",
    "label_boxes",
    "refine_image",
    "refine_labels",
    "refine_steps",
]


@dataclass(frozen=True)
class RefineOptions:
    """How each label is prompted; checked when made.

    Attributes
    ----------
    use_box
        Give the label's bounding box (half-open, grown by ``box_margin``) as the box prompt.
    use_mask
        Give the label's mask as the mask prompt (low-resolution logits, as SAM takes a previous mask).
    box_margin
        Pixels added on every side of each label's box (clipped to the image); 0: the tight box.
    min_pixels
        Labels (on a slice) with fewer pixels are kept as given, not refined.
    batch_size
        Objects decoded per call.
    split_merged
        Split merges: a background click inside a label, on what the model sees as another object,
        takes that object out of the label's mask and box prompts; and the parts of a label that its
        refined mask leaves out and that look like objects of their own (at least a quarter of the
        refined mask's area and 0.4 of its thickness) are kept as new labels (the next free ids),
        each refined with its own box and mask. False: neither (left-out parts are dropped).
    """

    use_box: bool = True
    use_mask: bool = True
    box_margin: int = 0
    min_pixels: int = 3
    batch_size: int = 32
    split_merged: bool = True

    def __post_init__(self) -> None:
        check_field(self, "use_box", check_flag)
        check_field(self, "use_mask", check_flag)
        check_field(self, "box_margin", check_int, 0)
        check_field(self, "min_pixels", check_int, 1)
        check_field(self, "batch_size", check_int, 1)
        check_field(self, "split_merged", check_flag)
        if not (self.use_box or self.use_mask):
            raise ValueError("use_box and use_mask are both False: a label needs its box or its mask")


@dataclass
class RefineResult:
    """What :func:`refine_labels` did.

    Attributes
    ----------
    labels
        The refined labels: a new array of the input's shape and dtype (``uint32`` when a part split
        off a label needs an id that dtype cannot hold).
    refined
        The labels whose pixels were replaced by their refined mask, ascending (on a stack a label
        may be refined on some slices and kept as given on others: then it is in ``skipped`` too).
    scores
        ``{label: predicted IoU}`` of the refined labels (a stack: the mean over its slices).
    skipped
        ``{label: reason}`` of the labels kept as given (see :class:`RefineWarning`).
    covered
        Refined labels left with no pixel (all taken by other refined labels).
    split_off
        ``{new label: the label it was split from}``: object-like parts that a refined mask left
        out, kept as new labels (see :attr:`RefineOptions.split_merged`); their predicted IoU is in
        ``scores``.
    """

    labels: np.ndarray
    refined: tuple[int, ...] = ()
    scores: dict[int, float] = field(default_factory=dict)
    skipped: dict[int, str] = field(default_factory=dict)
    covered: tuple[int, ...] = ()
    split_off: dict[int, int] = field(default_factory=dict)

    def warn(self, stacklevel: int = 2) -> None:
        """One :class:`RefineWarning` naming the skipped and covered labels (nothing when none)."""
        if self.skipped or self.covered:
            warnings.warn(RefineWarning(self.skipped, self.covered), stacklevel=stacklevel + 1)


@dataclass
class _Object:
    """One label on one slice, with its prompts in image coordinates."""

    label: int
    box: np.ndarray  # (4,) float64
    window: tuple[slice, slice]  # the label's pixels lie inside
    points: np.ndarray | None  # (P, 2)
    point_labels: np.ndarray | None  # (P,)
    mask: np.ndarray | None = None  # (Y, X) bool: the object's pixels when it is not a given label


@dataclass
class _Plane:
    """One slice to refine: its labels (read only), the objects and the embeddings' getter."""

    z: int | None
    labels: np.ndarray  # (Y, X)
    objects: list[_Object]
    embeddings: Callable[[], Embeddings | TiledEmbeddings]


def refine_image(
    image: Any,
    layout: ImageLayout,
    labels: Any,
    prompts: Prompts,
    sam: Any,
    embed_options: EmbedOptions,
    embeddings: Any = None,
    storage: dict[str, Any] | None = None,
    point_objects: Any = None,
    options: RefineOptions | None = None,
) -> RefineResult:
    """:func:`napari_sam.segment` with ``masks=``: embed the image as ``segment`` does, then refine.

    Parameters
    ----------
    image, layout
        The image (or stack) and its layout.
    labels
        ``(Y, X)`` / ``(Z, Y, X)`` integer labels of the image's spatial shape.
    prompts
        Checked correction points (flat; no boxes).
    sam
        The model.
    embed_options
        How to embed; ``object_size="auto"`` without a cache is the labels' median box size.
    embeddings
        The image's embeddings when at hand (a stack's checked by the caller); else computed (for a
        stack only the slices holding labels), with ``storage``'s ``cache`` / ``overwrite``.
    point_objects, options
        As for :func:`refine_steps`.

    Returns
    -------
    RefineResult
        Labels of ids up to ``2**32 - 1`` (checked), nothing warned yet.
    """
    arr = _check_labels(labels)
    if arr.shape != tuple(layout.spatial_shape):
        raise ValueError(
            f"masks must be labels of the image's spatial shape {tuple(layout.spatial_shape)}, got "
            f"shape {arr.shape}"
        )
    if arr.size and arr.max() > np.iinfo(np.uint32).max:
        raise ValueError(
            "masks holds labels above 2**32 - 1; relabel them (skimage.segmentation.relabel_sequential)"
        )
    storage = storage or {}
    planes = list(arr) if layout.is_volume else [arr]
    if embeddings is None:
        if embed_options.object_size == "auto" and storage.get("cache") is None:
            boxes = np.concatenate([label_boxes(p)[1] for p in planes])  # how big the objects are
            if len(boxes):
                embed_options = replace(embed_options, object_size=object_size_of_boxes(boxes))
        slices = [z for z, p in enumerate(planes) if p.any()] if layout.is_volume else None
        embeddings = embed_image(image, sam, embed_options, layout=layout, slices=slices, **storage)
    return refine_labels(
        arr,
        embeddings,
        sam,
        points=prompts.points if prompts.has_points else None,
        point_labels=prompts.point_labels if prompts.has_points else None,
        point_objects=point_objects,
        options=options,
    )


def refine_labels(
    labels: np.ndarray,
    embeddings: Any,
    sam: Any,
    *,
    ids: Sequence[int] | None = None,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    point_objects: Sequence[int] | np.ndarray | None = None,
    options: RefineOptions | None = None,
    first_new_id: int | None = None,
    progress: ProgressLike = None,
    cancel: Any = None,
) -> RefineResult:
    """Refine ``labels`` (each label one object) on the image of ``embeddings``: :func:`refine_steps`
    run to its end. Nothing is warned here; :meth:`RefineResult.warn` says what was skipped."""
    steps = refine_steps(
        labels,
        embeddings,
        sam,
        ids=ids,
        points=points,
        point_labels=point_labels,
        point_objects=point_objects,
        options=options,
        first_new_id=first_new_id,
    )
    return run_steps(steps, progress=progress, cancel=cancel, what="refinement", unit="object")


def refine_steps(
    labels: np.ndarray,
    embeddings: Any,
    sam: Any,
    *,
    ids: Sequence[int] | None = None,
    points: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    point_objects: Sequence[int] | np.ndarray | None = None,
    options: RefineOptions | None = None,
    first_new_id: int | None = None,
) -> Generator[tuple[int, int], None, RefineResult]:
    """Refine labels; a step generator (see :mod:`napari_sam.engine.steps`).

    Parameters
    ----------
    labels
        ``(Y, X)`` or ``(Z, Y, X)`` integer labels (0 background), the image's spatial shape. Not
        modified.
    embeddings
        Of the image: :class:`Embeddings` or :class:`TiledEmbeddings` for ``(Y, X)`` labels; for a
        stack anything indexed by slice (``embeddings[z]``, e.g.
        :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings`); only slices holding a refined
        label are read.
    sam
        The model (the one the embeddings were computed with); None: the embeddings' own.
    ids
        The labels to refine (default: every label). Other labels are kept as they are.
    points, point_labels
        Checked correction points: ``(N, 2)`` ``(row, col)`` (``(N, 3)`` ``(z, row, col)`` on a
        stack) with ``(N,)`` 1 (foreground: add this) / 0 (background: remove this).
    point_objects
        ``(N,)`` the label each point corrects; default: the label under the point, or on
        background the nearest label on its slice (see :func:`assign_points`).
    options
        :class:`RefineOptions`.
    first_new_id
        The first id given to a part split off a label (:attr:`RefineOptions.split_merged`); default
        one above the largest label. Give it when ``labels`` is one slice of a larger labels array.

    Yields
    ------
    tuple of int
        ``(done, total)`` objects (a label on a slice is one object).

    Returns
    -------
    RefineResult
        Through ``StopIteration.value``.

    Raises
    ------
    ValueError
        Labels that are not integers or are negative, ``ids`` or ``point_objects`` naming a label that
        is not there (or not refined), points without labels of the same length.
    """
    options = options or RefineOptions()
    labels = _check_labels(labels)
    stack = labels.ndim == 3
    pts = np.zeros((0, labels.ndim)) if points is None else np.asarray(points, dtype=np.float64)
    plab = np.ones(len(pts), np.int64) if point_labels is None else np.asarray(point_labels, np.int64)
    if len(plab) != len(pts):
        raise ValueError(f"point_labels holds {len(plab)} labels for {len(pts)} points")
    present = {int(k) for k in np.unique(labels)} - {0}
    wanted = present if ids is None else {int(k) for k in np.asarray(ids).reshape(-1)}
    missing = sorted(wanted - present)
    if missing:
        raise ValueError(f"ids: label(s) {missing[:10]} are not in the labels")
    owners = _point_owners(labels, pts, point_objects, wanted)
    next_id = int(labels.max(initial=0)) + 1 if first_new_id is None else int(first_new_id)
    largest = int(labels.max(initial=0))
    if next_id <= largest or next_id > np.iinfo(np.uint32).max:
        raise ValueError(
            f"first_new_id must be above the largest label ({largest}) and at most 2**32 - 1, got "
            f"{first_new_id}: a part split off a label must not take an id in use"
        )
    out = labels.copy()
    skipped: dict[int, str] = {}
    planes = []
    for z in range(labels.shape[0]) if stack else [None]:
        plane = labels if z is None else labels[z]
        on = np.ones(len(pts), bool) if z is None else np.round(pts[:, 0]) == z
        rows = pts[on][:, -2:]
        objects = _plane_objects(plane, wanted, rows, plab[on], owners[on], options, skipped, z)
        if objects:
            planes.append(_Plane(z, plane, objects, _getter(embeddings, z)))
    total = sum(len(p.objects) for p in planes)
    yield 0, total
    done = 0
    scores: dict[int, list[float]] = {}
    covered: set[int] = set()
    split_off: dict[int, int] = {}
    for plane in planes:
        decoded: list[tuple[_Object, np.ndarray, float]] = []
        emb = plane.embeddings()
        if options.split_merged:
            _cut_clicked_objects(emb, plane, sam, options)
        for chunk, masks, ious in _decode(emb, plane, sam, options):
            decoded.extend(zip(chunk, masks, ious, strict=True))
            done += len(chunk)
            yield done, total
        target = out if plane.z is None else out[plane.z]
        covered.update(_paint(target, plane.labels, decoded, skipped, plane.z))
        for obj, mask, iou in decoded:
            if mask.any():
                scores.setdefault(obj.label, []).append(float(iou))
        if not options.split_merged:
            continue
        pieces = _pieces(target, plane.labels, decoded, next_id, options)
        if pieces:
            total += len(pieces)
            next_id += len(pieces)
            if next_id - 1 > np.iinfo(np.uint32).max:
                raise ValueError("no free label id left below 2**32 for the parts split off labels")
            if next_id - 1 > np.iinfo(out.dtype).max:  # the new ids do not fit: widen the result
                out = out.astype(np.uint32)
                target = out if plane.z is None else out[plane.z]
            extra = _Plane(plane.z, plane.labels, [piece for piece, _ in pieces], plane.embeddings)
            for chunk, masks, ious in _decode(emb, extra, sam, options):
                for obj, mask, iou in zip(chunk, masks, ious, strict=True):
                    _paint_piece(target, obj, mask)
                    scores.setdefault(obj.label, []).append(float(iou) if mask.any() else 0.0)
                done += len(chunk)
                yield done, total
            split_off.update({piece.label: source for piece, source in pieces})
    refined = sorted(k for k in scores if k not in split_off)
    final = {int(k) for k in np.unique(out)}
    return RefineResult(
        labels=out,
        refined=tuple(refined),
        scores={k: float(np.mean(v)) for k, v in sorted(scores.items())},
        skipped=dict(sorted(skipped.items())),
        covered=tuple(sorted(k for k in covered if k not in final)),
        split_off=split_off,
    )


def _check_labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise ValueError(f"masks must be (Y, X) or (Z, Y, X) labels, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"masks must be integer labels (0 background), got dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"masks must hold labels >= 0, got {int(arr.min())}")
    return arr


def _point_owners(labels: np.ndarray, pts: np.ndarray, point_objects: Any, wanted: set[int]) -> np.ndarray:
    """``(N,)`` the label each point corrects (checked to be one of those refined)."""
    if point_objects is not None:
        owners = np.asarray(point_objects).reshape(-1)
        if len(owners) != len(pts):
            raise ValueError(f"point_objects holds {len(owners)} labels for {len(pts)} points")
        if not np.issubdtype(owners.dtype, np.integer):
            raise ValueError(f"point_objects must be integer label ids, got dtype {owners.dtype}")
    else:
        owners = np.zeros(len(pts), np.int64)
        if labels.ndim == 2:
            owners = assign_points(labels, pts) if len(pts) else owners
        else:
            for z in np.unique(np.round(pts[:, 0])).astype(int):
                on = np.round(pts[:, 0]) == z
                owners[on] = assign_points(labels[z], pts[on][:, 1:])
    stray = sorted({int(k) for k in owners} - wanted)
    if stray:
        raise ValueError(
            f"point_objects: correction points belong to label(s) {stray[:10]}, which are not refined "
            "(not in the labels, or not in ids=)"
        )
    return owners.astype(np.int64)


def _plane_objects(
    plane: np.ndarray,
    wanted: set[int],
    points: np.ndarray,
    point_labels: np.ndarray,
    owners: np.ndarray,
    options: RefineOptions,
    skipped: dict[int, str],
    z: int | None,
) -> list[_Object]:
    """The objects of one slice: each wanted label present, with its box and correction points."""
    ids, boxes, counts = label_boxes(plane)
    where = "" if z is None else f" on slice {z}"
    objects = []
    for label, box, count in zip(ids.tolist(), boxes, counts.tolist(), strict=True):
        if label not in wanted:
            continue
        if count < options.min_pixels:
            skipped[label] = f"{count} pixel(s){where}, fewer than min_pixels={options.min_pixels}"
            continue
        mine = owners == label
        objects.append(
            _Object(
                label,
                _grown(box, options.box_margin, plane.shape),
                _window(box),
                points[mine] if mine.any() else None,
                point_labels[mine] if mine.any() else None,
            )
        )
    return objects


def _grown(box: np.ndarray, margin: int, shape: tuple[int, ...]) -> np.ndarray:
    """``(4,)`` float64: a half-open ``(min_row, min_col, max_row, max_col)`` box grown by ``margin``
    pixels per side, clipped to ``shape`` ``(Y, X)``."""
    h, w = shape
    m = margin
    return np.array(
        [max(box[0] - m, 0), max(box[1] - m, 0), min(box[2] + m, h), min(box[3] + m, w)], np.float64
    )


def _window(box: np.ndarray) -> tuple[slice, slice]:
    """The ``(rows, cols)`` slices of a half-open box (where its object's pixels lie)."""
    return slice(int(box[0]), int(box[2])), slice(int(box[1]), int(box[3]))


def _getter(embeddings: Any, z: int | None) -> Callable[[], Embeddings | TiledEmbeddings]:
    """The embeddings of slice ``z`` (the image's for None), read when called (a stack's lazily)."""

    def get() -> Embeddings | TiledEmbeddings:
        emb = embeddings if z is None else embeddings[z]
        if not isinstance(emb, (Embeddings, TiledEmbeddings)):
            raise TypeError(
                f"embeddings{'' if z is None else f'[{z}]'} must be Embeddings or TiledEmbeddings, got "
                f"{type(emb).__name__}"
            )
        return emb

    return get


def _decode(
    emb: Embeddings | TiledEmbeddings, plane: _Plane, sam: Any, options: RefineOptions
) -> Generator[tuple[list[_Object], list[np.ndarray], list[float]], None, None]:
    """Decode the objects of ``plane``: chunks of objects with their ``(Y, X)`` bool masks and
    predicted IoUs. Plain embeddings decode objects with as many points together; tiled ones decode
    each object on its window."""
    decode = DecodeOptions(multimask=False)
    shape = plane.labels.shape
    sam = sam if sam is not None else getattr(emb, "model", None)  # None: predict loads it by name
    if isinstance(emb, TiledEmbeddings):
        for obj in plane.objects:
            local = localize(emb, obj.box, obj.points, obj.point_labels)
            if local is None:  # not reachable for a box inside the image; kept as given
                yield [obj], [np.zeros(shape, bool)], [0.0]
                continue
            r0, c0, r1, c1 = local.bounds
            mask = _object_mask(plane.labels, obj)[None, r0:r1, c0:c1] if options.use_mask else None
            prompts = object_prompts(
                local.box[None] if options.use_box and local.box is not None else None,
                None if local.points is None else local.points[None],
                None if local.labels is None else local.labels[None],
                mask,
            )
            pred = predict_plain(local.embeddings, prompts, decode, sam)
            full = np.zeros(shape, bool)
            full[r0:r1, c0:c1] = pred.masks[0, 0]
            yield [obj], [full], [float(pred.iou_scores[0, 0])]
        return
    groups: dict[int, list[_Object]] = {}
    for obj in plane.objects:
        groups.setdefault(0 if obj.points is None else len(obj.points), []).append(obj)
    for n_points, members in groups.items():
        for start in range(0, len(members), options.batch_size):
            chunk = members[start : start + options.batch_size]
            masks = np.stack([_object_mask(plane.labels, o) for o in chunk]) if options.use_mask else None
            prompts = object_prompts(
                np.stack([o.box for o in chunk]) if options.use_box else None,
                np.stack([o.points for o in chunk if o.points is not None]) if n_points else None,
                np.stack([o.point_labels for o in chunk if o.point_labels is not None]) if n_points else None,
                masks,
            )
            pred = predict_plain(emb, prompts, decode, sam)
            yield chunk, list(pred.masks[:, 0]), pred.iou_scores[:, 0].tolist()


def _object_mask(labels: np.ndarray, obj: _Object) -> np.ndarray:
    """``(Y, X)`` bool: the pixels of ``obj``'s label (looked for inside its box only)."""
    if obj.mask is not None:
        return obj.mask
    mask = np.zeros(labels.shape, bool)
    mask[obj.window] = labels[obj.window] == obj.label
    return mask


def _paint(
    target: np.ndarray,
    given: np.ndarray,
    decoded: list[tuple[_Object, np.ndarray, float]],
    skipped: dict[int, str],
    z: int | None,
) -> list[int]:
    """Write the refined masks of one slice into ``target`` (a copy of ``given``); return the refined
    labels left with no pixel. Labels whose mask came back empty are kept as given (and recorded in
    ``skipped``); a refined mask only takes background and refined labels' pixels."""
    where = "" if z is None else f" on slice {z}"
    kept = []
    for obj, mask, _ in decoded:
        if not mask.any():
            skipped[obj.label] = f"the refined mask is empty{where}"
        else:
            kept.append((obj, mask, _))
    refined = np.array([obj.label for obj, _, _ in kept], dtype=np.int64)
    if not len(refined):
        return []
    claimable = (given == 0) | np.isin(given, refined)
    target[np.isin(given, refined)] = 0
    best = np.full(given.shape, -np.inf, np.float32)
    for obj, mask, score in kept:
        win = mask & claimable & (score > best)
        target[win] = obj.label
        best[win] = score
    present = set(np.unique(target[claimable]).tolist())
    return [int(k) for k in refined if int(k) not in present]


def _cut_clicked_objects(
    emb: Embeddings | TiledEmbeddings, plane: _Plane, sam: Any, options: RefineOptions
) -> None:
    """Take the objects of background clicks inside a label out of its mask and box prompts
    (:func:`~napari_sam.engine.leftovers.cut_at_click`); the objects of ``plane`` are updated."""
    sam = sam if sam is not None else getattr(emb, "model", None)
    shape = plane.labels.shape
    for obj in plane.objects:
        if obj.points is None or obj.point_labels is None or not (obj.point_labels == 0).any():
            continue
        label = _object_mask(plane.labels, obj)
        for point in obj.points[obj.point_labels == 0]:
            r, c = (int(v) for v in np.clip(np.round(point), 0, np.array(shape) - 1))
            if not label[r, c]:
                continue
            cut = cut_at_click(label, object_at(emb, point, shape, sam), point)
            if cut is None:
                continue
            label = cut
            obj.box = _grown(mask_to_box(cut), options.box_margin, shape)
            obj.mask = cut


def _pieces(
    target: np.ndarray,
    given: np.ndarray,
    decoded: list[tuple[_Object, np.ndarray, float]],
    next_id: int,
    options: RefineOptions,
) -> list[tuple[_Object, int]]:
    """The object-like parts that the refined labels of one slice (painted into ``target``) left
    out, as new objects with ids from ``next_id``, each with the label it came from."""
    pieces: list[tuple[_Object, int]] = []
    for obj, mask, _ in decoded:
        if obj.label not in given[obj.window] or not mask.any():  # a part split off itself
            continue
        window = obj.window
        mine = target[window] == obj.label
        if not mine.any():
            continue
        # on the label's window only (its pixels lie there): a full-image pass per label is slow
        left_out = (given[window] == obj.label) & (target[window] == 0)
        for local in object_pieces(left_out, mine, options.min_pixels):
            piece = np.zeros(given.shape, bool)
            piece[window] = local
            box = mask_to_box(piece)
            grown = _grown(box, options.box_margin, given.shape)
            new = _Object(next_id + len(pieces), grown, _window(box), None, None, piece)
            pieces.append((new, obj.label))
    return pieces


def _paint_piece(target: np.ndarray, piece: _Object, mask: np.ndarray) -> None:
    """Write a split-off part's refined mask into ``target`` where it is background; a part whose
    refined mask takes no pixel keeps its own pixels (nothing the user labelled is lost)."""
    free = mask & (target == 0)
    if not free.any() and piece.mask is not None:
        free = piece.mask & (target == 0)
    target[free] = piece.label
