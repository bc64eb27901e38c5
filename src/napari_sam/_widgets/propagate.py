"""The annotator's "Propagate" panel: follow the objects of the current slice up and down a stack.

The work runs in a napari ``thread_worker`` (progress bar, Cancel button); the result is written into
the annotator's target labels as one undo step, never over labels painted meanwhile.

The "model" row picks how: SAM 1 (the annotator's model, slice-by-slice chains) or a SAM 2 model (a
name or a weights file) that follows the objects with its memory. "time-lapse (add tracks)" adds a
Tracks layer of the propagated objects' centres beside the labels. After a SAM 2 run, "Correct" takes
the annotator's points on the current slice as clicks that fix the labels layer's selected label there
(positive: part of it, negative: not), runs the same propagation again with them, and replaces what the
earlier run wrote (one undo step; pixels painted since are kept).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .._napari.prompts import image_spatial_shape
from .._napari.propagation import (
    memory_model,
    memory_steps,
    propagation_message,
    propagation_steps,
    rewrite_propagated,
    stack_embeddings,
    write_propagated,
)
from ..engine.types import PropagationOptions
from ..errors import AnnotatorError
from ._messages import failure_text, reported
from ._worker import start_steps

#: The model choice meaning "SAM 1: the annotator's model" (any other text names a SAM 2 model or file).
SAM1_CHOICE = "SAM 1 (annotator's model)"


class PropagatePanel(QWidget):
    """Controls of 3D propagation for an :class:`~napari_sam._widgets.annotator.AnnotatorWidget`.

    Attributes
    ----------
    first, last
        The slice range (inclusive) to propagate within.
    threshold
        Stop an object when its predicted IoU falls below this.
    trim
        Trim the dim out-of-focus halo from propagated masks (the engine's default ``min_intensity``;
        off: 0). SAM 1 only.
    model_combo
        :data:`SAM1_CHOICE`, or a SAM 2 name / weights file (editable).
    memory_model
        A loaded SAM 2 model to use instead of the combo's text (None: the combo decides).
    timelapse
        Add a Tracks layer of the propagated objects (the stack's first axis is time).
    """

    def __init__(self, owner: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.owner = owner
        self.worker: Any = None
        self._before: np.ndarray | None = None
        self.run_button = QPushButton("Propagate objects of this slice")
        self.run_button.setToolTip(
            "follow every object of the current slice of the target labels up and down the stack"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.correct_button = QPushButton("Correct")
        self.correct_button.setToolTip(
            "SAM 2: the points on this slice fix the selected label here (positive / negative clicks); "
            "the last propagation runs again with them and its labels are replaced"
        )
        self.correct_button.setEnabled(False)
        #: the last SAM 2 run: its seed slice, range, target layer, where labels were before it, where
        #: it (and its corrections) wrote and the values written
        self._last_memory: dict[str, Any] | None = None
        self._run: dict[str, Any] = {}
        self.first = QSpinBox()
        self.last = QSpinBox()
        for box in (self.first, self.last):
            box.setRange(0, 0)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(0.0, 1.0)
        self.threshold.setSingleStep(0.05)
        self.threshold.setValue(0.5)
        self.threshold.setToolTip("stop an object where its predicted IoU falls below this")
        self.trim = QCheckBox("trim dim halo")
        self.trim.setChecked(True)
        self.trim.setToolTip(
            "drop the pixels of each propagated mask that are less than half as bright as the object on "
            "its seed slice (relative to its surroundings): the blurred halo near an object's end. "
            "Turn off where objects are not defined by their brightness."
        )
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.memory_model: Any = None
        self._build_model_choice()
        self.timelapse = QCheckBox("time-lapse (add tracks)")
        self.timelapse.setToolTip(
            "the stack's first axis is time: add a Tracks layer through the centres of the propagated objects"
        )
        self._used_prompts = False

        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.browse_button)
        layout.addRow("model", model_row)
        span = QHBoxLayout()
        span.addWidget(self.first)
        span.addWidget(self.last)
        layout.addRow("slices from / to", span)
        layout.addRow("stop below IoU", self.threshold)
        layout.addRow(self.trim)
        layout.addRow(self.timelapse)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout.addRow(buttons)
        layout.addRow(self.correct_button)  # a row of its own: the panel keeps its width
        layout.addRow(self.progress)

        self.run_button.clicked.connect(self.start)
        self.correct_button.clicked.connect(self.start_correction)
        self.cancel_button.clicked.connect(self.cancel)
        owner.embedding.image_combo.currentIndexChanged.connect(self.refresh)
        self._update_model_options()
        self.refresh()

    def _build_model_choice(self) -> None:
        from ..model import SAM2_CONFIGS

        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        self.model_combo.addItems([SAM1_CHOICE, *SAM2_CONFIGS])
        self.model_combo.setToolTip(
            "SAM 1: the annotator's model, slice by slice; a SAM 2.1 model (name or weights file) follows "
            "the objects with its memory — the slice's labels keep their ids, its uncommitted prompts "
            "become new objects"
        )
        self.browse_button = QPushButton("…")
        self.browse_button.setToolTip("choose SAM 2 weights (.pt / .pth / .safetensors)")
        self.browse_button.setMaximumWidth(30)
        self.browse_button.clicked.connect(self._browse)
        self.model_combo.currentTextChanged.connect(self._update_model_options)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "SAM 2 weights", "", "weights (*.pt *.pth *.safetensors);;all files (*)"
        )
        if path:
            self.model_combo.setCurrentText(path)

    def uses_memory(self) -> bool:
        """Whether a SAM 2 model (memory propagation) is chosen."""
        text = self.model_combo.currentText().strip()
        return self.memory_model is not None or (bool(text) and text != SAM1_CHOICE)

    def _update_model_options(self, *_: Any) -> None:
        sam1 = not self.uses_memory()
        self.threshold.setEnabled(sam1)
        self.trim.setEnabled(sam1)

    def refresh(self, *_: Any) -> None:
        """Fit the slice range to the current image; enabled for 3D images only."""
        layer = self.owner.embedding.image_layer()  # the annotator may not have caught up yet
        n = 0
        if layer is not None:
            try:
                spatial = image_spatial_shape(layer)
            except AnnotatorError:
                spatial = ()
            n = spatial[0] if len(spatial) == 3 else 0
        for box in (self.first, self.last):
            box.setRange(0, max(n - 1, 0))
        self.first.setValue(0)
        self.last.setValue(max(n - 1, 0))
        self.run_button.setEnabled(n > 0 and not self.is_running())
        self.correct_button.setEnabled(
            n > 0 and not self.is_running() and self._last_memory is not None and self.uses_memory()
        )

    def is_running(self) -> bool:
        return self.worker is not None

    def start(self) -> Any:
        """Propagate the target labels' objects on the current slice; returns the worker (None on error)."""
        if self.is_running():
            return None
        owner = self.owner
        ann = owner.annotator
        with reported(owner.viewer, "Propagate"):
            if ann.image_layer is None:
                raise AnnotatorError("no image layer: open a 3D image first")
            self.refresh()
            plane = ann.current_plane()
            if plane is None:
                raise AnnotatorError("propagation needs a 3D image (a stack)")
            ann.settings = owner.embedding.settings()
            target = ann.ensure_target()
            before = np.array(target.data, copy=True)
            first, last = sorted((self.first.value(), self.last.value()))
            if not first <= plane <= last:
                raise AnnotatorError(f"the current slice {plane} is outside the range {first}–{last}")
            self._used_prompts = False
            self._run = {"plane": plane, "z_range": (first, last + 1), "target": target, "correct": False}
            self._last_memory = None  # a new run: corrections fix it once it is done
            if self.uses_memory():
                steps = self._memory_steps(before, plane, (first, last + 1))
            else:
                volume = stack_embeddings(ann.image_layer, ann.settings)
                data = ann.image_layer.data[0] if ann.image_layer.multiscale else ann.image_layer.data
                steps = propagation_steps(
                    volume,
                    before,
                    plane,
                    z_range=(first, last + 1),
                    iou_threshold=self.threshold.value(),
                    min_intensity=PropagationOptions.min_intensity if self.trim.isChecked() else 0.0,
                    image=data,
                )
            next(steps)  # checks the seeds now (clear errors on the UI thread), yields (0, total)
            self._before = before
            self.progress.setValue(0)
            owner.say(f"propagating the objects of slice {plane} …", popup=False)
            return start_steps(
                self, steps, on_done=self._on_done, on_error=self._on_error, on_finished=self._on_finished
            )
        return None

    def start_correction(self) -> Any:
        """Run the last SAM 2 propagation again with the points on the current slice as correction
        clicks for the selected label; returns the worker (None on error)."""
        from ..engine.volume.memory_corrections import Correction

        if self.is_running():
            return None
        owner, last = self.owner, self._last_memory
        ann = owner.annotator
        with reported(owner.viewer, "Correct"):
            if last is None or not self.uses_memory():
                raise AnnotatorError("propagate with a SAM 2 model first; corrections fix that run")
            target = ann.target_layer
            if target is not last["target"]:
                raise AnnotatorError(f"corrections fix the last run's labels layer '{last['target'].name}'")
            plane = ann.current_plane()
            prompts = ann.prompts(plane)
            if len(prompts.boxes) or not len(prompts.points):
                raise AnnotatorError("place points (no boxes) on this slice: each a correction click")
            label = int(target.selected_label)
            if label not in last["objects"]:
                raise AnnotatorError(
                    f"select the label to correct in '{target.name}': one of {sorted(last['objects'])}, "
                    f"not {label}"
                )
            fix = Correction(label, int(plane), prompts.points, prompts.point_labels)
            current = np.array(target.data, copy=True)
            sam = memory_model(self._model_choice(), ann.settings.device)
            steps = memory_steps(
                ann.image_layer, sam, current, last["plane"], z_range=last["z_range"], corrections=[fix]
            )
            next(steps)  # checks now, on the UI thread
            self._run = {**last, "correct": True}
            self._before = last["labelled_before"]
            self._used_prompts = True
            self.progress.setValue(0)
            owner.say(f"correcting label {label} on slice {plane} …", popup=False)
            return start_steps(
                self, steps, on_done=self._on_done, on_error=self._on_error, on_finished=self._on_finished
            )
        return None

    def _model_choice(self) -> Any:
        return self.memory_model if self.memory_model is not None else self.model_combo.currentText().strip()

    def _memory_steps(self, before: np.ndarray, plane: int, z_range: tuple[int, int]) -> Any:
        """SAM 2 steps: the slice's labels and the annotator's prompts on it, followed with memory."""
        ann = self.owner.annotator
        sam = memory_model(self._model_choice(), ann.settings.device)
        prompts = ann.prompts(plane)
        self._used_prompts = not prompts.empty
        return memory_steps(ann.image_layer, sam, before, plane, prompts=prompts, z_range=z_range)

    def cancel(self) -> None:
        """Stop after the current slice; nothing is written."""
        if self.worker is not None:
            self.worker.quit()
            self.owner.say("propagation cancelled: nothing written", popup=False)

    def _on_done(self, result: Any) -> None:
        from ..engine.volume.memory_propagation import MemoryPropagationResult

        owner = self.owner
        target = owner.annotator.target_layer
        if target is None or self._before is None:
            return
        with reported(owner.viewer, "Propagate"):
            run = self._run
            layer_before = np.array(target.data, copy=True)
            if run.get("correct"):
                written = rewrite_propagated(
                    target, run["labelled_before"], run["wrote"], run["written"], result.labels
                )
            else:
                written = write_propagated(target, self._before, result.labels)
            if isinstance(result, MemoryPropagationResult):  # a SAM 2 run: correctable
                # kept small (bool maps and the written values, not copies of the layer): where the
                # runs wrote and what, so that a correction replaces those pixels and never others
                now = np.asarray(target.data)
                wrote = (now != layer_before) | run.get("wrote", False)
                labelled = run["labelled_before"] if run.get("correct") else self._before != 0
                self._last_memory = {
                    **run,
                    "labelled_before": labelled,
                    "wrote": wrote,
                    "written": now[wrote],
                    "objects": set(result.seeds) | set(run.get("objects", ())),
                }
            if self._used_prompts:
                owner.annotator.clear_prompts()  # they are objects of the labels now
            if self.timelapse.isChecked():
                self._add_tracks(target, result)
            empty = bool(getattr(result, "empty_objects", None))
            text = propagation_message(result, written, target.name)
            if run.get("correct"):
                text = f"corrected and propagated again: {written} pixels changed in '{target.name}'"
            owner.say(text, warning=empty)

    def _add_tracks(self, target: Any, result: Any) -> Any:
        """Add (or update) the Tracks layer of the propagated objects beside ``target``."""
        from .._napari.tracks import tracks_from_labels

        data = tracks_from_labels(np.asarray(target.data), ids=result.seeds)
        if not len(data):
            return None
        name = f"{target.name} tracks"
        layers = self.owner.viewer.layers
        if name in layers:
            layers[name].data = data
            return layers[name]
        return self.owner.viewer.add_tracks(data, name=name, scale=target.scale, translate=target.translate)

    def _on_error(self, exc: BaseException) -> None:
        self.owner.say(failure_text("propagation", exc), warning=True)

    def _on_finished(self) -> None:
        self.worker = None
        self._before = None
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.refresh()
