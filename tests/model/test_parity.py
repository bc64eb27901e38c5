"""Our model against the official segment-anything outputs stored by scripts/make_golden.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.engine.decode.coords import boxes_xyxy_to_rc
from napari_sam.engine.decode.predict import predict
from napari_sam.engine.embed.embeddings import compute_embeddings
from napari_sam.engine.preprocess import resize_image
from tests.conftest import official_prompts_to_ours

TOL = 1e-4
CASES = ("point", "point_single", "points_posneg", "box", "box_multi", "box_points", "mask_input")


def test_dense_positional_encoding_matches(golden):
    model = golden.model()
    ours = model.prompt_encoder.get_dense_pe().detach().numpy()
    np.testing.assert_allclose(ours, golden.arrays["dense_pe"], atol=1e-6, rtol=0)


def test_resize_is_bit_identical_to_official(golden):
    image = golden.arrays["image"]
    size = tuple(golden.arrays["input_size"])
    np.testing.assert_array_equal(resize_image(image, size), golden.arrays["resized_image"])


def test_encoder_features_match(golden):
    emb = compute_embeddings(golden.arrays["image"], golden.model(), normalize=None)
    assert emb.input_size == tuple(golden.arrays["input_size"])
    assert emb.original_size == tuple(golden.arrays["original_size"])
    diff = np.abs(emb.features.numpy() - golden.arrays["features"]).max()
    assert diff <= TOL, diff


@pytest.fixture(scope="module")
def embedded(golden):
    return golden, compute_embeddings(golden.arrays["image"], golden.model(), normalize=None)


@pytest.mark.parametrize("name", CASES)
def test_prediction_matches(embedded, name):
    golden, emb = embedded
    case = golden.case(name)
    pred = predict(emb, return_logits=True, **official_prompts_to_ours(case))
    assert pred.masks.shape == (1, *case["masks"].shape)
    np.testing.assert_allclose(pred.iou_scores[0], case["iou"], atol=TOL, rtol=0)
    np.testing.assert_allclose(pred.low_res_logits[0], case["low_res"], atol=TOL, rtol=0)
    np.testing.assert_allclose(pred.masks[0], case["masks"], atol=TOL, rtol=0)


def test_batched_boxes_match(embedded):
    golden, emb = embedded
    case = golden.case("batched_boxes")
    pred = predict(emb, box=boxes_xyxy_to_rc(case["boxes"]), multimask=False, return_logits=True)
    assert pred.masks.shape == case["masks"].shape
    np.testing.assert_allclose(pred.iou_scores, case["iou"], atol=TOL, rtol=0)
    np.testing.assert_allclose(pred.masks, case["masks"], atol=TOL, rtol=0)


def test_boolean_masks_threshold_the_logits(embedded):
    golden, emb = embedded
    case = golden.case("box")
    pred = predict(emb, **official_prompts_to_ours(case))
    assert pred.masks.dtype == bool
    confident = np.abs(case["masks"]) > 1e-3
    np.testing.assert_array_equal(pred.masks[0][confident], (case["masks"] > 0)[confident])


def test_best_only_keeps_the_highest_scoring_candidate(embedded):
    golden, emb = embedded
    kwargs = official_prompts_to_ours(golden.case("point"))
    full = predict(emb, return_logits=True, **kwargs)
    best = predict(emb, return_logits=True, best_only=True, **kwargs)
    assert best.masks.shape[1] == 1
    np.testing.assert_allclose(best.masks[:, 0], full.best_masks(), atol=1e-5)
    np.testing.assert_allclose(best.iou_scores[:, 0], full.iou_scores.max(axis=1), atol=1e-6)


def test_model_runs_under_no_grad_and_inference_mode(golden):
    model = golden.model()
    x = torch.randn(1, 3, model.image_size, model.image_size)
    with torch.no_grad():
        a = model.image_encoder(x)
    with torch.inference_mode():
        b = model.image_encoder(x)
    torch.testing.assert_close(a, b)
