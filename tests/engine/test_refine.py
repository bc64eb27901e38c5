"""Refining given labels: segment(masks=), the engine's refine_labels, predict's mask_input forms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

import napari_sam as ns
from napari_sam.data.synthetic import nuclei_2d
from napari_sam.engine.decode.coords import mask_to_box
from napari_sam.engine.refine import (
    RefineOptions,
    RefineWarning,
    assign_points,
    label_boxes,
    refine_labels,
)


@pytest.fixture(scope="module")
def scene():
    image, truth = nuclei_2d((128, 128), n_objects=5, seed=3)
    return image, truth.astype(np.uint32), ns.compute_embeddings(image)


@pytest.fixture(scope="module")
def sam():
    return ns.load_model("nano")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _eroded(truth: np.ndarray, px: int = 2) -> np.ndarray:
    out = np.zeros_like(truth)
    for k in np.unique(truth)[1:]:
        out[ndi.binary_erosion(truth == k, iterations=px)] = k
    return out


def test_refining_eroded_labels_brings_each_id_back_to_its_object(scene, sam):
    _image, truth, emb = scene
    rough = _eroded(truth)
    given = rough.copy()
    result = refine_labels(rough, emb, sam)
    np.testing.assert_array_equal(rough, given)  # the input is never modified
    ids = [int(k) for k in np.unique(rough)[1:]]
    assert list(result.refined) == ids and not result.skipped
    before = np.mean([_iou(truth == k, rough == k) for k in ids])
    after = np.mean([_iou(truth == k, result.labels == k) for k in ids])
    assert after > before + 0.05 and after > 0.75, (before, after)
    assert result.labels.dtype == rough.dtype
    assert set(result.scores) == set(ids)


def test_bad_labels_are_kept_and_named_the_rest_refined(scene, sam):
    _image, truth, emb = scene
    rough = _eroded(truth)
    rough[0, 0] = 90  # one pixel, in the corner (touching the border)
    rough[-3:, 60:70] = 91  # a sliver on the border: refined like any other
    result = refine_labels(rough, emb, sam)
    assert result.skipped[90] == "1 pixel(s), fewer than min_pixels=3"
    assert result.labels[0, 0] == 90  # kept as given
    # the sliver of background is decoded like any label: the model finds an object there (then it is
    # painted, or lost to a nucleus with a higher score) or none (then it is kept as given, and named)
    if 91 in result.refined:
        assert (result.labels == 91).any() or 91 in result.covered
    else:
        assert result.skipped[91] == "the refined mask is empty"
        np.testing.assert_array_equal(result.labels == 91, rough == 91)
    assert set(result.skipped) <= {90, 91}
    with pytest.warns(RefineWarning, match="90: 1 pixel") as said:
        result.warn()
    assert said[0].message.skipped == result.skipped
    # the bad labels are kept as given: every nucleus is still refined
    assert set(result.refined) >= {int(k) for k in np.unique(truth)[1:]}


def test_labels_not_asked_for_keep_every_pixel(scene, sam):
    _image, truth, emb = scene
    rough = _eroded(truth)
    ids = [int(k) for k in np.unique(rough)[1:]]
    result = refine_labels(rough, emb, sam, ids=ids[:1])
    assert result.refined == (ids[0],)
    for k in ids[1:]:
        np.testing.assert_array_equal(result.labels == k, rough == k)
    with pytest.raises(ValueError, match=r"ids: label\(s\) \[77\]"):
        refine_labels(rough, emb, sam, ids=[77])


def test_correction_points_are_given_to_their_labels(scene, sam):
    _image, truth, emb = scene
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6] = 4
    labels[12:18, 12:18] = 7
    pts = np.array([[3.0, 3.0], [10.0, 10.5], [19.0, 19.0]])
    np.testing.assert_array_equal(assign_points(labels, pts), [4, 7, 7])
    np.testing.assert_array_equal(assign_points(labels, pts, [7, 7, 4]), [7, 7, 4])
    rough = _eroded(truth)
    k = int(np.unique(rough)[1])
    with pytest.raises(ValueError, match="point_objects: correction points belong to label"):
        refine_labels(rough, emb, sam, ids=[k], points=np.array([[64.0, 64.0]]), point_objects=[999])


def test_a_correction_click_changes_only_its_label(scene, sam):
    _image, truth, emb = scene
    ids = [int(k) for k in np.unique(truth)[1:]]
    a, b = ids[0], ids[1]
    merged = truth.copy()
    merged[merged == b] = a  # another tool merged two objects into one label
    centre = ndi.distance_transform_edt(truth == b)
    r, c = np.unravel_index(np.argmax(centre), centre.shape)
    click = {"points": np.array([[r, c]], float), "point_labels": np.array([0])}
    clicked = refine_labels(merged, emb, sam, **click)  # a negative click on b, given to label a
    plain = refine_labels(merged, emb, sam)
    assert ((clicked.labels == a) != (plain.labels == a)).any()
    for k in ids[2:]:
        np.testing.assert_array_equal(clicked.labels == k, plain.labels == k)


def test_stack_is_refined_slice_by_slice(scene, sam):
    image, truth, _emb = scene
    rough = _eroded(truth)
    stack = np.stack([rough, np.zeros_like(rough), rough[:, ::-1]])
    images = np.stack([image, image, image[:, ::-1]])
    refined = ns.segment(images, masks=stack)
    assert refined.shape == stack.shape and refined.dtype == np.uint32
    assert not refined[1].any()  # nothing there, nothing made
    np.testing.assert_array_equal(refined[0], ns.segment(image, masks=rough))


def test_segment_masks_checks_its_arguments(scene):
    image, truth, _ = scene
    with pytest.raises(ValueError, match="boxes does not apply when refining masks="):
        ns.segment(image, masks=truth, boxes=[[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="multimask=True does not apply to refining masks"):
        ns.segment(image, masks=truth, multimask=True)
    with pytest.raises(ValueError, match=r"spatial shape \(128, 128\)"):
        ns.segment(image, masks=truth[:64])
    with pytest.raises(ValueError, match="integer labels"):
        ns.segment(image, masks=truth.astype(float))
    with pytest.raises(ValueError, match="point_objects applies to refining masks="):
        ns.segment(image, points=[[5, 5]], point_objects=[1])
    with pytest.raises(ValueError, match="use_box and use_mask are both False"):
        RefineOptions(use_box=False, use_mask=False)


def test_segment_masks_warns_once_and_returns_uint32(scene):
    image, truth, emb = scene
    rough = _eroded(truth).astype(np.int64)
    rough[5, 5] = 50
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = ns.segment(image, masks=rough, embeddings=emb)
    said = [w for w in seen if issubclass(w.category, RefineWarning)]
    assert len(said) == 1 and "50" in str(said[0].message)
    assert out.dtype == np.uint32 and out[5, 5] == 50


def test_label_boxes_are_half_open():
    labels = np.zeros((10, 12), np.uint16)
    labels[2:5, 3:9] = 8
    labels[9, 11] = 3
    ids, boxes, counts = label_boxes(labels)
    assert ids.tolist() == [3, 8]
    assert boxes.tolist() == [[9, 11, 10, 12], [2, 3, 5, 9]]
    assert counts.tolist() == [1, 18]


def test_predict_takes_a_full_size_mask_in_any_binary_form(scene):
    _image, truth, emb = scene
    k = int(np.unique(truth)[1])
    box = mask_to_box(truth == k)
    as_bool = ns.predict(emb, box=box, mask_input=truth == k, multimask=False)
    as_float = ns.predict(emb, box=box, mask_input=(truth == k).astype(np.float32), multimask=False)
    as_int = ns.predict(emb, box=box, mask_input=(truth == k).astype(np.uint8), multimask=False)
    np.testing.assert_array_equal(as_bool.masks, as_float.masks)
    np.testing.assert_array_equal(as_bool.masks, as_int.masks)
    assert _iou(as_bool.masks[0, 0], truth == k) > 0.5
    logits = ns.predict(emb, mask_input=as_bool.low_res_logits[0, 0], multimask=False)  # the old form
    assert logits.masks.shape == (1, 1, 128, 128)
    with pytest.raises(ValueError, match="float of 0 and 1"):
        ns.predict(emb, mask_input=(truth == k) * 0.5, multimask=False)


def test_node_and_cli_refine_labels_keeping_their_ids(scene, tmp_path, capsys):
    import tifffile

    from napari_sam.cli import main
    from napari_sam.nodes import refine_masks

    image, truth, _ = scene
    rough = _eroded(truth)
    k = int(np.unique(rough)[1])
    r, c = np.argwhere(truth == k)[0]  # an edge pixel the erosion removed, nearest to label k
    node = refine_masks(image, rough, points=[[r, c]])
    plain = refine_masks(image, rough)
    assert node.dtype == np.uint32
    assert _iou(node == k, truth == k) > _iou(rough == k, truth == k) + 0.05  # refined towards its object
    assert not np.array_equal(node == k, plain == k)  # the click went to label k and changed its mask
    tifffile.imwrite(tmp_path / "cells.tif", image)
    tifffile.imwrite(tmp_path / "cellpose.tif", rough)
    assert (
        main(
            [
                "segment",
                str(tmp_path / "cells.tif"),
                "--masks",
                str(tmp_path / "cellpose.tif"),
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 0
    )
    written = tifffile.imread(tmp_path / "out" / "cells_labels.tif")
    np.testing.assert_array_equal(written, ns.segment(image, masks=rough))
    assert "cells_labels.tif" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["segment", str(tmp_path / "cells.tif"), "--masks", "x.tif", "--boxes", "b.csv", "--out", "o"])


def _merged(truth: np.ndarray) -> np.ndarray:
    """Objects 3 and 5 of the scene under one label (3), as a tool that merges neighbours gives them."""
    merged = truth.copy()
    merged[truth == 5] = 3
    return merged


def test_one_background_click_splits_a_merged_label(scene, sam):
    _image, truth, emb = scene
    merged = _merged(truth)
    click = np.argwhere(truth == 5).mean(0)[None]  # on the object that does not belong
    result = refine_labels(merged, emb, sam, points=click, point_labels=np.array([0]))
    new = int(merged.max()) + 1
    assert result.split_off == {new: 3} and new in result.scores and 3 in result.refined
    assert _iou(result.labels == 3, truth == 3) > 0.8
    assert _iou(result.labels == new, truth == 5) > 0.8
    for k in (1, 2, 4):  # the other labels are refined as usual, their ids kept
        assert _iou(result.labels == k, truth == k) > 0.7
    # without splitting, the click does not outweigh the label's own mask and box
    whole = refine_labels(
        merged, emb, sam, points=click, point_labels=np.array([0]), options=RefineOptions(split_merged=False)
    )
    assert not whole.split_off and new not in np.unique(whole.labels)
    assert _iou(whole.labels == 3, truth == 3) < 0.7


def test_split_off_ids_start_where_asked_and_widen_a_full_dtype(scene, sam):
    _image, truth, emb = scene
    merged = _merged(truth)
    click = np.argwhere(truth == 5).mean(0)[None]
    result = refine_labels(merged, emb, sam, points=click, point_labels=[0], first_new_id=40)
    assert result.split_off == {40: 3} and result.labels.dtype == merged.dtype
    full = merged.astype(np.uint8)
    full[merged == 4] = 255  # the largest uint8 id is taken
    result = refine_labels(full, emb, sam, points=click, point_labels=[0])
    assert result.split_off == {256: 3} and result.labels.dtype == np.uint32
    np.testing.assert_array_equal(np.unique(result.labels), [0, 1, 2, 3, 255, 256])
    for taken in (0, int(merged.max())):  # an id in use is refused: no split-off part joins a label
        with pytest.raises(ValueError, match="first_new_id must be above the largest label"):
            refine_labels(merged, emb, sam, first_new_id=taken)


def test_labels_drawn_too_large_are_not_split(scene, sam):
    from skimage.segmentation import expand_labels

    _image, truth, emb = scene
    grown = expand_labels(truth, 2)
    result = refine_labels(grown, emb, sam)
    assert not result.split_off
    assert set(np.unique(result.labels)) <= set(np.unique(grown))
    # a background click on the rim trims it without making a new label
    rim = np.argwhere((grown == 1) & (truth != 1))[0][None]
    trimmed = refine_labels(grown, emb, sam, points=rim, point_labels=[0])
    assert not trimmed.split_off
