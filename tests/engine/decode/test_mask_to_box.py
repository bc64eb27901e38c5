"""mask_to_box: the one mask → box helper (half-open (min_row, min_col, max_row, max_col))."""

import numpy as np
import pytest
from skimage.measure import regionprops

from napari_sam.engine.decode.coords import boxes_rc_to_xyxy, mask_to_box


def test_mask_to_box_is_regionprops_bbox():
    mask = np.zeros((9, 12), dtype=bool)
    mask[2:5, 3:10] = True
    mask[7, 1] = True
    box = mask_to_box(mask)
    assert box.dtype == np.int64
    assert tuple(box) == regionprops(mask.astype(np.uint8))[0].bbox == (2, 1, 8, 10)


def test_mask_to_box_single_pixel_and_nonbool():
    mask = np.zeros((4, 4), dtype=np.uint8)
    mask[3, 0] = 7
    assert tuple(mask_to_box(mask)) == (3, 0, 4, 1)
    assert tuple(boxes_rc_to_xyxy(mask_to_box(mask))) == (0.0, 3.0, 0.0, 3.0)


@pytest.mark.parametrize("mask", [np.zeros((3, 3), dtype=bool), np.ones((2, 2, 2), dtype=bool)])
def test_mask_to_box_refuses_empty_or_not_2d(mask):
    with pytest.raises(ValueError, match="mask_to_box needs"):
        mask_to_box(mask)
