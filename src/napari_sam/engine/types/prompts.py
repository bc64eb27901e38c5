"""Checked prompts: :class:`Prompts`, the one form points, boxes and mask prompts take inside the engine."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Prompts:
    """Checked prompts in napari coordinates, made by
    :func:`~napari_sam.engine.decode.prompts.normalize_prompts` (code that derives prompts from checked
    ones, such as one slice's or one tile's share, builds one directly).

    Coordinates are pixels of the original image, rows first: pixel ``i`` is centred on ``i``. A set of
    prompts (``segment``, the nodes, propagation) holds flat rows; :func:`napari_sam.predict`'s prompts
    are grouped by object (``per_object``).

    Attributes
    ----------
    points
        float64 ``(N, 2)`` rows ``(row, col)`` on an image, ``(N, 3)`` rows ``(z, row, col)`` on a stack
        (``z`` a whole slice number); grouped by object: ``(K, P, 2)``, the ``P`` points of each of
        ``K`` objects. No points: ``N = 0`` (``(0, 0, 2)`` grouped).
    point_labels
        int64 of shape ``points.shape[:-1]``: 1 foreground (on the object), 0 background.
    boxes
        float64 ``(M, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` clipped to the image, or
        ``(M, 6)`` ``(min_z, min_row, min_col, max_z, max_row, max_col)`` with ``max_z = min_z + 1`` on a
        stack (a box lies on one slice); ``M = 0`` for none. Grouped by object: one box per object.
    masks
        Mask prompts as given (``predict``'s ``mask_input``: low-resolution logits or a binary mask of
        the image's shape, one for all objects or one per object), checked by the decoder against the
        model's mask size; None when not given.
    """

    points: np.ndarray
    point_labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray | None = None

    @property
    def per_object(self) -> bool:
        """True when points are grouped by object, ``(K, P, 2)`` (:func:`napari_sam.predict`'s form)."""
        return self.points.ndim == 3

    @property
    def has_points(self) -> bool:
        return self.points.size > 0

    @property
    def has_boxes(self) -> bool:
        return len(self.boxes) > 0

    @property
    def n_objects(self) -> int:
        """Objects described by prompts grouped by object: one set of points may serve all boxes."""
        return max(len(self.points), len(self.boxes), 1)

    @property
    def slices(self) -> list[int]:
        """The slices that prompts on a stack lie on, in order."""
        z = np.concatenate([self.points[:, 0], self.boxes[:, 0]])
        return sorted({int(v) for v in z})

    def on_slice(self, z: int) -> Prompts:
        """The ``(row, col)`` prompts of slice ``z`` of prompts on a stack, in their given order."""
        on_points, on_boxes = self.points[:, 0] == z, self.boxes[:, 0] == z
        return Prompts(
            points=self.points[on_points, 1:],
            point_labels=self.point_labels[on_points],
            boxes=self.boxes[on_boxes][:, [1, 2, 4, 5]],
        )
