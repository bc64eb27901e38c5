"""napari layers → prompts in the image's pixel frame, napari order (rows first).

Points and Shapes layers may carry their own scale / translate: coordinates go through world space
into the image layer's data coordinates, so a prompt lands on the pixel it is drawn on. No flip to
SAM's (x, y) happens here; :mod:`napari_sam.engine.decode.coords` does that.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.decode.coords import POINT_KIND_WORDS, point_kind, vertices_to_box
from ..errors import AnnotatorError

#: the Points feature holding each point's kind
LABEL_FEATURE = "label"
POSITIVE = "positive"
NEGATIVE = "negative"
#: spellings of the ``label`` feature (case and surrounding spaces do not matter)
POSITIVE_WORDS = frozenset(word for word, kind in POINT_KIND_WORDS.items() if kind == 1)
NEGATIVE_WORDS = frozenset(word for word, kind in POINT_KIND_WORDS.items() if kind == 0)
#: how a missing value reads back from a text feature column (pandas writes NaN as "nan")
MISSING_WORDS = frozenset({"nan", "none", "<na>"})


@dataclass
class SlicePrompts:
    """The prompts on one 2D image (or one slice of a stack), in its pixel frame.

    Attributes
    ----------
    points
        ``(N, 2)`` float ``(row, col)``.
    point_labels
        ``(N,)`` int, 1 foreground, 0 background.
    boxes
        ``(M, 4)`` float half-open ``(min_row, min_col, max_row, max_col)``, each distinct.
    skipped_shapes
        How many shapes were ignored (not rectangles).
    merged_boxes
        ``(kept, dropped)`` pairs of rectangles that cover the same pixels, numbered from 1 in the
        Shapes layer's order: ``dropped`` was merged into ``kept`` (one object, one box in ``boxes``).
    notes
        What was done to the prompts, for the user (one line per merged pair).
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    skipped_shapes: int = 0
    merged_boxes: list[tuple[int, int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """No points and no boxes."""
        return len(self.points) == 0 and len(self.boxes) == 0

    @property
    def n_positive(self) -> int:
        return int(np.sum(self.point_labels == 1))


def image_spatial_shape(layer: Any) -> tuple[int, ...]:
    """``(Y, X)`` or ``(Z, Y, X)`` of a napari Image layer (RGB(A) axis and pyramid levels excluded).

    Raises
    ------
    AnnotatorError
        Not an image layer, or not 2D / 3D.
    """
    from napari.layers import Image

    if not isinstance(layer, Image):
        kind = "nothing" if layer is None else f"a {type(layer).__name__} layer"
        raise AnnotatorError(f"choose an image layer to segment (got {kind}); open an image first")
    data = layer.data[0] if layer.multiscale else layer.data
    shape = tuple(int(s) for s in data.shape)
    spatial = shape[:-1] if layer.rgb else shape
    if len(spatial) not in (2, 3):
        raise AnnotatorError(
            f"image layer '{layer.name}' has {len(spatial)} spatial axes {spatial}; napari-sam segments 2D "
            "(Y, X) images and 3D (Z, Y, X) stacks — for time × z data, open one time point as its own layer"
        )
    return spatial


def _to_image_frame(coords: np.ndarray, source: Any, image: Any) -> np.ndarray:
    """``(N, D)`` data coordinates of layer ``source`` → data coordinates of layer ``image``."""
    if len(coords) == 0:
        return np.zeros((0, image.ndim))
    same = (
        source.ndim == image.ndim
        and np.allclose(source.scale, image.scale)
        and np.allclose(source.translate, image.translate)
        and np.allclose(source.affine.affine_matrix, image.affine.affine_matrix)
        and np.allclose(source.rotate, image.rotate)
    )
    if same:
        return np.asarray(coords, dtype=np.float64)
    out = []
    for row in np.asarray(coords, dtype=np.float64):
        world = np.asarray(source.data_to_world(row), dtype=np.float64)
        out.append(np.asarray(image.world_to_data(world[-image.ndim :]), dtype=np.float64))
    return np.array(out)


def _on_plane(coords: np.ndarray, plane: int | None, spatial_ndim: int) -> np.ndarray:
    """Rows of ``coords`` (image frame, last axes spatial) on ``plane``, as ``(n, 2)`` ``(row, col)``."""
    if spatial_ndim == 2 or plane is None:
        return np.ones(len(coords), dtype=bool)
    z = coords[:, -3]
    return np.abs(z - plane) < 0.5


def label_value(value: Any) -> int | None:
    """1 (positive), 0 (negative) or None (not a point kind) for one value of the ``label`` feature.

    Accepted: the words of :data:`POSITIVE_WORDS` / :data:`NEGATIVE_WORDS` (any case), booleans, and
    the numbers 1 and 0. NaN, None, other numbers and other words are not point kinds.
    """
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, str):
        return point_kind(value)
    if isinstance(value, numbers.Real) and float(value) in (0.0, 1.0):
        return int(float(value))
    return None


def _where(layer: Any, index: int) -> str:
    """``"(row, col)"`` / ``"(z, row, col)"`` of point ``index`` of a Points layer (its data frame)."""
    return "(" + ", ".join(f"{v:.0f}" for v in np.asarray(layer.data[index], dtype=float)) + ")"


def point_labels_of(layer: Any, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """``(n,)`` int 1 / 0 of a Points layer's points ``indices`` (default all): from its ``label``
    feature if any, else all foreground.

    The feature may hold ``"positive"`` / ``"negative"`` (also ``"pos"`` / ``"neg"``,
    ``"foreground"`` / ``"background"``), booleans or 1 / 0.

    Raises
    ------
    AnnotatorError
        A point's ``label`` is none of these (NaN, None, 2, a typo …): the error names the layer, the
        point (its index, counted from 0, and position) and the value.
    """
    idx = np.arange(len(layer.data)) if indices is None else np.asarray(indices, dtype=np.int64)
    features = layer.features
    if LABEL_FEATURE not in getattr(features, "columns", ()):
        return np.ones(len(idx), dtype=np.int64)
    values = features[LABEL_FEATURE].to_numpy()
    out = np.ones(len(idx), dtype=np.int64)
    for k, i in enumerate(idx):
        kind = label_value(values[i])
        if kind is None:
            raise _bad_label(layer, int(i), values[i])
        out[k] = kind
    return out


def _bad_label(layer: Any, index: int, value: Any) -> AnnotatorError:
    """The error for point ``index`` of ``layer`` whose ``label`` feature is ``value`` (not a point kind)."""
    shown = value.item() if isinstance(value, np.generic) else value
    missing = (
        shown is None
        or (isinstance(shown, float) and math.isnan(shown))
        or (isinstance(shown, str) and shown.strip().lower() in MISSING_WORDS)
    )
    said = "has no label (NaN)" if missing else f"has label {shown!r}"
    return AnnotatorError(
        f"points layer '{layer.name}': point {index} at {_where(layer, index)} {said}; the "
        f"'{LABEL_FEATURE}' feature must say '{POSITIVE}' or '{NEGATIVE}' (or True / False, 1 / 0) — set "
        "it in the layer's features or delete the point"
    )


def check_layer_ndim(layer: Any, image_layer: Any, kind: str) -> None:
    """Refuse a prompt layer with fewer dimensions than the image (a 2D layer over a 3D stack).

    napari draws such a layer on every slice, so the slice its prompts are meant for is unknown (they
    used to land on slice 0 only, and to be ignored on every other slice).

    Parameters
    ----------
    layer
        The Points or Shapes layer (None passes).
    image_layer
        The 2D or 3D Image layer.
    kind
        ``"points"`` or ``"shapes"``, for the message.

    Raises
    ------
    AnnotatorError
        ``layer.ndim`` is smaller than the image's number of spatial axes.
    """
    if layer is None:
        return
    spatial = image_spatial_shape(image_layer)
    if layer.ndim < len(spatial):
        raise AnnotatorError(
            f"{kind} layer '{layer.name}' is {layer.ndim}D but image '{image_layer.name}' is "
            f"{len(spatial)}D {spatial}; napari shows a {layer.ndim}D layer on every slice, so it is unclear "
            f"which slice its {kind} are for — add them to a {len(spatial)}D {kind} layer (the annotator's "
            f"own '{'SAM points' if kind == 'points' else 'SAM boxes'}', or rows (z, row, col))"
        )


def points_from_layer(
    points_layer: Any, image_layer: Any, plane: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Points on the image (or on ``plane`` of a stack) as ``(N, 2)`` ``(row, col)`` and ``(N,)`` labels.

    Raises
    ------
    AnnotatorError
        A point of this slice lies outside the image or has a ``label`` that is not a point kind; the
        layer has fewer dimensions than the image.
    """
    spatial = image_spatial_shape(image_layer)
    if points_layer is None or len(points_layer.data) == 0:
        return np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    check_layer_ndim(points_layer, image_layer, "points")
    coords = _to_image_frame(np.asarray(points_layer.data), points_layer, image_layer)
    keep = _on_plane(coords, plane, len(spatial))
    rc = coords[keep][:, -2:]
    labels = point_labels_of(points_layer, np.flatnonzero(keep))
    h, w = spatial[-2:]
    outside = (rc[:, 0] < -0.5) | (rc[:, 0] > h - 0.5) | (rc[:, 1] < -0.5) | (rc[:, 1] > w - 0.5)
    if outside.any():
        r, c = rc[outside][0]
        raise AnnotatorError(
            f"point ({r:.0f}, {c:.0f}) (row, col) is outside the image ({h} × {w}); delete it from layer "
            f"'{points_layer.name}'"
        )
    rc = np.clip(rc, 0, [h - 1, w - 1])
    return rc, labels


def boxes_from_layer(
    shapes_layer: Any, image_layer: Any, plane: int | None = None
) -> tuple[np.ndarray, int, list[tuple[int, int]]]:
    """Rectangles on the image (or on ``plane``) as ``(M, 4)`` half-open boxes, the count of other
    shapes that were skipped, and the ``(kept, dropped)`` pairs of rectangles merged because they cover
    the same pixels (numbered from 1 in the layer's order).

    Boxes are clipped to the image; boxes entirely outside are skipped too.

    Raises
    ------
    AnnotatorError
        The layer has fewer dimensions than the image.
    """
    spatial = image_spatial_shape(image_layer)
    if shapes_layer is None or len(shapes_layer.data) == 0:
        return np.zeros((0, 4)), 0, []
    check_layer_ndim(shapes_layer, image_layer, "shapes")
    boxes: list[np.ndarray] = []
    first: dict[tuple[float, ...], int] = {}  # box → its number in the layer (from 1)
    merged: list[tuple[int, int]] = []
    skipped = 0
    h, w = spatial[-2:]
    for number, (vertices, kind) in enumerate(
        zip(shapes_layer.data, shapes_layer.shape_type, strict=True), 1
    ):
        coords = _to_image_frame(np.asarray(vertices), shapes_layer, image_layer)
        if len(spatial) == 3 and plane is not None and not np.all(_on_plane(coords, plane, 3)):
            continue
        if kind != "rectangle":
            skipped += 1
            continue
        box = vertices_to_box(coords[:, -2:])
        box[[0, 2]] = np.clip(box[[0, 2]], 0, h)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, w)
        if box[2] <= box[0] or box[3] <= box[1]:
            skipped += 1
            continue
        key = tuple(box.tolist())
        if key in first:
            merged.append((first[key], number))
            continue
        first[key] = number
        boxes.append(box)
    return (np.array(boxes) if boxes else np.zeros((0, 4))), skipped, merged


def prompts_from_layers(
    image_layer: Any, points_layer: Any = None, shapes_layer: Any = None, plane: int | None = None
) -> SlicePrompts:
    """All prompts on the image (on ``plane`` of a stack) from a Points and a Shapes layer.

    Rectangles covering the same pixels are one box (one object); :attr:`SlicePrompts.notes` says so.

    Raises
    ------
    AnnotatorError
        See :func:`points_from_layer` and :func:`boxes_from_layer`.
    """
    points, labels = points_from_layer(points_layer, image_layer, plane)
    boxes, skipped, merged = boxes_from_layer(shapes_layer, image_layer, plane)
    notes = [
        f"boxes {kept} and {dropped} of '{shapes_layer.name}' are identical: merged into one object"
        for kept, dropped in merged
    ]
    return SlicePrompts(
        points=points,
        point_labels=labels,
        boxes=boxes,
        skipped_shapes=skipped,
        merged_boxes=merged,
        notes=notes,
    )
