"""Refining a Labels layer's labels through the annotator (no Qt) and the annotator's Refine panel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

pytest.importorskip("napari")

WAIT_MS = 240_000


@pytest.fixture(scope="module")
def scene():
    from napari_sam.data.synthetic import nuclei_2d

    image, truth = nuclei_2d((128, 128), n_objects=5, seed=3)
    rough = np.zeros(truth.shape, np.uint16)
    for k in np.unique(truth)[1:]:
        rough[ndi.binary_erosion(truth == k, iterations=2)] = k
    return image, truth, rough


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _refiner(viewer, image, rough):
    from napari_sam._napari.annotator import Annotator
    from napari_sam._napari.refine import LabelRefiner

    annotator = Annotator(viewer)
    annotator.set_image(viewer.add_image(image, name="nuclei"))
    for _ in annotator.embedding_steps():
        pass
    refiner = LabelRefiner(annotator)
    layer = viewer.add_labels(rough.copy(), name="cellpose")
    refiner.set_layer(layer)
    return annotator, refiner, layer


def test_one_label_refined_with_a_click_keeps_its_id_in_one_undo_step(scene):
    from napari.components import ViewerModel

    from napari_sam.errors import AnnotatorError

    image, truth, rough = scene
    annotator, refiner, layer = _refiner(ViewerModel(), image, rough)
    k = int(np.unique(rough)[1])
    rows, cols = np.nonzero(rough == k)
    assert refiner.select_at([rows[0], cols[0]]) == k
    with pytest.raises(AnnotatorError, match="no label there"):
        refiner.select_at([0, 0] if rough[0, 0] == 0 else [127, 127])
    refiner.select(k)
    result = refiner.update_preview()
    assert annotator.preview_layer.data.any() and result.refined == (k,)
    changed = refiner.commit()
    assert changed > 0
    assert _iou(layer.data == k, truth == k) > _iou(rough == k, truth == k)
    others = (rough != k) & (rough > 0)
    np.testing.assert_array_equal(layer.data[others], rough[others])  # other labels keep every pixel
    layer.undo()
    np.testing.assert_array_equal(layer.data, rough)


def test_every_label_of_the_layer_refined_as_one_undo_step(scene):
    from napari.components import ViewerModel

    from napari_sam.engine.steps import run_steps

    image, truth, rough = scene
    _annotator, refiner, layer = _refiner(ViewerModel(), image, rough)
    result = run_steps(refiner.refine_all_steps())
    assert refiner.write(result, None) > 0
    ids = [int(k) for k in np.unique(rough)[1:]]
    before = np.mean([_iou(rough == k, truth == k) for k in ids])
    after = np.mean([_iou(layer.data == k, truth == k) for k in ids])
    assert after > before + 0.05
    layer.undo()
    np.testing.assert_array_equal(layer.data, rough)


def test_a_background_click_splits_a_merged_label_into_a_new_label(scene):
    from napari.components import ViewerModel

    from napari_sam.errors import AnnotatorError

    image, truth, _rough = scene
    merged = truth.astype(np.uint16)
    merged[truth == 5] = 3  # another tool gave objects 3 and 5 one label
    annotator, refiner, layer = _refiner(ViewerModel(), image, merged)
    refiner.select(3)
    annotator.points_layer.add(np.argwhere(truth == 5).mean(0))
    annotator.points_layer.features.loc[0, "label"] = 0  # a background click on object 5
    result = refiner.update_preview()
    new = int(merged.max()) + 1  # the layer's next free id
    assert result.split_off == {new: 3}
    assert int(annotator.preview_layer.data.max()) == 2  # the label and its split-off part
    assert refiner.commit() > 0
    assert _iou(layer.data == 3, truth == 3) > 0.8 and _iou(layer.data == new, truth == 5) > 0.8
    layer.undo()
    np.testing.assert_array_equal(layer.data, merged)
    # an id painted between the preview and the commit is never given to the split-off object
    annotator.points_layer.add(np.argwhere(truth == 5).mean(0))
    annotator.points_layer.features.loc[0, "label"] = 0
    result = refiner.update_preview()
    assert result.split_off == {new: 3}
    layer.data_setitem((np.array([0]), np.array([0])), np.array([new], layer.data.dtype))
    with pytest.raises(AnnotatorError, match=f"label {new}, meant for the object split off"):
        refiner.write(result, None)


@pytest.mark.usefixtures("gui")
def test_refine_panel_picks_commits_and_refines_all(make_napari_viewer, qtbot, scene):
    from napari_sam._widgets import AnnotatorWidget

    image, _truth, rough = scene
    viewer = make_napari_viewer()
    viewer.add_image(image, name="nuclei")
    widget = AnnotatorWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM annotator")
    panel = widget.refine_panel
    layer = viewer.add_labels(rough.copy(), name="cellpose")
    panel.set_layer(layer)
    k = int(np.unique(rough)[1])
    rows, cols = np.nonzero(rough == k)
    worker = widget.embedding.start([None], widget.annotator.image_layer)
    if worker is not None:
        qtbot.waitUntil(lambda: not widget.embedding.is_running(), timeout=WAIT_MS)
    assert panel.pick([rows[0], cols[0]]) == k
    assert panel.selected_label.text() == f"label {k}"
    assert panel.commit() > 0
    layer.undo()
    np.testing.assert_array_equal(layer.data, rough)
    assert panel.start() is not None
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=WAIT_MS)
    assert (layer.data != rough).any()
    layer.undo()
    np.testing.assert_array_equal(layer.data, rough)
