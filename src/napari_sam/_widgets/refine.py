"""The annotator's "Refine labels" panel: correct the labels of another tool (Cellpose, StarDist …).

Pick the labels layer, click "Pick label" and then a label in the viewer, add positive / negative
points in *SAM points* (the preview shows the refined label), then "Commit refined label": the label
keeps its id, one undo step of that layer. "Refine all labels" re-segments every label of the slice
in a worker (progress bar, Cancel), written back as one undo step.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QComboBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from .._napari.refine import LabelRefiner
from ..errors import AnnotatorError
from ._messages import failure_text, reported
from ._worker import start_steps


class RefinePanel(QWidget):
    """Controls of label refinement for an :class:`~napari_sam._widgets.annotator.AnnotatorWidget`.

    Drives :class:`napari_sam._napari.refine.LabelRefiner` (``self.refiner``).
    """

    def __init__(self, owner: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.owner = owner
        self.refiner = LabelRefiner(owner.annotator)
        self.worker: Any = None
        self._plane: int | None = None
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("the labels layer whose labels are refined (e.g. from Cellpose)")
        self.pick_button = QPushButton("Pick label")
        self.pick_button.setToolTip("then click on a label in the viewer")
        self.selected_label = QLabel("no label picked")
        self.preview_button = QPushButton("Preview")
        self.commit_button = QPushButton("Commit refined label")
        self.commit_button.setToolTip("write the refined mask back under the same id (undoable)")
        self.run_button = QPushButton("Refine all labels")
        self.run_button.setToolTip("re-segment every label of this slice of the layer (undoable)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)

        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("labels to refine", self.layer_combo)
        row = QHBoxLayout()
        row.addWidget(self.pick_button)
        row.addWidget(self.selected_label, 1)
        layout.addRow(row)
        row = QHBoxLayout()
        row.addWidget(self.preview_button)
        row.addWidget(self.commit_button, 2)
        layout.addRow(row)
        row = QHBoxLayout()
        row.addWidget(self.run_button, 2)
        row.addWidget(self.cancel_button, 1)
        layout.addRow(row)
        layout.addRow(self.progress)

        self.pick_button.clicked.connect(self.start_pick)
        self.preview_button.clicked.connect(self.preview)
        self.commit_button.clicked.connect(self.commit)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.layer_combo.activated.connect(self._on_layer)
        events = owner.viewer.layers.events
        for event in (events.inserted, events.removed, events.changed):
            event.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ layer and label
    def refresh(self, *_: Any) -> None:
        """Refill the list of labels layers (the annotator's preview left out); keep the choice."""
        from .._napari.annotator import PREVIEW_NAME

        names = [layer.name for layer in self.owner.target_choices() if layer.name != PREVIEW_NAME]
        current = self.refiner.layer.name if self.refiner.layer is not None else None
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        self.layer_combo.addItems(names)
        if current in names:
            self.layer_combo.setCurrentText(current)
        self.layer_combo.blockSignals(False)

    def _on_layer(self, *_: Any) -> None:
        with reported(self.owner.viewer, "Refine"):
            self.use_layer()

    def use_layer(self) -> Any:
        """The labels layer chosen in the list, set on the refiner (and its image on the annotator)."""
        name = self.layer_combo.currentText()
        if not name:
            raise AnnotatorError("no labels layer to refine: open one (e.g. Cellpose's labels)")
        layer = self.owner.viewer.layers[name]
        self.refiner.set_layer(layer)
        self._show_selected()
        return layer

    def set_layer(self, layer: Any) -> None:
        """Refine ``layer``'s labels."""
        self.refresh()
        self.layer_combo.setCurrentText(layer.name)
        self.use_layer()

    def start_pick(self) -> None:
        """Make the labels layer active; the next click on it picks the label to refine."""
        with reported(self.owner.viewer, "Pick label"):
            layer = self.use_layer()
            if self._pick not in layer.mouse_drag_callbacks:
                layer.mouse_drag_callbacks.append(self._pick)
            layer.mode = "pan_zoom"
            self.owner.viewer.layers.selection.active = layer
            self.owner.say("click on the label to refine", popup=False)

    def _pick(self, layer: Any, event: Any) -> None:
        """One click on the labels layer: select the label there, then back to the points."""
        if layer.mode != "pan_zoom":
            return
        with reported(self.owner.viewer, "Pick label"):
            self.pick(layer.world_to_data(event.position))
        if self._pick in layer.mouse_drag_callbacks:
            layer.mouse_drag_callbacks.remove(self._pick)
        self.owner.select_points()

    def pick(self, position: Any) -> int:
        """Select the label at ``position`` (the layer's data coordinates) and preview it."""
        label = self.refiner.select_at(position)
        self._show_selected()
        self.preview()
        return label

    def _show_selected(self) -> None:
        label = self.refiner.selected
        self.selected_label.setText("no label picked" if label is None else f"label {label}")

    # ------------------------------------------------------------------ one label
    def preview(self) -> None:
        """Show the refined selected label (with the correction points of the slice)."""
        with reported(self.owner.viewer, "Refine"):
            self._ensure_embeddings()
            result = self.refiner.update_preview()
            score = result.scores.get(self.refiner.selected)
            said = "empty: nothing would change" if score is None else f"predicted IoU {score:.2f}"
            split = [new for new, source in result.split_off.items() if source == self.refiner.selected]
            if split:
                said += f"; the other object becomes label {', '.join(map(str, split))}"
            self.owner.say(f"refined label {self.refiner.selected}: {said}", popup=False)

    def commit(self) -> int:
        """Write the refined label back under its id; returns the pixels changed (0 on error)."""
        changed = 0
        with reported(self.owner.viewer, "Commit refined label"):
            self._ensure_embeddings()
            changed = self.refiner.commit()
            self.owner.say(f"label {self.refiner.selected} refined: {changed} pixels changed (Undo reverts)")
        return changed

    def _ensure_embeddings(self) -> None:
        """An AnnotatorError (and the embedding started) when the slice's embeddings are missing."""
        ann = self.owner.annotator
        ann.settings = self.owner.embedding.settings()
        if self.refiner.layer is None:
            self.use_layer()
        plane = ann.current_plane()
        if ann.embeddings(plane) is None:
            if not self.owner.embedding.is_running():
                self.owner.embedding.set_image_layer(ann.image_layer)
                self.owner.embedding.start([plane], ann.image_layer)
            raise AnnotatorError("computing the embeddings of this image first; try again when done")

    # ------------------------------------------------------------------ every label
    def is_running(self) -> bool:
        return self.worker is not None

    def start(self) -> Any:
        """Refine every label of the current slice in a worker; returns it (None on error)."""
        if self.is_running():
            return None
        with reported(self.owner.viewer, "Refine all labels"):
            self._ensure_embeddings()
            self._plane = self.owner.annotator.current_plane()
            steps = self.refiner.refine_all_steps(self._plane)
            self.owner.say("refining every label of this slice …", popup=False)
            return start_steps(
                self, steps, on_done=self._on_done, on_error=self._on_error, on_finished=self._on_finished
            )
        return None

    def cancel(self) -> None:
        """Stop after the current batch of labels; nothing is written."""
        if self.worker is not None:
            self.worker.quit()
            self.owner.say("refinement cancelled: nothing written", popup=False)

    def _on_done(self, result: Any) -> None:
        with reported(self.owner.viewer, "Refine all labels"):
            changed = self.refiner.write(result, self._plane)
            kept = f"; kept as given: {sorted(result.skipped)}" if result.skipped else ""
            if result.split_off:
                kept += f"; {len(result.split_off)} new label(s) split off merged labels"
            self.owner.say(
                f"refined {len(result.refined)} labels: {changed} pixels changed (Undo reverts){kept}",
                warning=bool(result.skipped),
            )

    def _on_error(self, exc: BaseException) -> None:
        self.owner.say(failure_text("refinement", exc), warning=True)

    def _on_finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        self.run_button.setEnabled(True)
        self.progress.setVisible(False)
