"""``napari-sam gui``: napari opens with sample data and the annotator docked."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._widgets.launch import open_viewer
from napari_sam.cli import main


def test_open_viewer_shows_sample_and_docks_annotator(gui, qtbot):
    # ``napari-sam gui --model NAME``: the annotator starts with that model chosen
    viewer = open_viewer(sample="nuclei_2d", show=False, model="vit_b_lm")
    try:
        images = [layer for layer in viewer.layers if layer.__class__.__name__ == "Image"]
        assert len(images) == 1 and images[0].data.shape == (512, 512)
        assert np.asarray(images[0].data).max() > 0
        docked = [widget for name, widget in viewer.window.dock_widgets.items() if "Annotator" in name]
        assert len(docked) == 1, list(viewer.window.dock_widgets)
        annotator = docked[0] if hasattr(docked[0], "embedding") else docked[0].widget()
        combo = annotator.embedding.model_combo
        assert combo.currentText() == "vit_b_lm"
        names = [combo.itemText(i) for i in range(combo.count())]
        assert names[:4] == ["nano", "vit_b", "vit_l", "vit_h"] and "vit_t_em_organelles" in names
    finally:
        viewer.close()


def test_open_viewer_rejects_unknown_sample():
    with pytest.raises(ValueError, match="sample must be one of"):
        open_viewer(sample="cells")


def test_gui_command_validates_sample(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["gui", "--sample", "cells"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _screen_area(viewer):
    window = viewer.window._qt_window
    return window.screen().availableGeometry()


def test_window_fits_the_screen_and_the_image_fits_the_canvas(gui, qtbot):
    viewer = open_viewer(sample="nuclei_3d", show=True)
    try:
        window = viewer.window._qt_window
        qtbot.waitUntil(lambda: window.isVisible())
        area = _screen_area(viewer)
        assert window.width() <= area.width() and window.height() <= area.height()
        # the canvas keeps most of the width: the docks are compact
        canvas_height, canvas_width = viewer.window._qt_viewer.canvas.size
        assert canvas_width >= 0.4 * window.width(), (canvas_width, window.width())
        # the whole plane is on screen: its size on the canvas is within the canvas
        rows, cols = viewer.layers["nuclei 3D"].data.shape[1:]
        qtbot.waitUntil(lambda: _camera(viewer).zoom * cols <= canvas_width + 1)
        assert _camera(viewer).zoom * rows <= canvas_height + 1
        assert _camera(viewer).zoom * max(rows / canvas_height, cols / canvas_width) > 0.8  # and fills it
        dock = next(w for name, w in viewer.window.dock_widgets.items() if "Annotator" in name)
        assert dock.width() <= 0.35 * window.width()
        assert dock._scroll.horizontalScrollBar().maximum() == 0  # no panel is cut off on the right
    finally:
        viewer.close()


def test_window_is_shown_before_the_annotator_is_loaded(gui, qtbot):
    viewer = open_viewer(sample="nuclei_2d", show=True, defer=True)
    try:
        assert len(viewer.layers) == 0 and not viewer.window.dock_widgets  # nothing loaded yet
        assert "loading" in viewer.status
        docked = lambda: any("Annotator" in name for name in viewer.window.dock_widgets)  # noqa: E731
        qtbot.waitUntil(docked, timeout=60000)
        assert viewer.layers["nuclei"].data.shape == (512, 512)
        assert "ready" in viewer.status
    finally:
        viewer.close()


def test_channel_box_only_for_rgb_images(gui, qtbot, make_napari_viewer):
    from napari_sam._widgets.annotator import AnnotatorWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint16), name="gray")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget)
    combo = widget.embedding.channel_combo
    assert combo.isHidden()
    viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="colour", rgb=True)
    widget.embedding.image_combo.setCurrentText("colour")
    assert not combo.isHidden() and combo.isEnabled()
    widget.embedding.image_combo.setCurrentText("gray")
    assert combo.isHidden()


def test_automatic_tuning_is_folded_away(gui, qtbot, make_napari_viewer):
    from napari_sam._widgets.annotator import AnnotatorWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((32, 32), np.uint16), name="gray")
    widget = AnnotatorWidget(viewer)
    panel = widget.automatic_panel
    assert panel.tuning.isHidden()
    panel.tuning_button.setChecked(True)
    assert not panel.tuning.isHidden()
    assert widget.minimumSizeHint().height() < 600  # the panels scroll instead of stretching the window


def _camera(viewer):
    """napari ≥ 0.9 moved the camera to ``viewer.scene``."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera
