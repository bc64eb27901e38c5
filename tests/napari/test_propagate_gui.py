"""The annotator's Propagate panel in a real viewer: run with progress, one undo step, cancel, errors."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("gui")

WAIT_MS = 240_000


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _panel(widget):
    from napari_sam._widgets.propagate import PropagatePanel

    return getattr(widget, "propagate_panel", None) or PropagatePanel(widget)


def test_propagate_panel_follows_the_slice_objects_and_undoes_in_one_step(
    make_napari_viewer, qtbot, messages
):
    from napari_sam._widgets import AnnotatorWidget
    from napari_sam.data.synthetic import nuclei_3d

    viewer = make_napari_viewer()
    stack, truth = nuclei_3d((6, 256, 256), n_objects=6, diameter=(30.0, 50.0), seed=20200)
    viewer.add_image(stack, name="stack")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    panel = _panel(widget)
    assert panel.run_button.isEnabled() and panel.last.value() == 5

    z = 3
    ids, areas = np.unique(truth[z][truth[z] > 0], return_counts=True)
    k = int(ids[np.argmax(areas)])
    seeds = np.zeros(truth.shape, np.uint32)
    seeds[z][truth[z] == k] = 1
    labels = viewer.add_labels(seeds.copy(), name="labels")
    widget.set_target(labels)
    viewer.dims.set_current_step(0, z)

    worker = panel.start()
    assert worker is not None and not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    got = labels.data == 1
    assert got.any(axis=(1, 2)).sum() >= 3
    assert _iou(got, truth == k) > _iou(seeds == 1, truth == k) + 0.2
    assert (labels.data[z] == seeds[z]).all()
    assert any("propagated 1 object" in text for _, text in messages)
    labels.undo()
    np.testing.assert_array_equal(labels.data, seeds)

    # cancelled at once: nothing is written
    panel.start()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    np.testing.assert_array_equal(labels.data, seeds)

    # a slice without objects says so and starts nothing
    viewer.dims.set_current_step(0, 0 if not seeds[0].any() else 5)
    assert panel.start() is None
    assert any(level == "warning" and "no objects" in text for level, text in messages)


def test_trim_box_reaches_propagation(make_napari_viewer, qtbot, monkeypatch):
    import napari_sam._widgets.propagate as panel_mod
    from napari_sam._widgets import AnnotatorWidget
    from napari_sam.data.synthetic import nuclei_3d
    from napari_sam.engine.types import PropagationOptions

    asked: list[float] = []
    real = panel_mod.propagation_steps

    def recording(*args, **kwargs):
        asked.append(kwargs["min_intensity"])
        return real(*args, **kwargs)

    monkeypatch.setattr(panel_mod, "propagation_steps", recording)
    viewer = make_napari_viewer()
    stack, truth = nuclei_3d((3, 96, 96), n_objects=2, seed=1)
    viewer.add_image(stack, name="stack")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    panel = _panel(widget)
    seeds = np.zeros(truth.shape, np.uint32)
    seeds[1] = truth[1]
    widget.set_target(viewer.add_labels(seeds, name="labels"))
    viewer.dims.set_current_step(0, 1)
    assert panel.trim.isChecked()
    for checked in (True, False):
        panel.trim.setChecked(checked)
        assert panel.start() is not None
        qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert asked == [PropagationOptions.min_intensity, 0.0]
