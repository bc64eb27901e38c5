"""The annotator's "Segment everything" panel: automatic segmentation into a new labels layer.

The mode (auto / AIS / APG / AMG) picks the method; "auto" — the default — runs the instance decoder's
fast AIS when the model carries a decoder and the prompt grid (AMG) otherwise. The run goes through a
napari ``thread_worker`` (progress bar, Cancel button); the result is added as a NEW labels layer
("SAM automatic", "SAM automatic [1]", …) — existing labels layers are never touched. The embeddings
the annotator already holds for the image are reused.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QToolButton,
    QWidget,
)

from .._napari.automatic import (
    AutomaticJob,
    AutomaticSettings,
    add_result_layer,
    decoder_values,
    describe,
    plan_automatic,
    preset_values,
)
from .._napari.prompts import image_spatial_shape
from ..errors import AnnotatorError
from ._messages import failure_text, reported
from ._worker import start_steps
from .embeddings import object_size_box

#: (shown text, mode) of the mode choices; the first is the default
MODES: tuple[tuple[str, str], ...] = (
    ("auto (AIS with a decoder, else AMG)", "auto"),
    ("AIS: decoder + watershed (fast)", "ais"),
    ("APG: decoder seeds as prompts", "apg"),
    ("AMG: grid of prompts (slow)", "amg"),
)
#: (shown text, preset) of the preset choices
PRESETS: tuple[tuple[str, str | None], ...] = (
    ("auto (nuclei for nano)", "auto"),
    ("nuclei", "nuclei"),
    ("none (official defaults)", None),
)
CURRENT_SLICE = "current slice"
WHOLE_STACK = "whole stack"


@dataclass(frozen=True)
class _Refused:
    """What a run returns when it stopped for a reason the user can fix (e.g. AIS on a model without a
    decoder): napari relays an error raised in a worker as a crash, this is shown as a warning."""

    error: AnnotatorError


def _refusing(steps: Generator[tuple[int, int], None, Any]) -> Generator[tuple[int, int], None, Any]:
    """``steps``, with an :class:`AnnotatorError` returned as :class:`_Refused` instead of raised."""
    try:
        return (yield from steps)
    except AnnotatorError as exc:
        return _Refused(exc)


class AutomaticPanel(QWidget):
    """Controls of automatic segmentation for an :class:`~napari_sam._widgets.annotator.AnnotatorWidget`.

    Drives :mod:`napari_sam._napari.automatic`. Choosing a preset fills the prompt grid's option boxes
    with its values; choosing AIS or APG fills the minimum size with that mode's default; the values in
    the boxes are what a run uses. The prompt grid's controls (preset and its numbers) are enabled when
    the mode can be AMG ("auto", "AMG"), the decoder's (thresholds, minimum size) for AIS and APG.

    Attributes
    ----------
    mode_combo
        The method: auto, AIS, APG or AMG.
    run_button
        "Segment everything" (the annotator's ``everything_button``).
    scope_combo
        3D images: the slice on screen or the whole stack.
    link_check
        Whole stack: link the objects of neighbouring slices into 3D objects.
    object_size_spin
        The objects' diameter in pixels (0: "auto", the model's choice): the same value as the
        embedding panel's box (each follows the other), since the run uses the annotator's embeddings.
    result_layer
        The labels layer the last run added (None before).
    """

    def __init__(self, owner: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.owner = owner
        self.worker: Any = None
        self.job: AutomaticJob | None = None
        self.result_layer: Any = None
        self._build_options()
        self._build_scope()
        self._build_run_controls()
        self._build_tuning()
        self._build_layout()
        self.run_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(self.cancel)
        self.preset_combo.currentIndexChanged.connect(self.apply_preset)
        self.mode_combo.currentIndexChanged.connect(self._on_mode)
        self.scope_combo.currentIndexChanged.connect(self.refresh)
        owner.embedding.model_combo.currentTextChanged.connect(self._on_model)
        shared = owner.embedding.object_size_spin
        self.object_size_spin.setValue(shared.value())
        self.object_size_spin.valueChanged.connect(shared.setValue)
        shared.valueChanged.connect(self.object_size_spin.setValue)
        owner.embedding.image_combo.currentIndexChanged.connect(self.refresh)
        self.apply_preset()
        self._on_mode()
        self.refresh()

    def _build_options(self) -> None:
        """The mode, the preset choice and the four numbers it fills in, and the decoder's four numbers."""
        self.mode_combo = QComboBox()
        self.mode_combo.addItems([text for text, _ in MODES])
        self.mode_combo.setToolTip(
            "AIS: the model's instance decoder predicts foreground and distances, a watershed splits "
            "them (fast; needs a model with a decoder)\nAPG: the watershed's seeds prompt SAM's mask "
            "decoder (needs a decoder)\nAMG: a grid of point prompts (any model; slow)\nauto: AIS when "
            "the model has a decoder, else AMG"
        )
        self.preset_combo = QComboBox()
        self.preset_combo.addItems([text for text, _ in PRESETS])
        self.preset_combo.setToolTip(
            "option set: 'nuclei' suits the shipped nano model on fluorescence nuclei"
        )
        self.points_spin = QSpinBox()
        self.points_spin.setRange(1, 256)
        self.points_spin.setToolTip(
            "grid of n × n point prompts (points_per_side): fewer is faster, more finds smaller objects"
        )
        self.iou_spin = QDoubleSpinBox()
        self.stability_spin = QDoubleSpinBox()
        for spin in (self.iou_spin, self.stability_spin):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
        self.iou_spin.setToolTip("keep masks whose predicted IoU is above this (pred_iou_thresh)")
        self.stability_spin.setToolTip(
            "keep masks whose stability score is at least this (stability_score_thresh)"
        )
        self.min_region_spin = QSpinBox()
        self.min_region_spin.setRange(0, 10**7)
        self.min_region_spin.setToolTip(
            "fill holes and remove islands smaller than this many pixels (min_mask_region_area; 0 = off)"
        )
        self.foreground_spin = QDoubleSpinBox()
        self.center_spin = QDoubleSpinBox()
        self.boundary_spin = QDoubleSpinBox()
        for spin in (self.foreground_spin, self.center_spin, self.boundary_spin):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
        self.foreground_spin.setToolTip(
            "AIS / APG: a pixel is foreground where the decoder's foreground map is above this"
        )
        self.center_spin.setToolTip("AIS / APG: seeds need a centre distance below this")
        self.boundary_spin.setToolTip("AIS / APG: seeds need a boundary distance below this")
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(0, 10**7)
        self.min_size_spin.setToolTip("AIS / APG: objects with fewer pixels are removed")
        defaults = decoder_values("ais")
        self.foreground_spin.setValue(float(defaults["foreground_threshold"]))
        self.center_spin.setValue(float(defaults["center_distance_threshold"]))
        self.boundary_spin.setValue(float(defaults["boundary_distance_threshold"]))
        self.min_size_spin.setValue(int(defaults["min_size"]))

    def _build_scope(self) -> None:
        """3D images: the slice on screen or the whole stack, and linking in 3D."""
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([CURRENT_SLICE, WHOLE_STACK])
        self.scope_combo.setToolTip("3D stacks: segment the slice on screen, or every slice")
        self.link_check = QCheckBox("link in 3D")
        self.link_check.setChecked(True)
        self.link_check.setToolTip(
            "whole stack: objects overlapping on neighbouring slices become one 3D object "
            "(objects seen on one slice only are dropped); off: one label per object of each slice"
        )

    def _build_run_controls(self) -> None:
        self.object_size_spin = object_size_box()
        self.object_size_spin.setToolTip(
            f"{self.object_size_spin.toolTip()}\n(the same box as the embeddings' object size)"
        )
        self.run_button = QPushButton("Segment everything")
        self.run_button.setToolTip("automatic segmentation of the image into a new labels layer")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setVisible(False)

    def _build_tuning(self) -> None:
        """The preset's four numbers and the decoder's sit in a fold ("tuning"), closed by default: the
        dock stays compact."""
        self.tuning_button = QToolButton()
        self.tuning_button.setText("tuning")
        self.tuning_button.setCheckable(True)
        self.tuning_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.tuning_button.setArrowType(Qt.ArrowType.RightArrow)
        self.tuning_button.setToolTip("the preset's grid density and filters; the decoder's thresholds")
        self.tuning = QWidget()
        tuning = QGridLayout(self.tuning)
        tuning.setContentsMargins(0, 0, 0, 0)
        spins: tuple[tuple[str, QAbstractSpinBox, str, QAbstractSpinBox], ...] = (
            ("points / side", self.points_spin, "foreground", self.foreground_spin),
            ("min area", self.min_region_spin, "centre dist.", self.center_spin),
            ("min IoU", self.iou_spin, "boundary dist.", self.boundary_spin),
            ("min stability", self.stability_spin, "min size", self.min_size_spin),
        )
        self.grid_controls: list[QWidget] = [self.preset_combo]
        self.decoder_controls: list[QWidget] = []
        for row, (grid_text, grid_field, decoder_text, decoder_field) in enumerate(spins):
            grid_label, decoder_label = QLabel(grid_text), QLabel(decoder_text)
            tuning.addWidget(grid_label, row, 0)
            tuning.addWidget(grid_field, row, 1)
            tuning.addWidget(decoder_label, row, 2)
            tuning.addWidget(decoder_field, row, 3)
            self.grid_controls += [grid_label, grid_field]
            self.decoder_controls += [decoder_label, decoder_field]
        tuning.setColumnStretch(1, 1)
        tuning.setColumnStretch(3, 1)
        self.tuning.setVisible(False)
        self.tuning_button.toggled.connect(self._show_tuning)

    def _build_layout(self) -> None:
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("mode"), 0, 0)
        layout.addWidget(self.mode_combo, 0, 1, 1, 3)
        preset_label = QLabel("preset")
        self.grid_controls.append(preset_label)
        layout.addWidget(preset_label, 1, 0)
        layout.addWidget(self.preset_combo, 1, 1, 1, 2)
        layout.addWidget(self.tuning_button, 1, 3)
        layout.addWidget(self.tuning, 2, 0, 1, 4)
        layout.addWidget(QLabel("3D"), 3, 0)
        layout.addWidget(self.scope_combo, 3, 1)
        layout.addWidget(self.link_check, 3, 2, 1, 2)
        layout.addWidget(QLabel("object size"), 4, 0)
        layout.addWidget(self.object_size_spin, 4, 1)
        layout.addWidget(self.run_button, 5, 0, 1, 3)
        layout.addWidget(self.cancel_button, 5, 3)
        layout.addWidget(self.progress, 6, 0, 1, 4)
        layout.setColumnStretch(1, 1)

    def _show_tuning(self, shown: bool) -> None:
        self.tuning.setVisible(shown)
        self.tuning_button.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    # ------------------------------------------------------------------ options
    def mode(self) -> str:
        """The chosen mode: ``"auto"``, ``"ais"``, ``"apg"`` or ``"amg"``."""
        return MODES[max(self.mode_combo.currentIndex(), 0)][1]

    def set_mode(self, mode: str) -> None:
        """Choose ``mode`` (``"auto"``, ``"ais"``, ``"apg"`` or ``"amg"``)."""
        self.mode_combo.setCurrentIndex([m for _, m in MODES].index(mode))

    def _on_mode(self, *_: Any) -> None:
        """Enable the controls the mode uses; AIS / APG: show that mode's default minimum size."""
        mode = self.mode()
        if mode in ("ais", "apg"):
            self.min_size_spin.setValue(int(decoder_values(mode)["min_size"]))
        for control in self.grid_controls:
            control.setEnabled(mode in ("auto", "amg"))
        for control in self.decoder_controls:
            control.setEnabled(mode in ("ais", "apg"))

    def preset(self) -> str | None:
        return PRESETS[max(self.preset_combo.currentIndex(), 0)][1]

    def set_preset(self, preset: str | None) -> None:
        """Choose ``preset`` (``"auto"``, ``"nuclei"`` or None) and show its values."""
        index = [p for _, p in PRESETS].index(preset)
        if index == self.preset_combo.currentIndex():
            self.apply_preset()
        self.preset_combo.setCurrentIndex(index)

    def apply_preset(self, *_: Any) -> None:
        """Fill the option boxes with the chosen preset's values (for the chosen model)."""
        values = preset_values(self.preset(), self.owner.embedding.settings().model)
        self.points_spin.setValue(int(values["points_per_side"]))
        self.iou_spin.setValue(float(values["pred_iou_thresh"]))
        self.stability_spin.setValue(float(values["stability_score_thresh"]))
        self.min_region_spin.setValue(int(values["min_mask_region_area"]))

    def _on_model(self, *_: Any) -> None:
        if self.preset() == "auto":
            self.apply_preset()

    def settings(self) -> AutomaticSettings:
        """The mode and the options shown for it (the other mode family's boxes are left out)."""
        mode = self.mode()
        whole_stack = self.scope_combo.isEnabled() and self.scope_combo.currentText() == WHOLE_STACK
        link_3d = self.link_check.isChecked()
        if mode in ("ais", "apg"):
            return AutomaticSettings(
                mode=mode,
                foreground_threshold=self.foreground_spin.value(),
                center_distance_threshold=self.center_spin.value(),
                boundary_distance_threshold=self.boundary_spin.value(),
                min_size=self.min_size_spin.value(),
                whole_stack=whole_stack,
                link_3d=link_3d,
            )
        return AutomaticSettings(
            mode=mode,
            preset=self.preset(),
            points_per_side=self.points_spin.value(),
            pred_iou_thresh=self.iou_spin.value(),
            stability_score_thresh=self.stability_spin.value(),
            min_mask_region_area=self.min_region_spin.value(),
            whole_stack=whole_stack,
            link_3d=link_3d,
        )

    def refresh(self, *_: Any) -> None:
        """Enable the 3D choices for stacks only, and the button when not running."""
        layer = self.owner.embedding.image_layer()
        is_3d = False
        if layer is not None:
            try:
                is_3d = len(image_spatial_shape(layer)) == 3
            except AnnotatorError:
                is_3d = False
        self.scope_combo.setEnabled(is_3d)
        self.link_check.setEnabled(is_3d and self.scope_combo.currentText() == WHOLE_STACK)
        self.run_button.setEnabled(layer is not None and not self.is_running())

    # ------------------------------------------------------------------ running
    def is_running(self) -> bool:
        return self.worker is not None

    def start(self) -> Any:
        """Segment the image (slice / stack) in a worker; returns the worker (None when nothing started:
        a message says why)."""
        if self.is_running():
            return None
        owner = self.owner
        ann = owner.annotator
        with reported(owner.viewer, "Segment everything"):
            if ann.image_layer is None:
                raise AnnotatorError("no image layer: open an image first")
            if owner.embedding.is_running():
                raise AnnotatorError("embeddings are being computed: wait for them (or cancel) first")
            ann.settings = owner.embedding.settings()
            self.refresh()
            settings = self.settings()
            plane = None if settings.whole_stack else ann.current_plane()
            job = plan_automatic(ann.image_layer, ann.settings, settings, plane)
            self.job = job
            self.progress.setRange(0, 0)
            where = (
                "every slice of " if settings.whole_stack else ("" if plane is None else f"slice {plane} of ")
            )
            owner.say(f"segmenting everything in {where}'{ann.image_layer.name}' …", popup=False)
            return start_steps(
                self,
                _refusing(job.steps()),
                on_done=self._on_done,
                on_error=self._on_error,
                on_finished=self._on_finished,
                on_aborted=self._on_aborted,
            )
        return None

    def cancel(self) -> None:
        """Stop after the current decoder batch; no layer is added."""
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.setEnabled(False)

    def _on_done(self, output: Any) -> None:
        owner = self.owner
        if self.job is None or output is None:
            return
        if isinstance(output, _Refused):
            self._on_error(output.error)
            return
        with reported(owner.viewer, "Segment everything"):
            preview = owner.annotator.preview_layer
            self.result_layer = add_result_layer(owner.viewer, self.job, output, below=preview)
            owner.say(describe(output, self.result_layer.name))

    def _on_aborted(self) -> None:
        self.owner.say("segment everything cancelled: no layer added", popup=False)

    def _on_error(self, exc: BaseException) -> None:
        self.owner.say(failure_text("segment everything", exc), warning=True)

    def _on_finished(self) -> None:
        self.worker = None
        self.job = None
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)
        self.refresh()
