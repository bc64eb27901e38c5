"""Pipeline nodes called as plain functions with numpy arrays (the napari widget way: tests/napari)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.data.synthetic import nuclei_2d
from napari_sam.errors import CacheMismatchError
from napari_sam.nodes import (
    automatic_segmentation,
    compute_embeddings_to_cache,
    segment_from_prompts,
    shapes_to_boxes,
)


@pytest.fixture(scope="module")
def sample():
    return nuclei_2d((512, 512), n_objects=30, seed=0)


def _corners(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    r0, r1, c0, c1 = rows.min(), rows.max(), cols.min(), cols.max()
    return np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], dtype=float)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_shapes_to_boxes_pixel_centres_half_open():
    boxes = shapes_to_boxes([np.array([[2.0, 3.0], [2.0, 9.0], [7.0, 9.0], [7.0, 3.0]])])
    assert boxes.tolist() == [[2, 3, 8, 10]]
    boxes = shapes_to_boxes([np.array([[4.0, 1.2, 2.0], [4.0, 5.7, 8.0]])])
    assert boxes.tolist() == [[4, 2, 2, 5, 6, 9]]
    assert shapes_to_boxes(None).shape == (0, 4)
    with pytest.raises(ValueError, match="boxes"):
        shapes_to_boxes([np.zeros((3, 4))])


def test_segment_from_prompts_2d_boxes_and_points(sample):
    image, truth = sample
    labels = segment_from_prompts(
        image, points=[[94, 24]], boxes=[_corners(truth == 1), _corners(truth == 2)]
    )
    assert labels.shape == image.shape and labels.dtype == np.uint32
    assert set(np.unique(labels)) == {0, 1, 2, 3}  # boxes first, then the point
    assert _iou(labels == 1, truth == 1) >= 0.8
    assert _iou(labels == 2, truth == 2) >= 0.8
    assert labels[94, 24] == 3 and truth[94, 24] == 23


def test_segment_from_prompts_3d_slice_by_slice(sample):
    image, truth = sample
    stack = np.stack([image, image[::-1]])
    corners = _corners(truth == 1)
    box3d = np.column_stack([np.ones(len(corners)), corners])  # on slice 1 (flipped image)
    box3d[:, 1] = 511 - box3d[:, 1]
    labels = segment_from_prompts(stack, points=[[0, 94, 24]], boxes=[box3d])
    assert labels.shape == stack.shape
    assert labels[0, 94, 24] == 1
    assert set(np.unique(labels[0])) == {0, 1} and set(np.unique(labels[1])) == {0, 2}
    assert _iou(labels[1] == 2, (truth == 1)[::-1]) >= 0.8


def test_segment_from_prompts_bad_input(sample):
    image, _ = sample
    with pytest.raises(ValueError, match="needs points or boxes"):
        segment_from_prompts(image)
    with pytest.raises(ValueError, match=r"points are 3D \(z, row, col\) but the image is 2D"):
        segment_from_prompts(image, points=[[0, 1, 2]])
    with pytest.raises(ValueError, match="outside the image"):
        segment_from_prompts(image, points=[[600, 10]])
    with pytest.raises(ValueError, match="image must be 2D"):
        segment_from_prompts(np.zeros((2, 3, 64, 64)), points=[[0, 1]])


def test_compute_embeddings_to_cache_writes_a_reusable_store(sample, tmp_path):
    from napari_sam.engine.embed.store import is_embedding_store, open_store

    image, _ = sample
    path = tmp_path / "nuclei.zarr"
    assert compute_embeddings_to_cache(image, cache=path) is None
    assert is_embedding_store(path)
    store = open_store(path)
    assert store.done_mask().all() and store.meta["model"]["name"] == "nano"
    with pytest.raises(CacheMismatchError):  # another image into the same cache: refused
        compute_embeddings_to_cache(image[:256], cache=path)


@pytest.mark.slow
def test_automatic_segmentation_finds_nuclei(sample):
    image, truth = sample
    labels = automatic_segmentation(image)
    assert labels.shape == image.shape and labels.dtype == np.uint32
    found = 0
    for k in range(1, int(truth.max()) + 1):
        overlap = labels[truth == k]
        best = np.bincount(overlap[overlap > 0]).argmax() if overlap.any() else 0
        found += best > 0 and _iou(labels == best, truth == k) >= 0.5
    assert found >= 0.5 * truth.max(), found


def test_automatic_segmentation_checks_input_before_running():
    with pytest.raises(ValueError, match="preset"):
        automatic_segmentation(np.zeros((64, 64), np.uint8), preset="cells")
    with pytest.raises(ValueError, match="image must be 2D"):
        automatic_segmentation(np.zeros((2, 3, 64, 64), np.float32))


@pytest.fixture(scope="module")
def small_sample():
    return nuclei_2d((96, 96), n_objects=6, seed=3)


def test_segment_from_prompts_object_size_as_segment_takes_it(small_sample):
    import napari_sam as ns

    image, truth = small_sample
    corners = _corners(truth == 1)
    box = shapes_to_boxes([corners])
    # a number (also as the widget's text), and "auto": the boxes' median size
    expected = ns.segment(image, boxes=box, object_size=8, device="cpu")
    for size in (8.0, " 8 "):
        node = segment_from_prompts(image, boxes=[corners], object_size=size, device="cpu")
        np.testing.assert_array_equal(node, expected, repr(size))
    expected = ns.segment(image, boxes=box, object_size="auto", device="cpu")
    node = segment_from_prompts(image, boxes=[corners], object_size="auto", device="cpu")
    np.testing.assert_array_equal(node, expected)


@pytest.mark.parametrize("bad", ["big", 0, -4.0, float("nan"), "0"])
def test_nodes_refuse_a_bad_object_size_before_running(bad, tmp_path):
    image = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="object_size"):
        segment_from_prompts(image, points=[[4, 4]], object_size=bad)
    with pytest.raises(ValueError, match="object_size"):
        automatic_segmentation(image, object_size=bad)
    with pytest.raises(ValueError, match="object_size"):
        compute_embeddings_to_cache(image, cache=tmp_path / "c.zarr", object_size=bad)
    assert not (tmp_path / "c.zarr").exists()


def test_object_size_reaches_the_cache_and_automatic_segmentation(small_sample, tmp_path):
    import napari_sam as ns
    from napari_sam.engine.embed.store import open_store

    image, _ = small_sample
    path = tmp_path / "nuclei.zarr"
    compute_embeddings_to_cache(image, cache=path, object_size=40)
    preprocessing = open_store(path).meta["preprocessing"]
    assert preprocessing["object_size"] == 40.0
    assert ns.open_embeddings(path).input_size == tuple(round(96 * preprocessing["scale"]) for _ in "yx")
    labels = automatic_segmentation(image, object_size=8, device="cpu")
    np.testing.assert_array_equal(labels, ns.segment(image, object_size=8, device="cpu"))
    assert not np.array_equal(labels, automatic_segmentation(image, object_size="fixed", device="cpu"))
