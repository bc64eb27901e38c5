"""napari layers → prompts in the image's pixel frame, napari order (rows first).

Points and Shapes layers may carry their own scale / translate: coordinates go through world space
into the image layer's data coordinates, so a prompt lands on the pixel it is drawn on. No flip to
SAM's (x, y) happens here; :mod:`napari_sam.engine.coords` does that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import AnnotatorError

#: the Points feature holding each point's kind
LABEL_FEATURE = "label"
POSITIVE = "positive"
NEGATIVE = "negative"


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
        ``(M, 4)`` float half-open ``(min_row, min_col, max_row, max_col)``.
    skipped_shapes
        How many shapes were ignored (not rectangles).
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    point_labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    skipped_shapes: int = 0

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


def point_labels_of(layer: Any) -> np.ndarray:
    """``(N,)`` 1 / 0 for a Points layer: from its ``label`` feature if any, else all foreground.

    The feature may hold ``"positive"`` / ``"negative"``, booleans or 1 / 0.
    """
    n = len(layer.data)
    features = layer.features
    if LABEL_FEATURE not in getattr(features, "columns", ()):
        return np.ones(n, dtype=np.int64)
    values = features[LABEL_FEATURE].to_numpy()
    out = np.ones(n, dtype=np.int64)
    for i, value in enumerate(values):
        if isinstance(value, str):
            out[i] = 0 if value.strip().lower() in (NEGATIVE, "neg", "background", "0", "false") else 1
        else:
            out[i] = 1 if bool(value) else 0
    return out


def points_from_layer(
    points_layer: Any, image_layer: Any, plane: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Points on the image (or on ``plane`` of a stack) as ``(N, 2)`` ``(row, col)`` and ``(N,)`` labels.

    Raises
    ------
    AnnotatorError
        A point of this slice lies outside the image.
    """
    spatial = image_spatial_shape(image_layer)
    if points_layer is None or len(points_layer.data) == 0:
        return np.zeros((0, 2)), np.zeros((0,), dtype=np.int64)
    labels = point_labels_of(points_layer)
    coords = _to_image_frame(np.asarray(points_layer.data), points_layer, image_layer)
    keep = _on_plane(coords, plane, len(spatial))
    rc = coords[keep][:, -2:]
    labels = labels[keep]
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


def _box_from_vertices(rc: np.ndarray) -> np.ndarray:
    """Vertices ``(V, 2)`` → half-open ``(min_row, min_col, max_row, max_col)`` of the pixels whose centres
    lie inside the rectangle."""
    lo = rc.min(axis=0)
    hi = rc.max(axis=0)
    r0, c0 = math.ceil(lo[0] - 1e-6), math.ceil(lo[1] - 1e-6)
    r1, c1 = math.floor(hi[0] + 1e-6) + 1, math.floor(hi[1] + 1e-6) + 1
    return np.array([r0, c0, r1, c1], dtype=np.float64)


def boxes_from_layer(shapes_layer: Any, image_layer: Any, plane: int | None = None) -> tuple[np.ndarray, int]:
    """Rectangles on the image (or on ``plane``) as ``(M, 4)`` half-open boxes, and the count of other
    shapes that were skipped. Boxes are clipped to the image; boxes entirely outside are skipped too."""
    spatial = image_spatial_shape(image_layer)
    boxes: list[np.ndarray] = []
    skipped = 0
    if shapes_layer is None:
        return np.zeros((0, 4)), 0
    h, w = spatial[-2:]
    for vertices, kind in zip(shapes_layer.data, shapes_layer.shape_type, strict=True):
        coords = _to_image_frame(np.asarray(vertices), shapes_layer, image_layer)
        if len(spatial) == 3 and plane is not None and not np.all(_on_plane(coords, plane, 3)):
            continue
        if kind != "rectangle":
            skipped += 1
            continue
        box = _box_from_vertices(coords[:, -2:])
        box[[0, 2]] = np.clip(box[[0, 2]], 0, h)
        box[[1, 3]] = np.clip(box[[1, 3]], 0, w)
        if box[2] <= box[0] or box[3] <= box[1]:
            skipped += 1
            continue
        boxes.append(box)
    return (np.array(boxes) if boxes else np.zeros((0, 4))), skipped


def prompts_from_layers(
    image_layer: Any, points_layer: Any = None, shapes_layer: Any = None, plane: int | None = None
) -> SlicePrompts:
    """All prompts on the image (on ``plane`` of a stack) from a Points and a Shapes layer."""
    points, labels = points_from_layer(points_layer, image_layer, plane)
    boxes, skipped = boxes_from_layer(shapes_layer, image_layer, plane)
    return SlicePrompts(points=points, point_labels=labels, boxes=boxes, skipped_shapes=skipped)
