"""The Otsu-in-box baseline: what a box alone gives without a model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.engine.decode.coords import mask_to_box
from napari_sam.engine.training.box_baseline import otsu_in_box, otsu_in_boxes
from napari_sam.engine.training.evaluate import masks_iou


def _disc(shape, centre, radius):
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _noisy(mask, seed=0, contrast=100.0, noise=10.0):
    rng = np.random.default_rng(seed)
    return 50.0 + contrast * mask + rng.normal(0.0, noise, mask.shape)


def test_finds_a_bright_disc_in_its_box():
    truth = _disc((96, 96), (40, 50), 12)
    image = _noisy(truth).astype(np.uint16)
    r0, c0, r1, c1 = mask_to_box(truth)
    mask = otsu_in_box(image, (r0 - 4, c0 - 4, r1 + 4, c1 + 4))
    assert mask.shape == truth.shape and mask.dtype == bool
    assert masks_iou(mask[None], truth[None])[0] > 0.9
    assert not mask[: r0 - 4].any() and not mask[:, c1 + 4 :].any()  # nothing outside the box


def test_keeps_the_largest_component_with_its_holes_filled():
    big = _disc((80, 80), (30, 30), 14)
    ring = big & ~_disc((80, 80), (30, 30), 5)
    small = _disc((80, 80), (60, 60), 6)
    image = 10.0 * (ring | small)
    mask = otsu_in_box(image, (0, 0, 80, 80))
    np.testing.assert_array_equal(mask, big)  # the small disc dropped, the ring's hole filled


def test_a_multichannel_image_is_thresholded_on_its_channel_mean():
    truth = _disc((64, 64), (30, 30), 10)
    plane = _noisy(truth, seed=1)
    stacked = np.stack([plane, np.full_like(plane, 7.0), plane], axis=-1)
    box = (10, 10, 50, 50)
    np.testing.assert_array_equal(otsu_in_box(stacked, box), otsu_in_box(plane, box))


def test_a_box_without_pixels_or_without_contrast_gives_an_empty_mask():
    image = _noisy(_disc((40, 40), (20, 20), 8))
    assert not otsu_in_box(image, (10, 10, 10, 30)).any()  # zero rows
    assert not otsu_in_box(np.full((40, 40), 3.0), (5, 5, 30, 30)).any()
    background = _noisy(np.zeros((40, 40), dtype=bool), seed=2)
    noise_only = otsu_in_box(background, (5, 5, 25, 25))  # Otsu still splits the noise, inside the box only
    assert not noise_only[25:].any() and not noise_only[:, 25:].any()


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ((1, 2, 3), r"box must have shape \(4,\)"),
        ((5, 5, 2, 8), "box must be half-open"),
        ((0, 0, 41, 10), "box must be half-open"),
        ((-1, 0, 10, 10), "box must be half-open"),
        ((0.5, 0, 10, 10), "box must hold integer"),
        ((0, 0, np.nan, 10), "box must hold integer"),
        ("abcd", "box must be numbers"),
    ],
)
def test_a_bad_box_is_refused_by_name(box, match):
    with pytest.raises(ValueError, match=match):
        otsu_in_box(np.zeros((40, 40)), box)


def test_a_bad_image_is_refused():
    with pytest.raises(ValueError, match="image must be"):
        otsu_in_box(np.zeros((2, 40, 40, 3)), (0, 0, 10, 10))
    with pytest.raises(TypeError, match="image must have a real"):
        otsu_in_box(np.zeros((40, 40), dtype=complex), (0, 0, 10, 10))
    image = np.zeros((40, 40))
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        otsu_in_box(image, (0, 0, 10, 10))


def test_many_boxes_give_the_single_box_masks():
    truth = _disc((64, 64), (20, 20), 8) | _disc((64, 64), (45, 44), 11)
    image = _noisy(truth, seed=3)
    boxes = np.array([[8, 8, 33, 33], [30, 30, 60, 60], [0, 0, 0, 5]])
    masks = otsu_in_boxes(image, boxes)
    assert masks.shape == (3, 64, 64)
    for mask, box in zip(masks, boxes, strict=True):
        np.testing.assert_array_equal(mask, otsu_in_box(image, box))
    assert otsu_in_boxes(image, np.zeros((0, 4), dtype=int)).shape == (0, 64, 64)
    with pytest.raises(ValueError, match=r"boxes\[1\] must be half-open"):
        otsu_in_boxes(image, [[0, 0, 5, 5], [0, 0, 65, 5]])
    with pytest.raises(ValueError, match=r"boxes must have shape \(N, 4\)"):
        otsu_in_boxes(image, [0, 0, 5, 5])
