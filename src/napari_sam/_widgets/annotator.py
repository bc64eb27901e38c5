"""The annotator widget: click points / draw boxes, see the object at once, commit it to a labels layer.

Keys (on the "SAM points" and "SAM boxes" layers): ``C`` commit, ``Shift-C`` clear prompts, ``N`` next
candidate mask, ``Ctrl-Z`` / ``Ctrl-Shift-Z`` undo / redo in the target labels. Click adds a positive
point, Shift-click a negative one (or tick "negative clicks").
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .._napari.annotator import PREVIEW_NAME, Annotator
from .._napari.prompts import LABEL_FEATURE, NEGATIVE, POSITIVE
from ..errors import AnnotatorError
from ._messages import reported, tell, unwrap_viewer
from .automatic import AutomaticPanel
from .embeddings import EmbeddingWidget
from .propagate import PropagatePanel
from .refine import RefinePanel

NEW_LAYER = "(new layer)"
DEBOUNCE_MS = 120

HELP = (
    "<b>click</b>: object point · <b>shift-click</b>: background point · "
    "rectangles in <i>SAM boxes</i> · <b>C</b> commit · <b>shift-C</b> clear · <b>N</b> next mask"
)


class AnnotatorWidget(QWidget):
    """Interactive Segment Anything for one image layer (2D, or a 3D stack slice by slice).

    Drives :class:`napari_sam._napari.annotator.Annotator` (``self.annotator``); embeddings come from the
    embedded :class:`EmbeddingWidget` (``self.embedding``), computed on demand for the slice on screen.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.annotator = Annotator(self.viewer)
        self.embedding = EmbeddingWidget(self.viewer)
        self._preview_worker: Any = None
        self._preview_again = False
        self._preview_warning: str | None = None  # the last prompt problem or note shown as a notification
        self._prompt_note = ""  # what was done to the prompts of the preview (merged boxes)
        self._bound: list[Any] = []
        self._build_prompt_controls()
        self._build_label_controls()
        self._build_extras()
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        groups = (self._embed_group(), self._prompt_group(), self._labels_group())
        self._build_scroll((*groups, self.automatic_group, self.refine_group, self.status_label))
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self.request_preview)
        self._connect()
        self.reset_targets()
        self._on_image()

    # ------------------------------------------------------------------ building
    def _build_prompt_controls(self) -> None:
        """Help, the layer buttons and the prompt options."""
        self.help_label = QLabel(HELP)
        self.help_label.setWordWrap(True)
        self.points_button = QPushButton("Points")
        self.points_button.setToolTip("select the SAM points layer in add mode")
        self.boxes_button = QPushButton("Boxes")
        self.boxes_button.setToolTip("select the SAM boxes layer in rectangle mode")
        self.live_check = QCheckBox("live preview")
        self.live_check.setChecked(True)
        self.negative_check = QCheckBox("negative clicks")
        self.negative_check.setToolTip("clicks add background points (shift-click: the other kind)")
        self.batch_check = QCheckBox("batch: every box / point is an object")

    def _build_label_controls(self) -> None:
        """The target labels layer and what is done to it: commit, clear, next mask, undo, redo."""
        self.overwrite_check = QCheckBox("overwrite existing labels")
        self.overwrite_check.setToolTip("off: pixels that already hold a label keep it")
        self.target_combo = QComboBox()
        self.target_combo.setToolTip("the labels layer committed objects go to")
        self.commit_button = QPushButton("Commit [C]")
        self.clear_button = QPushButton("Clear [⇧C]")
        self.next_button = QPushButton("Next mask [N]")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")

    def _build_extras(self) -> None:
        """Automatic segmentation ("segment everything") and 3D propagation, in one group; refining
        the labels of another tool in another."""
        self.automatic_group = QGroupBox("Automatic and 3D")
        self.extras_layout = QVBoxLayout(self.automatic_group)
        self.automatic_panel = AutomaticPanel(self)
        self.everything_button = self.automatic_panel.run_button
        self.extras_layout.addWidget(self.automatic_panel)
        self.propagate_panel = PropagatePanel(self)
        self.propagate_button = self.propagate_panel.run_button
        self.extras_layout.addWidget(self.propagate_panel)
        self.refine_group = QGroupBox("Refine labels (Cellpose, StarDist …)")
        self.refine_panel = RefinePanel(self)
        QVBoxLayout(self.refine_group).addWidget(self.refine_panel)

    def _embed_group(self) -> QGroupBox:
        group = QGroupBox("Image and embeddings")
        QVBoxLayout(group).addWidget(self.embedding)
        return group

    def _prompt_group(self) -> QGroupBox:
        group = QGroupBox("Prompts")
        layout = QVBoxLayout(group)
        layout.addWidget(self.help_label)
        row = QHBoxLayout()
        row.addWidget(self.points_button)
        row.addWidget(self.boxes_button)
        layout.addLayout(row)
        for check in (self.live_check, self.negative_check, self.batch_check):
            layout.addWidget(check)
        return group

    def _labels_group(self) -> QGroupBox:
        group = QGroupBox("Labels")
        layout = QVBoxLayout(group)
        form = QFormLayout()
        form.addRow("target", self.target_combo)
        layout.addLayout(form)
        layout.addWidget(self.overwrite_check)
        row = QHBoxLayout()
        row.addWidget(self.commit_button, 2)
        row.addWidget(self.clear_button, 1)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.next_button)
        row.addWidget(self.undo_button)
        row.addWidget(self.redo_button)
        layout.addLayout(row)
        return group

    def _build_scroll(self, widgets: tuple[QWidget, ...]) -> None:
        """``widgets`` one below the other in a panel that scrolls vertically, so that the dock never
        makes the window taller than the screen."""
        content = QWidget()
        layout = QVBoxLayout(content)
        for widget in widgets:
            layout.addWidget(widget)
        layout.addStretch(1)
        scroll = self._scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        scroll.setWidget(content)
        self._fit_width()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    def _connect(self) -> None:
        """Buttons, options and the viewer's events to what they do."""
        self.commit_button.clicked.connect(self.commit)
        self.clear_button.clicked.connect(self.clear)
        self.next_button.clicked.connect(self.next_candidate)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.points_button.clicked.connect(self.select_points)
        self.boxes_button.clicked.connect(self.select_boxes)
        self.batch_check.toggled.connect(self._on_batch)
        self.overwrite_check.toggled.connect(self._on_overwrite)
        self.live_check.toggled.connect(self._on_live)
        self.target_combo.activated.connect(self._on_target)
        self.embedding.image_combo.currentIndexChanged.connect(self._on_image)
        self.embedding.computed.connect(lambda _layer: self.schedule_preview())
        # another object size is another geometry: the preview is redone on embeddings made with it
        self.embedding.object_size_spin.valueChanged.connect(self.schedule_preview)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.changed):
            event.connect(self.reset_targets)
        self.viewer.dims.events.current_step.connect(self._on_step)

    # ------------------------------------------------------------------ messages

    def _fit_width(self) -> None:
        """As wide as the panels need (no horizontal scrolling), however high: they scroll vertically."""
        content, scrollbar = self._scroll.widget(), self._scroll.verticalScrollBar()
        if content is None or scrollbar is None:  # not built yet
            return
        self._scroll.setMinimumWidth(content.minimumSizeHint().width() + scrollbar.sizeHint().width() + 4)

    def showEvent(self, event: Any) -> None:
        # napari's style sheet, applied once the dock is shown, widens the panels
        self._fit_width()
        super().showEvent(event)

    def say(self, text: str, *, warning: bool = False, popup: bool = True) -> None:
        """Status line of the widget and viewer (and a notification unless ``popup`` is False)."""
        self.status_label.setText(text)
        if popup:
            tell(self.viewer, text, warning=warning)
        else:
            self.viewer.status = text

    def warn_once(self, text: str) -> None:
        """A warning about the prompts, for the live preview: a notification the first time, then only
        the status line (the preview runs again at every edit)."""
        self.say(text, warning=True, popup=text != self._preview_warning)
        self._preview_warning = text

    # ------------------------------------------------------------------ image and layers
    def _on_image(self, *_: Any) -> None:
        layer = self.embedding.image_layer()
        if layer is None or layer is self.annotator.image_layer:
            return
        try:
            self.annotator.set_image(layer)
        except AnnotatorError as exc:
            self.say(str(exc), warning=True)
            return
        self._connect_layers()
        self.reset_targets()
        self.say(f"annotating '{layer.name}': compute embeddings, then click on an object", popup=False)

    def _connect_layers(self) -> None:
        ann = self.annotator
        for layer in (ann.points_layer, ann.shapes_layer):
            if layer is None or any(layer is b for b in self._bound):
                continue
            layer.events.data.connect(self.schedule_preview)
            layer.bind_key("c", lambda _layer: self.commit(), overwrite=True)
            layer.bind_key("Shift-c", lambda _layer: self.clear(), overwrite=True)
            layer.bind_key("n", lambda _layer: self.next_candidate(), overwrite=True)
            layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
            layer.bind_key("Control-Shift-z", lambda _layer: self.redo(), overwrite=True)
            self._bound.append(layer)
        points = ann.points_layer
        if points is not None and self._choose_kind not in points.mouse_drag_callbacks:
            points.mouse_drag_callbacks.insert(0, self._choose_kind)

    def _choose_kind(self, layer: Any, event: Any) -> None:
        """Before napari's own add-point callback: Shift flips positive ↔ negative for this click."""
        negative = ("Shift" in event.modifiers) != self.negative_check.isChecked()
        layer.feature_defaults = {LABEL_FEATURE: NEGATIVE if negative else POSITIVE}

    def select_points(self) -> None:
        self._select_prompt_layer("Points", "points_layer", "add")

    def select_boxes(self) -> None:
        self._select_prompt_layer("Boxes", "shapes_layer", "add_rectangle")

    def _select_prompt_layer(self, what: str, layer: str, mode: str) -> None:
        """Make the annotator's prompt ``layer`` (an attribute name: the layers are made here when
        missing) the active layer, in ``mode``."""
        with reported(self.viewer, what):
            self.annotator.ensure_layers()
            self._connect_layers()
            prompt_layer = getattr(self.annotator, layer)
            self.viewer.layers.selection.active = prompt_layer
            prompt_layer.mode = mode

    def target_choices(self) -> list[Any]:
        from napari.layers import Labels

        return [
            layer for layer in self.viewer.layers if isinstance(layer, Labels) and layer.name != PREVIEW_NAME
        ]

    def reset_targets(self, *_: Any) -> None:
        """Refill the target list; keep the annotator's target selected."""
        target = self.annotator.target_layer
        if target is not None and target not in self.viewer.layers:
            self.annotator.target_layer = target = None
        names = [NEW_LAYER] + [layer.name for layer in self.target_choices()]
        self.target_combo.blockSignals(True)
        self.target_combo.clear()
        self.target_combo.addItems(names)
        self.target_combo.setCurrentText(target.name if target is not None else NEW_LAYER)
        self.target_combo.blockSignals(False)

    def _on_target(self, *_: Any) -> None:
        name = self.target_combo.currentText()
        layer = None if name == NEW_LAYER else self.viewer.layers[name]
        try:
            self.annotator.set_target(layer)
        except AnnotatorError as exc:
            self.say(str(exc), warning=True)
            self.reset_targets()

    def set_target(self, layer: Any) -> None:
        """Commit into ``layer`` (None: a new layer)."""
        self.target_combo.setCurrentText(NEW_LAYER if layer is None else layer.name)
        self._on_target()

    def _on_batch(self, on: bool) -> None:
        self.annotator.batch = bool(on)
        self.schedule_preview()

    def _on_overwrite(self, on: bool) -> None:
        self.annotator.overwrite = bool(on)

    def _on_step(self, *_: Any) -> None:
        ann = self.annotator
        if ann.image_layer is not None and ann.image_layer.ndim == 3 and not ann.image_layer.rgb:
            ann.candidate = 0
            self.schedule_preview()

    # ------------------------------------------------------------------ preview
    def _on_live(self, on: bool) -> None:
        if on:
            self.schedule_preview()

    def schedule_preview(self, *_: Any) -> None:
        """Recompute the preview shortly (bursts of edits are merged)."""
        if self.live_check.isChecked():
            self._timer.start()

    def request_preview(self) -> Any:
        """Start computing the preview off the UI thread (embedding the slice first if needed).

        Returns the worker, or None when nothing is computed (no prompts, embeddings pending, …)."""
        from napari.qt.threading import create_worker

        ann = self.annotator
        if ann.image_layer is None or ann.image_layer not in self.viewer.layers:
            return None
        ann.settings = self.embedding.settings()
        if self._preview_worker is not None:
            self._preview_again = True
            return None
        try:
            plane = ann.current_plane()
            prompts = ann.prompts(plane)
        except AnnotatorError as exc:
            self.warn_once(str(exc))
            return None
        self._prompt_note = "; ".join(prompts.notes)
        if self._prompt_note:
            self.warn_once(self._prompt_note)
        else:
            self._preview_warning = None
        if prompts.empty:
            ann.show(None)
            return None
        embeddings = ann.embeddings(plane)
        if embeddings is None:
            if not self.embedding.is_running():
                self.embedding.set_image_layer(ann.image_layer)
                self.say("computing the embeddings of this image first …", popup=False)
                self.embedding.start([plane], ann.image_layer)
            return None
        worker = create_worker(
            ann.compute,
            prompts,
            plane,
            embeddings,
            _connect={"errored": self._on_preview_error},
            _start_thread=False,
        )
        worker.returned.connect(self._on_preview)
        worker.finished.connect(self._on_preview_finished)
        self._preview_worker = worker
        worker.start()
        return worker

    def _on_preview(self, result: Any) -> None:
        ann = self.annotator
        ann.show(result)
        note = f" ({self._prompt_note})" if self._prompt_note else ""
        if not ann.batch:
            shown = f"mask {result.candidate + 1} of {result.n_candidates}"
            self.say(
                f"preview: {shown}, predicted IoU {result.scores[0]:.2f} — C to commit{note}", popup=False
            )
        else:
            self.say(f"preview: {result.n_objects} objects — C to commit them all{note}", popup=False)

    def _on_preview_error(self, exc: BaseException) -> None:
        text = str(exc) if isinstance(exc, (AnnotatorError, ValueError)) else f"{type(exc).__name__}: {exc}"
        self.annotator.show(None)
        self.say(text, warning=True, popup=False)

    def _on_preview_finished(self) -> None:
        self._preview_worker = None
        if self._preview_again:
            self._preview_again = False
            self.schedule_preview()

    def is_busy(self) -> bool:
        """True while embeddings or a preview are being computed, or a preview is scheduled."""
        return self._preview_worker is not None or self.embedding.is_running() or self._timer.isActive()

    # ------------------------------------------------------------------ actions
    def commit(self) -> list[int]:
        """Commit the previewed object(s) to the target labels; returns the new labels ([] on error)."""
        ids: list[int] = []
        with reported(self.viewer, "Commit"):
            ann = self.annotator
            if ann.image_layer is None:
                raise AnnotatorError("no image layer: open an image first")
            ann.settings = self.embedding.settings()
            notes = ann.prompts().notes
            ids = ann.commit()
            self.reset_targets()
            target = ann.target_layer.name
            note = f" ({'; '.join(notes)})" if notes else ""
            if not ids:
                self.say(
                    f"nothing committed: every pixel of the object is already labelled in '{target}'{note}"
                )
            elif len(ids) == 1:
                self.say(f"committed object {ids[0]} to '{target}'{note}")
            else:
                self.say(f"committed {len(ids)} objects ({ids[0]}–{ids[-1]}) to '{target}'{note}")
        return ids

    def clear(self) -> None:
        with reported(self.viewer, "Clear"):
            self.annotator.clear_prompts()
            self.say("prompts cleared", popup=False)

    def next_candidate(self) -> None:
        with reported(self.viewer, "Next mask"):
            self.annotator.candidate += 1
            self.request_preview()

    def undo(self) -> None:
        with reported(self.viewer, "Undo"):
            self.annotator.undo()

    def redo(self) -> None:
        with reported(self.viewer, "Redo"):
            self.annotator.redo()
