"""Stateless prediction: prompt validation, batching, mask prompts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.engine.decode.predict import Prediction, predict
from napari_sam.engine.embed.embeddings import compute_embeddings


@pytest.fixture(scope="module")
def emb(small_model):
    image = np.random.default_rng(0).integers(0, 4000, (90, 120)).astype(np.uint16)
    return compute_embeddings(image, small_model)


def test_embeddings_record_what_was_done(emb, small_model):
    assert emb.features.shape == (1, *small_model.embedding_shape)
    assert emb.original_size == (90, 120)
    assert emb.input_size == (192, 256)
    record = emb.record()
    assert record["preprocessing"]["normalize"] == "percentile"
    assert len(record["weights_sha256"]) == 64
    assert record["weights_sha256"] == small_model.weights_sha256


def test_prediction_shapes(emb):
    pred = predict(emb, points=[[40, 60]])
    assert isinstance(pred, Prediction)
    assert pred.masks.shape == (1, 3, 90, 120) and pred.masks.dtype == bool
    assert pred.iou_scores.shape == (1, 3) and pred.iou_scores.dtype == np.float32
    assert pred.low_res_logits.shape == (1, 3, 64, 64)
    assert pred.best_masks().shape == (1, 90, 120)
    single = predict(emb, box=[10, 10, 50, 70], multimask=False)
    assert single.masks.shape == (1, 1, 90, 120)


def test_batched_prompts_equal_one_by_one(emb):
    boxes = np.array([[10, 10, 50, 70], [30, 40, 80, 110], [0, 0, 90, 120]])
    batched = predict(emb, box=boxes, multimask=False, return_logits=True)
    for i, box in enumerate(boxes):
        alone = predict(emb, box=box, multimask=False, return_logits=True)
        np.testing.assert_allclose(batched.masks[i], alone.masks[0], atol=1e-4)
        np.testing.assert_allclose(batched.iou_scores[i], alone.iou_scores[0], atol=1e-5)
    points = np.array([[[20, 30]], [[60, 100]]])
    many = predict(emb, points=points, point_labels=[[1], [1]], return_logits=True)
    alone = predict(emb, points=points[1], return_logits=True)
    np.testing.assert_allclose(many.masks[1], alone.masks[0], atol=1e-4)


def test_one_point_set_is_shared_by_all_boxes(emb):
    boxes = np.array([[10, 10, 50, 70], [30, 40, 80, 110]])
    pred = predict(emb, box=boxes, points=[[45, 60]], point_labels=[1], multimask=False)
    assert pred.masks.shape[0] == 2


def test_mask_input_accepts_previous_logits_and_binary_masks(emb):
    first = predict(emb, points=[[40, 60]])
    k = int(first.best_index[0])
    refined = predict(emb, points=[[40, 60]], mask_input=first.low_res_logits[0, k], multimask=False)
    plain = predict(emb, points=[[40, 60]], multimask=False, return_logits=True)
    again = predict(
        emb,
        points=[[40, 60]],
        mask_input=first.low_res_logits[0, k],
        multimask=False,
        return_logits=True,
    )
    assert refined.masks.shape == (1, 1, 90, 120)
    assert not np.allclose(plain.masks, again.masks)  # the mask prompt changes the result
    binary = np.zeros((90, 120), dtype=np.uint32)
    binary[20:60, 30:90] = 7
    from_labels = predict(emb, mask_input=binary, multimask=False)
    assert from_labels.masks.shape == (1, 1, 90, 120)


def test_coordinates_are_rows_then_columns(emb):
    # a point and the box around it in (row, col) must not raise; swapped, the point is outside
    predict(emb, points=[[85, 10]])
    with pytest.raises(ValueError, match="outside the image"):
        predict(emb, points=[[10, 119.9 + 1]])
    with pytest.raises(ValueError, match="outside the image"):
        predict(emb, points=[[100, 10]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [[10, 10]], "point_labels": [1, 1]}, "one label per point"),
        ({"points": [[10, 10]], "point_labels": [2]}, "1 \\(foreground\\) or 0"),
        ({"points": [[10, 10, 3]]}, "shape \\(P, 2\\)"),
        ({"points": [[np.nan, 10]]}, "NaN"),
        ({"points": [[-5, 10]]}, "outside the image"),
        ({"point_labels": [1]}, "without points"),
        ({"box": [50, 10, 20, 40]}, "min < max"),
        ({"box": [10, 10, 20]}, "shape \\(4,\\)"),
        ({"box": [200, 200, 300, 300]}, "entirely outside"),
        ({}, "at least one prompt"),
        ({"mask_input": np.zeros((5, 5), np.float32)}, "mask_input must be"),
        (
            {"box": [[0, 0, 10, 10], [0, 0, 20, 20]], "points": np.zeros((3, 1, 2))},
            "same number",
        ),
    ],
)
def test_bad_prompts_get_clear_errors(emb, kwargs, message):
    with pytest.raises(ValueError, match=message):
        predict(emb, **kwargs)


def test_boxes_reaching_past_the_border_are_clipped(emb):
    inside = predict(emb, box=[10, 10, 90, 120], multimask=False, return_logits=True)
    beyond = predict(emb, box=[10, 10, 500, 700], multimask=False, return_logits=True)
    np.testing.assert_allclose(inside.masks, beyond.masks, atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "k"),
    [({}, 3), ({"best_only": True}, 1), ({"multimask": False, "return_logits": True}, 1)],
)
def test_an_empty_list_of_boxes_predicts_no_object(emb, kwargs, k):
    # as before the restructure: zero boxes are zero objects, not one mask decoded from no prompt
    pred = predict(emb, box=np.zeros((0, 4)), **kwargs)
    assert pred.masks.shape == (0, k, 90, 120)
    assert pred.masks.dtype == (np.float32 if kwargs.get("return_logits") else bool)
    assert pred.iou_scores.shape == (0, k) and pred.iou_scores.dtype == np.float32
    assert pred.low_res_logits.shape == (0, k, 64, 64) and pred.low_res_logits.dtype == np.float32


def test_embeddings_of_another_model_are_refused(emb):
    from tests.conftest import GOLDEN, Golden

    other = Golden(GOLDEN / "small_b").model()
    with pytest.raises(ValueError, match="not the model"):
        predict(emb, points=[[10, 10]], model=other)


def test_predict_needs_embeddings():
    with pytest.raises(TypeError, match="Embeddings"):
        predict(np.zeros((4, 4)), points=[[1, 1]])


def test_tiled_embeddings_take_the_same_mask_forms(small_model):
    from napari_sam.engine.types import TiledEmbeddings

    image = np.random.default_rng(3).integers(0, 255, (90, 160), dtype=np.uint8)
    tiled = compute_embeddings(image, small_model, tile=(96, 16))
    assert isinstance(tiled, TiledEmbeddings)
    labels = np.zeros((90, 160), dtype=np.uint16)
    labels[20:60, 30:90] = 7
    box = [20, 30, 60, 90]
    as_int = predict(tiled, box=box, mask_input=labels, multimask=False, return_logits=True)
    as_float = predict(
        tiled, box=box, mask_input=(labels == 7).astype(np.float32), multimask=False, return_logits=True
    )
    np.testing.assert_array_equal(as_int.masks, as_float.masks)  # one mask, in either form
    without = predict(tiled, box=box, multimask=False, return_logits=True)
    assert not np.allclose(without.masks, as_int.masks)  # and the mask prompt is used
    with pytest.raises(ValueError, match="float of 0 and 1"):
        predict(tiled, box=box, mask_input=(labels == 7) * 0.5, multimask=False)
