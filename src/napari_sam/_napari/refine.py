"""Refining the labels of a napari Labels layer (from Cellpose, StarDist …) with the annotator's model.

A plain object driven by the Qt panel (:mod:`napari_sam._widgets.refine`), usable from scripts::

    refiner = LabelRefiner(annotator)          # an Annotator with its image set
    refiner.set_layer(viewer.layers["cellpose"])
    refiner.select(17)                         # or refiner.select_at(data_position)
    annotator.points_layer.add([120, 80])      # correction points (positive / negative)
    refiner.update_preview()                   # the refined label 17 in the annotator's preview
    refiner.commit()                           # written back as label 17: one undo step of the layer
    steps = refiner.refine_all_steps()         # every label of the slice: a step generator …
    refiner.write(run_steps(steps), plane)     # … written back (plane: None for 2D), one undo step

Every correction point on the current slice belongs to the selected label. Writing replaces the
refined labels' pixels and takes background only: other labels keep every pixel. A label holding two
objects is split by a background click on the one that does not belong: it becomes a new label (the
layer's next free id), shown in the preview beside the selected one.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np

from ..errors import AnnotatorError
from .annotator import Annotator, PreviewResult
from .prompts import image_spatial_shape


class LabelRefiner:
    """The labels layer being refined, the selected label and the refinement of it.

    Parameters
    ----------
    annotator
        The annotator whose image, embeddings, points layer and preview layer are used.
    """

    def __init__(self, annotator: Annotator) -> None:
        self.annotator = annotator
        self.layer: Any = None
        self.selected: int | None = None
        self.last: Any = None  # the RefineResult of the last preview

    # ------------------------------------------------------------------ layer and label
    def set_layer(self, layer: Any) -> None:
        """Refine the labels of ``layer`` (a Labels layer of the image's spatial shape)."""
        from napari.layers import Labels

        ann = self.annotator
        if ann.image_layer is None:
            raise AnnotatorError("choose an image layer first")
        if not isinstance(layer, Labels):
            raise AnnotatorError(f"refine a labels layer; '{layer.name}' is a {type(layer).__name__}")
        spatial = image_spatial_shape(ann.image_layer)
        if tuple(layer.data.shape) != spatial:
            raise AnnotatorError(
                f"labels layer '{layer.name}' has shape {tuple(layer.data.shape)} but image "
                f"'{ann.image_layer.name}' has {spatial}"
            )
        if layer is not self.layer:
            self.layer, self.selected, self.last = layer, None, None

    def _first_free_id(self) -> int:
        """One above the largest label of the whole layer (every slice): where split-off parts start."""
        return int(np.asarray(self.layer.data).max(initial=0)) + 1

    def _plane_labels(self, plane: int | None) -> np.ndarray:
        if self.layer is None:
            raise AnnotatorError("choose the labels layer to refine first")
        data = self.layer.data
        return np.asarray(data if plane is None else data[plane])

    def select(self, label: int) -> int:
        """Select ``label`` (a label of the current slice) for refinement; returns it."""
        label = int(label)
        labels = self._plane_labels(self.annotator.current_plane())
        if label <= 0 or not (labels == label).any():
            raise AnnotatorError(f"label {label} is not on this slice of '{self.layer.name}'")
        self.selected, self.last = label, None
        return label

    def select_at(self, position: Any) -> int:
        """Select the label at ``position`` (data coordinates of the labels layer, rows first)."""
        labels = self._plane_labels(self.annotator.current_plane())
        rc = np.round(np.asarray(position, dtype=np.float64)[-2:]).astype(int)
        if not (0 <= rc[0] < labels.shape[0] and 0 <= rc[1] < labels.shape[1]):
            raise AnnotatorError("click inside the image to pick a label")
        label = int(labels[rc[0], rc[1]])
        if label == 0:
            raise AnnotatorError("no label there: click on a label to refine it")
        return self.select(label)

    # ------------------------------------------------------------------ one label
    def compute(self, plane: int | None = None, embeddings: Any = None) -> Any:
        """The refinement of the selected label with the correction points of ``plane`` (default: the
        current slice): a :class:`~napari_sam.engine.refine.RefineResult` of the slice's labels."""
        from ..engine.refine import refine_labels

        ann = self.annotator
        if self.selected is None:
            raise AnnotatorError("pick a label to refine first (click on it)")
        plane = ann.current_plane() if plane is None else plane
        embeddings = embeddings if embeddings is not None else ann.embeddings(plane)
        if embeddings is None:
            raise AnnotatorError("compute the embeddings of this image (or slice) first")
        prompts = ann.prompts(plane)
        has_points = len(prompts.points) > 0
        return refine_labels(
            self._plane_labels(plane),
            embeddings,
            None,  # the model of the embeddings
            ids=[self.selected],
            points=prompts.points if has_points else None,
            point_labels=prompts.point_labels if has_points else None,
            point_objects=[self.selected] * len(prompts.points) if has_points else None,
            first_new_id=self._first_free_id(),
        )

    def show(self, result: Any, plane: int | None) -> None:
        """Draw the refined label of ``result`` (and the parts split off it, as further objects) in
        the annotator's preview layer."""
        ann = self.annotator
        self.last = result
        if result is None or self.selected is None:
            ann.show(None)
            return
        shown = [self.selected] + [new for new, source in result.split_off.items() if source == self.selected]
        index = np.zeros(np.shape(result.labels), np.int32)
        for k, label in enumerate(shown, start=1):
            index[result.labels == label] = k
        n = int(index.max())
        ann.show(PreviewResult(plane, index, n, np.ones(max(n, 1), np.float32), 0, 1, ("refine",)))

    def update_preview(self) -> Any:
        """Recompute and show the refinement of the selected label; returns the result."""
        plane = self.annotator.current_plane()
        result = self.compute(plane)
        self.show(result, plane)
        return result

    def commit(self) -> int:
        """Write the refinement of the selected label back into the layer under its id (one undo
        step); clears the correction points and the preview. Returns the pixels changed."""
        ann = self.annotator
        plane = ann.current_plane()
        result = self.last if self.last is not None else self.compute(plane)
        changed = self.write(result, plane)
        ann.clear_prompts()
        self.last = None
        return changed

    # ------------------------------------------------------------------ every label
    def refine_all_steps(self, plane: int | None = None) -> Generator[tuple[int, int], None, Any]:
        """Every label of ``plane`` (default: the current slice) refined without points: a step
        generator for a worker (yields ``(done, total)`` labels, returns the RefineResult). Call it
        on the UI thread (it reads the layers), iterate it anywhere."""
        from ..engine.refine import refine_steps

        ann = self.annotator
        plane = ann.current_plane() if plane is None else plane
        embeddings = ann.embeddings(plane)
        if embeddings is None:
            raise AnnotatorError("compute the embeddings of this image (or slice) first")
        labels = np.array(self._plane_labels(plane), copy=True)
        if not labels.any():
            raise AnnotatorError(f"'{self.layer.name}' has no label on this slice")
        # the model of the embeddings; parts split off labels get the layer's next free ids
        return refine_steps(labels, embeddings, None, first_new_id=self._first_free_id())

    def write(self, result: Any, plane: int | None) -> int:
        """Write a RefineResult of slice ``plane`` (None: a 2D layer) into the layer: one undo step,
        only the pixels that differ from the layer's present labels and belong to a refined label or
        were taken by one (pixels painted meanwhile with other labels are left alone). Returns the
        pixels changed."""
        current = self._plane_labels(plane)
        new = np.asarray(result.labels)
        if new.shape != current.shape:
            raise AnnotatorError(
                f"the refinement has shape {new.shape}, the layer's slice {current.shape}: "
                "the layer changed meanwhile; refine again"
            )
        split_off = list(getattr(result, "split_off", {}))
        if split_off and max(split_off) > np.iinfo(self.layer.data.dtype).max:
            raise AnnotatorError(
                f"labels layer '{self.layer.name}' ({self.layer.data.dtype}) cannot hold the new label "
                f"{max(split_off)} split off a merged label; convert the layer to uint32 first"
            )
        if split_off and self._first_free_id() > min(split_off):  # painted since the refinement
            raise AnnotatorError(
                f"label {min(split_off)}, meant for the object split off a merged label, is in "
                f"'{self.layer.name}' now: the layer changed meanwhile; refine again"
            )
        refined = np.array(list(result.refined) + list(result.covered) + split_off, dtype=np.int64)
        mine = np.isin(current, refined) | ((current == 0) & np.isin(new, refined))
        rows, cols = np.nonzero(mine & (new != current))
        if not len(rows):
            return 0
        values = new[rows, cols].astype(self.layer.data.dtype)
        indices = (rows, cols) if plane is None else (np.full(rows.shape, plane, np.intp), rows, cols)
        self.layer.data_setitem(indices, values)
        return len(rows)
