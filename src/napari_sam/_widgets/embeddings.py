"""The embedding widget: pick an image layer and a model, compute embeddings in the background."""

from __future__ import annotations

import contextlib
from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._napari.embeddings import EmbeddingSettings, compute_steps, scaled_object_size, stored
from .._napari.prompts import image_spatial_shape
from ..engine.types import Precision
from ..errors import AnnotatorError
from ._messages import reported, tell, unwrap_viewer

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")
CHANNELS = ("all (RGB)", "0 (red)", "1 (green)", "2 (blue)")
CURRENT_SLICE = "current slice"
WHOLE_STACK = "whole stack"
#: The object size box's largest value (pixels across).
MAX_OBJECT_SIZE = 10_000
OBJECT_SIZE_TIP = (
    "the objects' typical diameter in pixels: the image is scaled onto the model's canvas (and tiled) "
    "so that objects get the size the model segments best\nauto (0): the model's choice — nano "
    "estimates the objects' size from the image; vit_b/l/h keep the fixed rule\nchanging it "
    "recomputes the embeddings"
)


def object_size_box() -> QSpinBox:
    """A spin box of the objects' diameter in pixels; 0 shows "auto" (the model's choice)."""
    box = QSpinBox()
    box.setRange(0, MAX_OBJECT_SIZE)
    box.setSpecialValueText("auto")
    box.setSuffix(" px")
    box.setToolTip(OBJECT_SIZE_TIP)
    return box


class EmbeddingWidget(QWidget):
    """Image layer, model, device and precision; Compute / Cancel with a progress bar.

    Embeddings go to a per-layer store shared with the annotator
    (:mod:`napari_sam._napari.embeddings`). For a 3D stack, "current slice" embeds the slice on screen
    and "whole stack" every slice (cancel stops after the slice in progress; finished slices are kept).

    Signals
    -------
    computed
        Emitted with the image layer after a run finishes (not when cancelled).
    """

    computed = Signal(object)

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.worker: Any = None
        self._build_choices()
        self._build_cache()
        self._build_run_controls()
        self._build_layout()
        self.compute_button.clicked.connect(lambda: self.start())
        self.cancel_button.clicked.connect(self.cancel)
        self.browse_button.clicked.connect(self._browse)
        self.cache_button.clicked.connect(self._browse_cache)
        self.image_combo.currentIndexChanged.connect(self._update_scope)
        self.image_combo.currentIndexChanged.connect(lambda *_: self.show_estimate(None))
        self.model_combo.currentTextChanged.connect(lambda *_: self.show_estimate(None))
        events = self.viewer.layers.events
        events.inserted.connect(self.reset_choices)
        events.removed.connect(self.reset_choices)
        events.changed.connect(self.reset_choices)
        self.reset_choices()

    def _build_choices(self) -> None:
        """Image layer, model (with a weights file button), device, precision, channel and 3D scope."""
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("the image layer to embed (2D, or 3D: Z, Y, X)")
        self.model_combo = QComboBox()
        self.model_combo.setEditable(True)
        from ..model.zoo import model_names  # every name model= accepts (torch is loaded from here on)

        self.model_combo.addItems(model_names())
        self.model_combo.setToolTip(
            "nano: shipped, offline; vit_b/l/h: official weights; vit_b_lm, vit_t_em_organelles …: "
            "micro-sam's models with their instance decoders (both downloaded once); or a weights file"
        )
        self.browse_button = QPushButton("…")
        self.browse_button.setToolTip("choose a weights file (.pth / .safetensors)")
        self.browse_button.setMaximumWidth(30)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.precision_combo = QComboBox()
        self.precision_combo.addItems(PRECISIONS)
        self.channel_combo = QComboBox()
        self.channel_combo.addItems(CHANNELS)
        self.channel_combo.setToolTip(
            "RGB images: embed all channels (the official colour path) or one channel as a gray image"
        )
        self.scope_combo = QComboBox()
        self.scope_combo.addItems([CURRENT_SLICE, WHOLE_STACK])
        self.scope_combo.setToolTip("3D stacks: embed only the slice on screen, or every slice")
        self.object_size_spin = object_size_box()

    def _build_cache(self) -> None:
        self.cache_edit = QLineEdit()
        self.cache_edit.setPlaceholderText("none: keep in memory")
        self.cache_edit.setToolTip(
            "a zarr folder for the embeddings: slices already there are reused, new ones are added "
            "(a cache of another image or model is refused)"
        )
        self.cache_button = QPushButton("…")
        self.cache_button.setToolTip("choose a cache folder (*.zarr)")
        self.cache_button.setMaximumWidth(30)

    def _build_run_controls(self) -> None:
        self.compute_button = QPushButton("Compute embeddings")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m")

    def _build_layout(self) -> None:
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        model_row.addWidget(self.browse_button)
        form = self._form = QFormLayout()
        form.addRow("image", self.image_combo)
        form.addRow("model", model_row)
        form.addRow("device", self.device_combo)
        form.addRow("precision", self.precision_combo)
        form.addRow("channel", self.channel_combo)
        form.addRow("object size", self.object_size_spin)
        form.addRow("3D", self.scope_combo)
        cache_row = QHBoxLayout()
        cache_row.addWidget(self.cache_edit, 1)
        cache_row.addWidget(self.cache_button)
        form.addRow("cache", cache_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.compute_button, 1)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)

    # ------------------------------------------------------------------ choices
    def image_layers(self) -> list[Any]:
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def reset_choices(self, *_: Any) -> None:
        """Refill the image list from the viewer, keeping the current choice when it still exists."""
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.image_layers()]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        if current in names:
            self.image_combo.setCurrentText(current)
        self.image_combo.blockSignals(False)
        self._update_scope()
        self.image_combo.currentIndexChanged.emit(self.image_combo.currentIndex())

    def image_layer(self) -> Any:
        """The chosen image layer (None when the viewer has none)."""
        name = self.image_combo.currentText()
        return self.viewer.layers[name] if name and name in self.viewer.layers else None

    def set_image_layer(self, layer: Any) -> None:
        self.image_combo.setCurrentText(layer.name)

    def settings(self) -> EmbeddingSettings:
        """The model, device, precision, cache, channel and object size chosen."""
        model = self.model_combo.currentText().strip() or "nano"
        return EmbeddingSettings(
            model=model,
            device=self.device_combo.currentText(),
            precision=PRECISIONS[self.precision_combo.currentIndex()],
            cache=self.cache_edit.text().strip() or None,
            channel=self._channel(),
            object_size=self.object_size(),
        )

    def object_size(self) -> float | None:
        """The objects' diameter in pixels chosen, or None ("auto": the model's choice)."""
        value = self.object_size_spin.value()
        return float(value) if value > 0 else None

    def set_object_size(self, size: float | None) -> None:
        """Show ``size`` (pixels across, rounded) in the object size box; None or 0: "auto"."""
        self.object_size_spin.setValue(0 if not size else max(1, round(size)))

    def show_estimate(self, size: float | None) -> None:
        """Show beside "auto" the objects' size the last embeddings were scaled for (None: plain "auto")."""
        self.object_size_spin.setSpecialValueText(f"auto (≈{round(size)} px)" if size else "auto")

    def _channel(self) -> int | None:
        """The RGB channel to embed alone (None: all channels, or not an RGB layer)."""
        index = self.channel_combo.currentIndex()
        return index - 1 if self.channel_combo.isEnabled() and index > 0 else None

    def _update_scope(self, *_: Any) -> None:
        layer = self.image_layer()
        is_3d = False
        with contextlib.suppress(AnnotatorError):
            is_3d = layer is not None and len(image_spatial_shape(layer)) == 3
        self.scope_combo.setEnabled(is_3d)
        rgb = layer is not None and bool(layer.rgb)
        self.channel_combo.setEnabled(rgb)
        # a gray image has no channel to choose: the row is hidden rather than shown greyed out
        _set_row_visible(self._form, self.channel_combo, rgb)
        if not rgb:
            self.channel_combo.setCurrentIndex(0)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Segment Anything weights", "", "weights (*.pth *.pt *.safetensors);;all files (*)"
        )
        if path:
            self.model_combo.setCurrentText(path)

    def _browse_cache(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Embedding cache folder (*.zarr)")
        if path:
            self.cache_edit.setText(path)

    # ------------------------------------------------------------------ running
    def planes(self, layer: Any) -> list[int | None]:
        """The slices a run embeds: ``[None]`` for 2D; the current slice or all for 3D."""
        spatial = image_spatial_shape(layer)
        if len(spatial) == 2:
            return [None]
        if self.scope_combo.currentText() == WHOLE_STACK:
            return list(range(spatial[0]))
        z = float(layer.world_to_data(self.viewer.dims.point)[-3])
        return [min(max(round(z), 0), spatial[0] - 1)]

    def is_running(self) -> bool:
        return self.worker is not None

    def start(self, planes: list[int | None] | None = None, layer: Any = None) -> Any:
        """Compute the embeddings of ``planes`` of ``layer`` (default: the chosen layer and scope) in a
        ``thread_worker``; returns the worker (None when the input is not usable; a message says why)."""
        from napari.qt.threading import create_worker

        if self.worker is not None:
            tell(self.viewer, "embeddings are already being computed; wait or press Cancel", warning=True)
            return None
        worker = None
        with reported(self.viewer, "Embeddings"):
            layer = layer if layer is not None else self.image_layer()
            if layer is None:
                raise AnnotatorError("no image layer: open an image (File > Open, or File > Open Sample)")
            image_spatial_shape(layer)
            planes = self.planes(layer) if planes is None else planes
            settings = self.settings()
            steps = compute_steps(layer, planes, settings)
            total = len(planes)
            worker = create_worker(
                _drain,
                steps,
                _progress={"total": total, "desc": f"embedding '{layer.name}'"},
                _connect={"errored": self._on_error},
                _start_thread=False,
            )
            worker.yielded.connect(self._on_step)
            worker.finished.connect(self._on_finished)
            worker.returned.connect(lambda _: self._on_done(layer))
            worker.aborted.connect(lambda: tell(self.viewer, "embedding cancelled; finished slices are kept"))
            self.progress.setRange(0, total)
            self.progress.setValue(0)
            self.compute_button.setEnabled(False)
            self.cancel_button.setEnabled(True)
            self.worker = worker
            self.viewer.status = f"embedding '{layer.name}' with {settings.model} …"
            worker.start()
        return worker

    def cancel(self) -> None:
        """Stop the running computation after the slice in progress."""
        if self.worker is not None:
            self.worker.quit()
            self.cancel_button.setEnabled(False)

    def _on_step(self, step: tuple[int, int]) -> None:
        done, total = step
        self.progress.setRange(0, total)
        self.progress.setValue(done)

    def _on_done(self, layer: Any) -> None:
        record = stored(layer)
        n = 0 if record is None else len(record.slices)
        size = scaled_object_size(layer) if self.object_size() is None else None
        self.show_estimate(size)
        estimate = f"; objects ≈ {round(size)} px across, estimated" if size else ""
        tell(self.viewer, f"embeddings ready for '{layer.name}' ({n} slice{'s' if n != 1 else ''}{estimate})")
        self.computed.emit(layer)

    def _on_error(self, exc: BaseException) -> None:
        with reported(self.viewer, "Embeddings"):
            raise exc

    def _on_finished(self) -> None:
        self.worker = None
        self.compute_button.setEnabled(True)
        self.cancel_button.setEnabled(False)


def _drain(steps: Any) -> Any:
    """Generator for the worker: pass the steps' progress through."""
    yield from steps
    return None


def _set_row_visible(form: QFormLayout, field: QWidget, visible: bool) -> None:
    """Show or hide one row of ``form`` (its label too); Qt < 6.4 has no ``setRowVisible``."""
    if hasattr(form, "setRowVisible"):
        form.setRowVisible(field, visible)
        return
    field.setVisible(visible)
    label = form.labelForField(field)
    if label is not None:
        label.setVisible(visible)
