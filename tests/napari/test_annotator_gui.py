"""The annotator in a real napari viewer: embed, click, preview, commit, undo, batch, cancel, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sam._napari.annotator import BOXES_NAME, POINTS_NAME, PREVIEW_NAME, TARGET_NAME
from napari_sam._napari.embeddings import stored

pytestmark = pytest.mark.usefixtures("gui")

WAIT_MS = 120_000


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """The pixel deepest inside ``mask`` (row, col)."""
    depth = ndimage.distance_transform_edt(mask)
    r, c = np.unravel_index(np.argmax(depth), mask.shape)
    return int(r), int(c)


def bbox_corners(mask: np.ndarray) -> np.ndarray:
    """Rectangle vertices (row, col) through the centres of the outermost pixels of ``mask``."""
    rows, cols = np.nonzero(mask)
    return np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], dtype=float)


def annotator_widget(viewer):
    from napari_sam._widgets import AnnotatorWidget

    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    return widget


def wait_idle(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: not widget.is_busy(), timeout=WAIT_MS)


def test_point_preview_commit_undo_and_batch_boxes(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-pipeline", "nuclei_2d")
    image, truth = viewer.layers["nuclei"], viewer.layers["nuclei ground truth"].data
    widget = annotator_widget(viewer)
    ann = widget.annotator
    assert ann.image_layer is image
    assert {POINTS_NAME, BOXES_NAME, PREVIEW_NAME} <= {layer.name for layer in viewer.layers}

    worker = widget.embedding.start()
    assert worker is not None
    wait_idle(qtbot, widget)
    assert ann.embeddings() is not None
    assert any("embeddings ready" in text for _, text in messages)
    # "auto" shows the objects' size the embeddings were scaled for (nano estimates it)
    size = ann.embeddings().object_size
    assert size is not None and widget.embedding.object_size() is None
    assert widget.embedding.object_size_spin.text() == f"auto (≈{round(size)} px)"
    assert any(f"objects ≈ {round(size)} px across" in text for _, text in messages)

    # one positive click inside nucleus 24 → the live preview covers it
    obj = truth == 24
    ann.points_layer.add(interior_point(obj))
    assert ann.points_layer.features["label"].tolist() == ["positive"]
    qtbot.waitUntil(lambda: ann.last_result is not None, timeout=WAIT_MS)
    wait_idle(qtbot, widget)
    preview = viewer.layers[PREVIEW_NAME].data > 0
    assert iou(preview, obj) >= 0.7

    assert widget.commit() == [1]
    target = viewer.layers[TARGET_NAME]
    assert target.data.dtype == np.uint32
    assert iou(target.data == 1, obj) >= 0.7
    assert len(ann.points_layer.data) == 0 and not viewer.layers[PREVIEW_NAME].data.any()

    # a second object gets the next free label; undo removes it, redo brings it back
    second = truth == 23
    ann.points_layer.add(interior_point(second))
    wait_idle(qtbot, widget)
    assert widget.commit() == [2]
    assert iou(target.data == 2, second) >= 0.7
    widget.undo()
    assert 2 not in target.data and np.any(target.data == 1)
    widget.redo()
    assert np.any(target.data == 2)

    # batch mode: boxes on the first three nuclei → three objects, 3 4 5, in one undo step
    widget.batch_check.setChecked(True)
    chosen = [1, 2, 3]
    for k in chosen:
        ann.shapes_layer.add_rectangles(bbox_corners(truth == k))
    wait_idle(qtbot, widget)
    assert ann.last_result.n_objects == 3
    before = target.data.copy()
    assert widget.commit() == [3, 4, 5]
    ious = [iou(target.data == label, truth == k) for label, k in zip((3, 4, 5), chosen, strict=True)]
    assert np.mean(ious) >= 0.8, ious
    assert np.array_equal(target.data[before > 0], before[before > 0])  # nothing painted over
    assert len(ann.shapes_layer.data) == 0
    widget.undo()
    assert np.array_equal(target.data, before)


def test_negative_click_candidates_and_keys(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-pipeline", "nuclei_2d")
    truth = viewer.layers["nuclei ground truth"].data
    widget = annotator_widget(viewer)
    ann = widget.annotator
    widget.negative_check.setChecked(True)

    class Press:  # what napari hands a mouse callback
        modifiers = ("Shift",)

    widget._choose_kind(ann.points_layer, Press())  # shift flips "negative clicks" back to positive
    ann.points_layer.add(interior_point(truth == 24))
    Press.modifiers = ()
    widget._choose_kind(ann.points_layer, Press())
    ann.points_layer.add(interior_point(truth == 0))
    assert ann.points_layer.features["label"].tolist() == ["positive", "negative"]
    wait_idle(qtbot, widget)
    first = ann.last_result
    assert first is not None and first.n_candidates == 4  # single-output mask + 3 multimask
    widget.next_candidate()
    wait_idle(qtbot, widget)
    assert ann.last_result.candidate == 1

    # the keys bound on the prompt layers: N next mask, C commit, Ctrl-Z undo, Shift-C clear
    from app_model.types import KeyBinding

    def press(key: str) -> None:
        ann.points_layer.keymap[KeyBinding.from_str(key)](ann.points_layer)

    press("N")
    wait_idle(qtbot, widget)
    assert ann.last_result.candidate == 2
    press("C")
    target = viewer.layers[TARGET_NAME]
    assert target.data.max() == 1 and len(ann.points_layer.data) == 0
    press("Ctrl+Z")
    assert not target.data.any()
    ann.points_layer.add(interior_point(truth == 24))
    press("Shift+C")
    assert len(ann.points_layer.data) == 0


def test_cancel_a_running_embedding(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(0).integers(0, 4000, size=(12, 512, 512), dtype=np.uint16)
    layer = viewer.add_image(stack, name="stack")
    widget = annotator_widget(viewer)
    widget.embedding.scope_combo.setCurrentText("whole stack")
    worker = widget.embedding.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.embedding.progress.value() >= 1, timeout=WAIT_MS)
    widget.embedding.cancel()
    qtbot.waitUntil(lambda: not widget.embedding.is_running(), timeout=WAIT_MS)
    done = len(stored(layer).slices)
    assert 1 <= done < 12
    assert any("cancelled" in text for _, text in messages)
    assert widget.embedding.compute_button.isEnabled()


def test_3d_stack_slice_on_demand(make_napari_viewer, qtbot):
    from napari_sam.data.synthetic import nuclei_3d

    stack, truth = nuclei_3d((5, 512, 512), n_objects=14, diameter=(40.0, 70.0), seed=3)
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack")
    widget = annotator_widget(viewer)
    ann = widget.annotator
    z = 2
    viewer.dims.set_current_step(0, z)
    labels, counts = np.unique(truth[z], return_counts=True)
    k = int(labels[1:][np.argmax(counts[1:])])  # the largest nucleus on this slice
    (r0, c0), (r1, c1) = bbox_corners(truth[z] == k)
    corners = [[z, r0, c0], [z, r0, c1], [z, r1, c1], [z, r1, c0]]
    ann.shapes_layer.add_rectangles(np.array(corners))  # no embeddings yet: embedded on demand
    qtbot.waitUntil(lambda: ann.last_result is not None, timeout=WAIT_MS)
    wait_idle(qtbot, widget)
    assert sorted(stored(ann.image_layer).slices) == [z]
    assert widget.commit() == [1]
    target = viewer.layers[TARGET_NAME].data
    assert target.shape == stack.shape
    assert not target[:z].any() and not target[z + 1 :].any()
    assert iou(target[z] == 1, truth[z] == k) >= 0.7


def test_bad_input_gives_messages_and_keeps_data(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    widget = annotator_widget(viewer)
    ann = widget.annotator

    # no image layer at all
    assert widget.embedding.start() is None
    assert widget.commit() == []
    assert any("no image layer" in text for level, text in messages if level == "warning")

    # a 4D (time × z) layer cannot be annotated
    viewer.add_image(np.zeros((2, 3, 64, 64), np.float32), name="tzyx")
    assert any("4 spatial axes" in text for _, text in [*messages, ("", widget.status_label.text())])
    assert ann.image_layer is None

    # an RGB image works (official path); a labels layer with its RGB data shape does not fit
    rgb = np.zeros((128, 128, 3), np.uint8)
    rgb[40:90, 30:80] = (200, 60, 60)
    rgb_layer = viewer.add_image(rgb, name="rgb", rgb=True)
    widget.embedding.set_image_layer(rgb_layer)
    assert ann.image_layer is rgb_layer
    wrong = viewer.add_labels(np.zeros((128, 128, 3), np.uint32), name="wrong shape")
    wrong.data[0, 0, 0] = 9
    widget.set_target(wrong)
    assert any("has shape (128, 128, 3)" in text for _, text in messages)
    assert ann.target_layer is None  # still "(new layer)"

    # commit without prompts
    messages.clear()
    assert widget.commit() == []
    assert any("nothing to commit" in text for _, text in messages)

    # a point outside the image: message, nothing written
    ann.points_layer.add([300.0, 20.0])
    wait_idle(qtbot, widget)
    assert widget.commit() == []
    assert any("outside the image" in text for _, text in messages)
    assert TARGET_NAME not in viewer.layers
    ann.clear_prompts()

    # a gray-or-RGB image with a valid point still segments and commits
    ann.points_layer.add([65.0, 55.0])
    wait_idle(qtbot, widget)
    assert widget.commit() == [1]
    assert viewer.layers[TARGET_NAME].data[65, 55] == 1
    assert wrong.data[0, 0, 0] == 9 and wrong.data.sum() == 9  # untouched


def test_embedding_cache_is_written_and_reused(make_napari_viewer, qtbot, messages, tmp_path, monkeypatch):
    import napari_sam.engine.embed.pipeline as engine_embeddings
    from napari_sam.engine.embed.store import is_embedding_store, open_store

    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-pipeline", "nuclei_2d")
    data = viewer.layers["nuclei"].data
    widget = annotator_widget(viewer)
    cache = tmp_path / "nuclei.zarr"
    widget.embedding.cache_edit.setText(str(cache))
    widget.embedding.start()
    wait_idle(qtbot, widget)
    assert is_embedding_store(cache) and open_store(cache).done_mask().all()

    # the same pixels in a new layer: read back from the cache, the encoder is not run again
    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran although the cache holds this image")

    monkeypatch.setattr(engine_embeddings, "encode_images", no_encoder)
    viewer.layers.clear()
    again = viewer.add_image(data.copy(), name="again")
    widget.embedding.set_image_layer(again)
    messages.clear()
    widget.embedding.start()
    wait_idle(qtbot, widget)
    assert widget.annotator.embeddings() is not None
    assert not [text for level, text in messages if level == "warning"]
    widget.annotator.points_layer.add([94.0, 24.0])
    wait_idle(qtbot, widget)
    assert widget.annotator.last_result is not None and widget.annotator.last_result.index[94, 24] == 1


def test_real_clicks_on_the_canvas(make_napari_viewer, qtbot):
    """A click adds a positive point, a shift-click a negative one (mouse events through napari's canvas)."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.random.default_rng(1).random((200, 200)), name="img")
    widget = annotator_widget(viewer)
    widget.live_check.setChecked(False)  # only the prompts matter here
    assert viewer.layers.selection.active is widget.annotator.points_layer
    qtbot.wait(200)
    canvas = viewer.window._qt_viewer.canvas.native
    centre = canvas.rect().center()
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    QTest.mouseClick(
        canvas, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, centre + QPoint(30, 0)
    )
    qtbot.wait(100)
    points = widget.annotator.points_layer
    assert points.features["label"].tolist() == ["positive", "negative"]
    assert points.data[1, 1] > points.data[0, 1]  # the second click is to the right


def test_prompt_problems_are_messages_not_silent(make_napari_viewer, qtbot, messages):
    """Issue 16, item 13: a point without a kind and a 2D prompt layer over a stack each give a warning
    naming the layer (no traceback, no object made from a guess); nothing the user drew is deleted."""
    viewer = make_napari_viewer()
    viewer.add_image(np.random.default_rng(0).random((3, 64, 64), np.float32), name="stack")
    widget = annotator_widget(viewer)
    ann = widget.annotator
    viewer.dims.set_current_step(0, 1)

    # a points layer (the user's own) whose "label" feature is missing (NaN) for one point: a warning
    # as soon as the preview looks at it (it used to count as a positive click)
    mine = viewer.add_points(np.array([[1.0, 20.0, 30.0]]), features={"label": [np.nan]}, name="my clicks")
    ann.points_layer = mine
    assert widget.request_preview() is None
    assert widget.request_preview() is None
    said = [text for level, text in messages if level == "warning" and "has no label (NaN)" in text]
    assert said and "'my clicks'" in said[0] and "point 0 at (1, 20, 30)" in said[0]
    assert len(said) == 1  # the same problem is not shown again at every preview
    messages.clear()
    assert widget.commit() == []
    assert any("has no label (NaN)" in text for level, text in messages if level == "warning")
    assert TARGET_NAME not in viewer.layers and len(mine.data) == 1

    # a 2D points layer over the stack: drawn on every slice, meant for none in particular
    flat = viewer.add_points(np.array([[10.0, 12.0]]), name="clicks 2D")
    ann.points_layer = flat
    messages.clear()
    assert widget.request_preview() is None
    assert any("points layer 'clicks 2D' is 2D but image 'stack' is 3D" in text for _, text in messages)
    messages.clear()
    assert widget.commit() == []
    assert any("is 2D but image 'stack' is 3D" in text for level, text in messages if level == "warning")
    messages.clear()
    widget.clear()
    assert any("is 2D but image 'stack' is 3D" in text for level, text in messages if level == "warning")
    assert len(flat.data) == 1  # clearing did not guess either


def test_identical_boxes_are_merged_with_a_message(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-sam-pipeline", "nuclei_2d")
    truth = viewer.layers["nuclei ground truth"].data
    widget = annotator_widget(viewer)
    ann = widget.annotator
    widget.embedding.start()
    wait_idle(qtbot, widget)

    # single-object mode: the same rectangle twice is one box, not "2 boxes on this slice"
    box = bbox_corners(truth == 1)
    ann.shapes_layer.add_rectangles(box)
    ann.shapes_layer.add_rectangles(box)
    wait_idle(qtbot, widget)
    assert ann.last_result is not None and ann.last_result.n_objects == 1
    note = "boxes 1 and 2 of 'SAM boxes' are identical: merged into one object"
    assert [text for _, text in messages].count(note) == 1
    assert not any("boxes on this slice" in text for _, text in messages)
    widget.clear()

    # batch mode: three rectangles, two of them identical → two objects, said once
    widget.batch_check.setChecked(True)
    messages.clear()
    for k in (2, 3, 2):
        ann.shapes_layer.add_rectangles(bbox_corners(truth == k))
        wait_idle(qtbot, widget)
    assert ann.last_result.n_objects == 2
    note = "boxes 1 and 3 of 'SAM boxes' are identical: merged into one object"
    assert [text for _, text in messages].count(note) == 1
    assert widget.commit() == [1, 2]
    assert "committed 2 objects" in messages[-1][1] and "merged into one object" in messages[-1][1]


def test_object_size_box_sets_the_scale_and_another_size_recomputes(make_napari_viewer, qtbot):
    from napari_sam.data.synthetic import nuclei_2d
    from napari_sam.engine.object_scale import canvas_scale
    from napari_sam.model.sam import NANO_OBJECT_SCALE

    viewer = make_napari_viewer()
    image, truth = nuclei_2d((128, 128), n_objects=6, seed=0)
    viewer.add_image(image, name="small nuclei")
    widget = annotator_widget(viewer)
    ann, size_box = widget.annotator, widget.embedding.object_size_spin
    panel_box = widget.automatic_panel.object_size_spin
    assert size_box.value() == 0 and size_box.text() == "auto" and widget.embedding.object_size() is None

    size_box.setValue(10)
    assert panel_box.value() == 10  # "Segment everything" shows (and sets) the same size
    widget.embedding.start()
    wait_idle(qtbot, widget)
    side = round(128 * canvas_scale(10.0, NANO_OBJECT_SCALE))  # 3×: 384 px on the 1024 canvas
    assert ann.embeddings().input_size == (side, side) and ann.embeddings().original_size == (128, 128)

    # with a prompt, another size (set in the "Segment everything" panel) re-embeds before the preview
    ann.points_layer.add(interior_point(truth == 1))
    qtbot.waitUntil(lambda: ann.last_result is not None, timeout=WAIT_MS)
    wait_idle(qtbot, widget)
    panel_box.setValue(40)
    assert size_box.value() == 40 and widget.embedding.object_size() == 40.0
    qtbot.waitUntil(lambda: ann.settings.object_size == 40.0, timeout=WAIT_MS)
    wait_idle(qtbot, widget)
    side = round(128 * canvas_scale(40.0, NANO_OBJECT_SCALE))  # 1.77×
    assert ann.embeddings().input_size == (side, side)
    assert stored(ann.image_layer).settings.object_size == 40.0  # the 10 px embeddings are gone
    assert iou(viewer.layers[PREVIEW_NAME].data > 0, truth == 1) >= 0.6
