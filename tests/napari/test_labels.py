"""Writing masks into a Labels layer: free IDs, no overwriting, one undo step per write (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.labels import combine_masks, next_free_label, write_masks
from napari_sam.errors import AnnotatorError

Labels = pytest.importorskip("napari.layers").Labels


def _disc(shape, centre, radius):
    rr, cc = np.ogrid[: shape[0], : shape[1]]
    return (rr - centre[0]) ** 2 + (cc - centre[1]) ** 2 <= radius**2


def test_write_uses_next_free_ids_and_keeps_painted_labels():
    data = np.zeros((40, 40), np.uint32)
    data[:10, :10] = 7  # painted by hand
    layer = Labels(data)
    a = _disc((40, 40), (5, 5), 8)  # overlaps the painted square
    b = _disc((40, 40), (30, 30), 5)
    ids = write_masks(layer, np.stack([a, b]))
    assert ids == [8, 9]
    assert np.all(layer.data[:10, :10] == 7)  # never overwritten
    assert np.all(layer.data[a & (data == 0)] == 8)
    assert np.all(layer.data[b] == 9)


def test_overwrite_replaces_labels_when_asked():
    layer = Labels(np.full((20, 20), 3, np.uint32))
    mask = np.zeros((20, 20), bool)
    mask[5:10, 5:10] = True
    assert write_masks(layer, mask, overwrite=True) == [4]
    assert np.all(layer.data[mask] == 4)
    assert np.all(layer.data[~mask] == 3)


def test_one_write_is_one_undo_step():
    layer = Labels(np.zeros((30, 30), np.uint32))
    first = _disc((30, 30), (8, 8), 4)
    second = np.stack([_disc((30, 30), (20, 20), 4), _disc((30, 30), (8, 22), 3)])
    write_masks(layer, first)
    write_masks(layer, second)
    assert set(np.unique(layer.data)) == {0, 1, 2, 3}
    layer.undo()
    assert set(np.unique(layer.data)) == {0, 1}
    layer.undo()
    assert not layer.data.any()
    layer.redo()
    assert np.array_equal(layer.data > 0, first)


def test_fully_covered_mask_gets_no_id_and_3d_plane():
    layer = Labels(np.zeros((3, 16, 16), np.uint16))
    mask = np.zeros((16, 16), bool)
    mask[2:6, 2:6] = True
    assert write_masks(layer, mask, plane=1) == [1]
    assert layer.data[1, 3, 3] == 1 and not layer.data[0].any() and not layer.data[2].any()
    assert write_masks(layer, mask, plane=1) == []  # all its pixels are labelled already


def test_shape_and_dtype_errors_name_the_problem():
    layer = Labels(np.zeros((10, 10), np.uint8), name="small")
    with pytest.raises(AnnotatorError, match="shape"):
        write_masks(layer, np.ones((1, 12, 12), bool))
    layer.data[0, 0] = 255
    with pytest.raises(AnnotatorError, match="cannot hold label 256"):
        write_masks(layer, np.ones((1, 10, 10), bool))
    assert layer.data[0, 0] == 255 and layer.data.sum() == 255  # nothing written


def test_combine_masks_higher_score_wins_and_free_label():
    a = np.zeros((1, 4, 4), bool)
    a[0, :2] = True
    b = np.zeros((1, 4, 4), bool)
    b[0, 1:3] = True
    index = combine_masks(np.concatenate([a, b]), scores=[0.9, 0.5])
    assert np.all(index[:2] == 1) and np.all(index[2] == 2) and not index[3].any()
    assert next_free_label(np.zeros((2, 2), np.uint8)) == 1
    assert next_free_label(np.array([[0, 5]])) == 6
