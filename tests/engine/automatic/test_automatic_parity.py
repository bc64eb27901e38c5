"""Automatic mask generation against the official ``SamAutomaticMaskGenerator`` (scripts/make_golden.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from napari_sam.engine.automatic.front import automatic
from napari_sam.engine.embed.embeddings import compute_embeddings
from napari_sam.engine.loading import open_model
from tests.conftest import GOLDEN

AMG = GOLDEN / "amg"


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` × ``(M, H, W)`` bool → ``(N, M)`` mask IoU."""
    fa, fb = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1)


def _official(arrays, name: str, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    prefix = f"{name}/"
    case = {k[len(prefix) :]: arrays[k] for k in arrays.files if k.startswith(prefix)}
    n = case["area"].shape[0]
    flat = np.unpackbits(case["packed_masks"], axis=1, count=shape[0] * shape[1])
    case["masks"] = flat.reshape(n, *shape).astype(bool)
    return case


@pytest.fixture(scope="module")
def golden_amg():
    arrays = np.load(AMG / "amg.npz")
    options = json.loads((AMG / "options.json").read_text())
    # the whole-image embedding is shared by the cases (uint8 RGB: the official preprocessing, and the
    # official resize: the longer side always to 1024, however small the image)
    model = open_model("nano")
    model.max_upscale = None
    model.default_object_size = None  # the official geometry, as the reference package's
    embeddings = compute_embeddings(arrays["image"], model, normalize=None)
    return arrays, options, embeddings


@pytest.mark.parametrize("name", ["whole", "crops", "cleanup"])
def test_same_masks_as_official(golden_amg, name):
    arrays, options, embeddings = golden_amg
    if name not in options:
        pytest.skip(f"fixture made without the {name!r} case")
    image = arrays["image"]
    official = _official(arrays, name, image.shape[:2])
    # preset=None: the official thresholds, whatever model made the embeddings
    result = automatic(image, embeddings=embeddings, return_masks=True, preset=None, **options[name])
    ours = result.masks
    assert ours is not None
    assert ours.shape[0] == official["masks"].shape[0] > 0
    iou = pairwise_iou(official["masks"], ours)
    # one-to-one matching (identical masks can come from one grid point's several outputs)
    rows, match = linear_sum_assignment(-iou)
    assert np.array_equal(rows, np.arange(len(rows)))
    assert iou[rows, match].min() >= 0.98
    props = result.mask_properties
    np.testing.assert_allclose(props["score"][match], official["predicted_iou"], atol=1e-4)
    np.testing.assert_allclose(props["stability_score"][match], official["stability_score"], atol=1e-3)
    # official bbox is (x, y, w, h) of inclusive corners; ours (min_row, min_col, max_row, max_col)
    x, y, w, h = official["bbox_xywh"].T
    expected = np.stack([y, x, y + h + 1, x + w + 1], axis=1)
    ours_boxes = np.stack([props[f"bbox-{i}"] for i in range(4)], axis=1)[match]
    assert np.abs(ours_boxes - expected).max() <= 1
    np.testing.assert_allclose(props["point-1"][match], official["point_xy"][:, 0], atol=1e-6)
    np.testing.assert_allclose(props["point-0"][match], official["point_xy"][:, 1], atol=1e-6)
