"""Screenshots of the annotator in use, for the README and docs (``python -m pytest -m screenshots``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from .test_annotator_gui import bbox_corners, interior_point, wait_idle

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

pytestmark = [pytest.mark.screenshots, pytest.mark.usefixtures("gui")]


def _window(viewer):
    from napari_sam._widgets.launch import fit_window

    fit_window(viewer)  # as `napari-sam gui` opens it (the test screen is 1400 x 1000)


def _save(viewer, path: Path) -> None:
    """The window without napari's layer docks on the left: the canvas and the annotator, at 1:1,
    so that the docs' column shows them at a readable size."""
    from PIL import Image

    shot = viewer.screenshot(canvas_only=False, flash=False)
    qt_viewer = viewer.window._qt_viewer
    left = qt_viewer.dockLayerList.geometry().right() + 1
    scale = shot.shape[1] / viewer.window._qt_window.width()
    Image.fromarray(shot[:, int(left * scale) :]).save(path)


def test_annotator_screenshots(make_napari_viewer, qtbot):
    IMAGES.mkdir(parents=True, exist_ok=True)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-sam-pipeline", "nuclei_2d")
    truth = viewer.layers["nuclei ground truth"].data
    _, widget = viewer.window.add_plugin_dock_widget("napari-sam-pipeline", "Annotator")
    _window(viewer)
    ann = widget.annotator
    widget.embedding.start()
    wait_idle(qtbot, widget)

    # a few objects committed, one more being previewed from a positive and a negative click
    for k in (24, 23, 22, 7, 8, 11):
        ann.points_layer.add(interior_point(truth == k))
        wait_idle(qtbot, widget)
        widget.commit()
    obj = truth == 14
    ann.points_layer.add(interior_point(obj))
    near = ndimage.binary_dilation(obj, iterations=6) & ~ndimage.binary_dilation(obj, iterations=4)
    rows, cols = np.nonzero(near & (truth == 0))
    widget._choose_kind(ann.points_layer, type("Press", (), {"modifiers": ("Shift",)})())
    ann.points_layer.add([rows[len(rows) // 2], cols[len(cols) // 2]])  # a background click beside it
    widget._choose_kind(ann.points_layer, type("Press", (), {"modifiers": ()})())
    wait_idle(qtbot, widget)
    viewer.reset_view()
    qtbot.wait(300)
    _save(viewer, IMAGES / "annotator.png")

    # batch mode: every box is its own object
    widget.clear()
    widget.batch_check.setChecked(True)
    for k in (1, 2, 3, 4, 6, 9, 10):
        ann.shapes_layer.add_rectangles(bbox_corners(truth == k))
    widget.select_boxes()
    wait_idle(qtbot, widget)
    qtbot.wait(300)
    _save(viewer, IMAGES / "annotator-batch.png")
    widget.commit()
    assert len(np.unique(viewer.layers["SAM labels"].data)) == 1 + 6 + 7
