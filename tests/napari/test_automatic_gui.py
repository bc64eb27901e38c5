"""'Segment everything' from the annotator: the controller (no Qt) and the panel in a real viewer.

Results are checked against the engine's own ``automatic`` / ``automatic_labels`` on the same input.
The tiny random model (``small_weights``) keeps the 3D runs fast; the shipped nano model runs once on
a small 2D image so real objects are found.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.automatic import (
    AutomaticSettings,
    add_result_layer,
    plan_automatic,
    preset_values,
    run_automatic,
)
from napari_sam._napari.embeddings import EmbeddingSettings, stored
from napari_sam.data.synthetic import nuclei_2d, nuclei_3d
from napari_sam.engine.automatic.front import PRESETS, automatic
from napari_sam.engine.embed.embeddings import compute_embeddings
from napari_sam.engine.volume.linking import link_slices
from napari_sam.errors import AnnotatorError

layers = pytest.importorskip("napari.layers")

WAIT_MS = 120_000
#: thresholds at 0: the random model's masks all survive, so every slice has an object
OPEN = {"preset": None, "points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0}


def same_objects(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label images hold the same objects (labels may be numbered differently)."""
    if not np.array_equal(a > 0, b > 0):
        return False
    pairs = np.unique(np.stack([a[a > 0], b[b > 0]]), axis=1)
    return len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]


@pytest.fixture(scope="module")
def stack() -> np.ndarray:
    return nuclei_3d((4, 64, 64), n_objects=5, diameter=(16.0, 24.0), seed=11)[0]


def slice_by_slice(stack: np.ndarray, weights) -> np.ndarray:
    """The engine's ``automatic`` on every slice (each normalised on its own, as the annotator's stack
    embeddings are), labels numbered on from slice to slice."""
    out = np.zeros(stack.shape, np.uint32)
    offset = 0
    for z, plane in enumerate(stack):
        labels = automatic(plane, model=str(weights), device="cpu", **OPEN).labels
        out[z] = np.where(labels > 0, labels + offset, 0)
        offset += int(labels.max())
    return out


# ---------------------------------------------------------------------------- controller, no Qt
def test_controller_stack_modes_match_the_engine_and_reuse_embeddings(stack, small_weights, monkeypatch):
    layer = layers.Image(stack)
    embedding = EmbeddingSettings(model=str(small_weights), device="cpu")
    reference = slice_by_slice(stack, small_weights)
    assert all(reference[z].any() for z in range(4))

    job = plan_automatic(layer, embedding, AutomaticSettings(**OPEN, whole_stack=True, link_3d=False))
    steps = job.steps()
    progress = []
    while True:
        try:
            progress.append(next(steps))
        except StopIteration as stop:
            out = stop.value
            break
    done = [d for d, _ in progress]
    assert done == sorted(done) and progress[0][0] == 0 and progress[-1][0] == progress[-1][1]
    np.testing.assert_array_equal(out.labels, reference)  # per slice, numbered on from slice to slice
    assert out.n_objects == int(reference.max())
    assert out.features["index"].tolist() == list(range(out.n_objects + 1))
    assert out.features["z"].tolist()[1:] == [z for z in range(4) for _ in np.unique(reference[z])[1:]]
    kept = dict(stored(layer, embedding).slices)
    assert sorted(kept) == [0, 1, 2, 3]  # the annotator finds them

    # a second run embeds nothing: the stored embeddings are used
    def no_embedding(*_a, **_k):
        raise AssertionError("embedded again")

    monkeypatch.setattr("napari_sam.engine.embed.embeddings.compute_embeddings", no_embedding)
    monkeypatch.setattr("napari_sam.engine.automatic.generate.compute_embeddings", no_embedding)
    linked = run_automatic(plan_automatic(layer, embedding, AutomaticSettings(**OPEN, whole_stack=True)))
    np.testing.assert_array_equal(linked.labels, link_slices(reference))
    assert linked.features == {}
    one = run_automatic(plan_automatic(layer, embedding, AutomaticSettings(**OPEN), plane=2))
    assert not one.labels[[0, 1, 3]].any() and same_objects(one.labels[2], reference[2])
    assert all(stored(layer, embedding).slices[z] is kept[z] for z in kept)


def test_controller_cancel_empty_image_and_bad_options(small_weights):
    embedding = EmbeddingSettings(model=str(small_weights), device="cpu")
    flat = layers.Image(np.full((3, 40, 40), 7, np.uint16))
    out = run_automatic(plan_automatic(flat, embedding, AutomaticSettings(**OPEN, whole_stack=True)))
    assert out.n_objects == 0 and out.labels.shape == (3, 40, 40) and not out.labels.any()
    assert stored(flat, embedding).slices == {}  # constant slices are not even embedded

    image = layers.Image(nuclei_2d((64, 64), n_objects=3, seed=2)[0])
    steps = plan_automatic(image, embedding, AutomaticSettings(**OPEN)).steps()
    next(steps), next(steps)
    steps.close()  # what the worker's quit does: no error, nothing returned
    with pytest.raises(AnnotatorError, match="pred_iou_thresh"):
        plan_automatic(image, embedding, AutomaticSettings(pred_iou_thresh=1.5))
    with pytest.raises(AnnotatorError, match="slice"):
        plan_automatic(flat, embedding, AutomaticSettings(), plane=None)
    with pytest.raises(AnnotatorError, match="preset"):
        plan_automatic(image, embedding, AutomaticSettings(preset="cells"))
    assert preset_values("auto", "nano") == preset_values("nuclei")
    assert preset_values("auto", "vit_b") == preset_values(None)
    assert preset_values(None)["pred_iou_thresh"] == 0.88


def test_a_slice_too_large_for_whole_embedding_is_segmented_from_the_image(small_weights):
    image = np.zeros((24, 2100), np.uint16)
    image[6:18, 300:320] = 1000
    image[4:20, 1500:1530] = 800
    layer = layers.Image(image)
    embedding = EmbeddingSettings(model=str(small_weights), device="cpu")
    job = plan_automatic(layer, embedding, AutomaticSettings(**OPEN))
    out = run_automatic(job)
    whole = compute_embeddings(image, str(small_weights), device="cpu", tile=False)
    expected = automatic(whole, model=str(small_weights), device="cpu", **OPEN).labels
    np.testing.assert_array_equal(out.labels, expected)
    record = stored(layer, embedding)
    assert record is None or record.slices == {}  # no tiled embeddings were made for it


def test_result_goes_to_a_new_layer_below_the_given_one(small_weights):
    from napari.components import ViewerModel

    viewer = ViewerModel()
    image = viewer.add_image(nuclei_2d((64, 64), n_objects=3, seed=2)[0], scale=(2.0, 2.0))
    mine = viewer.add_labels(np.ones((64, 64), np.uint32), name="SAM automatic")
    points = viewer.add_points(name="points")
    job = plan_automatic(
        image, EmbeddingSettings(model=str(small_weights), device="cpu"), AutomaticSettings(**OPEN)
    )
    out = run_automatic(job)
    new = add_result_layer(viewer, job, out, below=points)
    assert new is not mine and new.name != "SAM automatic" and (mine.data == 1).all()
    assert viewer.layers.index(new) == viewer.layers.index(points) - 1
    assert viewer.layers.selection.active is points
    np.testing.assert_array_equal(new.data, out.labels)
    assert tuple(new.scale) == (2.0, 2.0)


# ---------------------------------------------------------------------------- the panel in napari
def annotator(viewer, model: str | None = None):
    from napari_sam._widgets import AnnotatorWidget

    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    if model is not None:
        widget.embedding.model_combo.setCurrentText(model)
    widget.embedding.device_combo.setCurrentText("cpu")
    return widget


def set_options(panel, preset, points, iou=None, stability=None) -> None:
    panel.set_preset(preset)
    panel.points_spin.setValue(points)
    if iou is not None:
        panel.iou_spin.setValue(iou)
    if stability is not None:
        panel.stability_spin.setValue(stability)


def new_labels(viewer, before):
    return [layer for layer in viewer.layers if layer._type_string == "labels" and layer not in before]


@pytest.mark.usefixtures("gui")
def test_button_adds_a_new_labels_layer_like_the_engine(make_napari_viewer, qtbot, messages):
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer()
    image, truth = nuclei_2d((192, 192), n_objects=8, diameter=(24.0, 36.0), seed=3)
    viewer.add_image(image, name="nuclei")
    mine = viewer.add_labels(truth.copy(), name="my labels")
    widget = annotator(viewer)
    panel = widget.automatic_panel
    assert widget.everything_button is panel.run_button and widget.everything_button.isEnabled()
    assert not panel.scope_combo.isEnabled()  # 2D
    assert panel.points_spin.value() == 32  # auto = nuclei, which keeps the official grid
    assert panel.iou_spin.value() == pytest.approx(PRESETS["nuclei"]["pred_iou_thresh"])
    assert panel.mode() == "auto"
    panel.set_mode("amg")  # the prompt grid, whether or not the shipped nano carries a decoder
    set_options(panel, "nuclei", 4)
    before = list(viewer.layers)
    active = viewer.layers.selection.active

    qtbot.mouseClick(widget.everything_button, Qt.MouseButton.LeftButton)
    assert panel.is_running() and not widget.everything_button.isEnabled()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    (result,) = new_labels(viewer, before)
    assert result.name == "SAM automatic" and result is panel.result_layer
    expected = automatic(image, preset="nuclei", points_per_side=4, model="nano", device="cpu")
    assert expected.n_objects >= 2
    np.testing.assert_array_equal(result.data, expected.labels)
    np.testing.assert_array_equal(mine.data, truth)  # the user's labels are untouched
    assert viewer.layers.selection.active is active
    assert result.features["score"].to_numpy()[1:] == pytest.approx(expected.properties["score"])
    assert any(f"{expected.n_objects} objects found" in text for _, text in messages)
    assert 0 in stored(viewer.layers["nuclei"]).slices  # embedded once, kept for the annotator

    # a second run: another new layer, the first one kept as it is
    first = result.data.copy()
    set_options(panel, "nuclei", 1)
    panel.start()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    (second,) = new_labels(viewer, [*before, result])
    assert second.name != result.name
    np.testing.assert_array_equal(result.data, first)


@pytest.mark.usefixtures("gui")
def test_stack_current_slice_whole_stack_and_cancel(make_napari_viewer, qtbot, stack, small_weights):
    viewer = make_napari_viewer()
    layer = viewer.add_image(stack, name="stack")
    widget = annotator(viewer, str(small_weights))
    panel = widget.automatic_panel
    set_options(panel, None, 4, 0.0, 0.0)
    assert panel.scope_combo.isEnabled() and not panel.link_check.isEnabled()
    reference = slice_by_slice(stack, small_weights)

    def run():
        before = list(viewer.layers)
        assert panel.start() is not None
        qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
        (result,) = new_labels(viewer, before)
        return result.data

    viewer.dims.set_current_step(0, 1)
    labels = run()
    assert labels.shape == stack.shape and not labels[[0, 2, 3]].any()
    assert same_objects(labels[1], reference[1])

    panel.scope_combo.setCurrentText("whole stack")
    assert panel.link_check.isEnabled()
    panel.link_check.setChecked(False)
    np.testing.assert_array_equal(run(), reference)
    panel.link_check.setChecked(True)
    np.testing.assert_array_equal(run(), link_slices(reference))

    # cancelled at once: no layer is added, not even a partial one
    set_options(panel, None, 16, 0.0, 0.0)
    count = len(viewer.layers)
    worker = panel.start()
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert worker is not None and len(viewer.layers) == count
    assert "cancelled" in widget.status_label.text()
    assert layer in viewer.layers and widget.everything_button.isEnabled()


@pytest.mark.usefixtures("gui")
def test_an_image_without_objects_gives_an_empty_layer_and_a_message(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer()
    viewer.add_image(np.full((48, 48), 3, np.uint8), name="blank")
    widget = annotator(viewer)
    widget.automatic_panel.start()
    qtbot.waitUntil(lambda: not widget.automatic_panel.is_running(), timeout=WAIT_MS)
    result = viewer.layers["SAM automatic"]
    assert result.data.shape == (48, 48) and not result.data.any()
    assert any(level == "info" and "no objects found" in text for level, text in messages)
    assert not any(level == "warning" for level, _ in messages)
