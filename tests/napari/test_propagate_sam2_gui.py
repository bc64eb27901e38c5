"""The Propagate panel with a SAM 2 model in a real viewer: memory propagation from the slice's labels
and prompts, one undo step, free ids, a Tracks layer for time-lapses, SAM 1 files refused."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("gui")

WAIT_MS = 240_000


def test_sam2_panel_propagates_labels_and_prompts_with_tracks(
    make_napari_viewer, qtbot, messages, tiny_sam2, small_weights
):
    from napari_sam._widgets import AnnotatorWidget
    from napari_sam._widgets.propagate import SAM1_CHOICE, PropagatePanel

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    stack = rng.normal(100, 5, (4, 48, 56)).astype(np.float32)
    stack[:, 10:25, 12:30] += 400
    viewer.add_image(stack, name="movie")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    panel = getattr(widget, "propagate_panel", None) or PropagatePanel(widget)
    assert panel.model_combo.currentText() == SAM1_CHOICE and panel.trim.isEnabled()

    seeds = np.zeros(stack.shape, np.uint16)
    seeds[1, 10:25, 12:30] = 3
    labels = viewer.add_labels(seeds.copy(), name="cells")
    widget.set_target(labels)
    viewer.dims.set_current_step(0, 1)
    ann = widget.annotator
    ann.ensure_layers()
    ann.points_layer.add([1, 38, 45])  # a new object: gets the free id 4

    # a SAM 1 weights file is refused with a clear message, nothing starts
    panel.model_combo.setCurrentText(str(small_weights))
    assert not panel.trim.isEnabled()
    assert panel.start() is None
    assert any(level == "warning" and "SAM 1 model" in text for level, text in messages)

    panel.memory_model = tiny_sam2  # a loaded SAM 2 model (a name or weights file works the same way)
    panel.timelapse.setChecked(True)
    worker = panel.start()
    assert worker is not None and not panel.run_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert any("propagated 2 objects" in text for _, text in messages), messages
    assert set(np.unique(labels.data)) <= {0, 3, 4} and (labels.data == 4).any()
    np.testing.assert_array_equal(labels.data[1][seeds[1] == 3], 3)  # the seed kept as drawn
    assert len(ann.points_layer.data) == 0  # the prompt is an object of the labels now
    tracks = viewer.layers["cells tracks"]
    assert set(np.unique(tracks.data[:, 0])) <= {3, 4} and len(tracks.data) >= 2

    # correction clicks on slice 3 for label 3: the run again, its labels replaced in one undo step
    propagated = np.array(labels.data, copy=True)
    assert panel.correct_button.isEnabled()
    viewer.dims.set_current_step(0, 3)
    labels.selected_label = 9  # not an object of the run: refused, nothing starts
    ann.points_layer.add([3, 40, 50])
    assert panel.start_correction() is None
    assert any("select the label to correct" in text for _, text in messages)
    labels.selected_label = 3
    ann.points_layer.add([3, 15, 20])
    worker = panel.start_correction()
    assert worker is not None
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert any("corrected and propagated again" in text for _, text in messages), messages
    np.testing.assert_array_equal(labels.data[1][seeds[1] == 3], 3)  # the seed kept as drawn
    assert not np.array_equal(labels.data, propagated)
    assert len(ann.prompts(3).points) == 0  # the clicks were used
    labels.undo()  # the correction was one undo step
    np.testing.assert_array_equal(labels.data, propagated)
    labels.undo()
    np.testing.assert_array_equal(labels.data, seeds)

    # cancelled at once: nothing is written
    panel.start()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    np.testing.assert_array_equal(labels.data, seeds)
    # the point prompt started the annotator's own (SAM 1) preview embedding: let it end first
    qtbot.waitUntil(lambda: not widget.embedding.is_running(), timeout=WAIT_MS)
