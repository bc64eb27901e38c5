"""The annotator's "Propagate" panel: follow the objects of the current slice up and down a stack.

The work runs in a napari ``thread_worker`` (progress bar, Cancel button); the result is written into
the annotator's target labels as one undo step, never over labels painted meanwhile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from .._napari.prompts import image_spatial_shape
from .._napari.propagation import (
    propagation_message,
    propagation_steps,
    stack_embeddings,
    write_propagated,
)
from ..engine.types import PropagationOptions
from ..errors import AnnotatorError
from ._messages import failure_text, reported
from ._worker import start_steps


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
        off: 0).
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

        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        span = QHBoxLayout()
        span.addWidget(self.first)
        span.addWidget(self.last)
        layout.addRow("slices from / to", span)
        layout.addRow("stop below IoU", self.threshold)
        layout.addRow(self.trim)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        layout.addRow(buttons)
        layout.addRow(self.progress)

        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        owner.embedding.image_combo.currentIndexChanged.connect(self.refresh)
        self.refresh()

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

    def cancel(self) -> None:
        """Stop after the current slice; nothing is written."""
        if self.worker is not None:
            self.worker.quit()
            self.owner.say("propagation cancelled: nothing written", popup=False)

    def _on_done(self, result: Any) -> None:
        owner = self.owner
        target = owner.annotator.target_layer
        if target is None or self._before is None:
            return
        with reported(owner.viewer, "Propagate"):
            written = write_propagated(target, self._before, result.labels)
            owner.say(propagation_message(result, written, target.name), warning=bool(result.empty_objects))

    def _on_error(self, exc: BaseException) -> None:
        self.owner.say(failure_text("propagation", exc), warning=True)

    def _on_finished(self) -> None:
        self.worker = None
        self._before = None
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.refresh()
