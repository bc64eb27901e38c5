"""Which parts of a label are other objects: the rules of napari_sam.engine.leftovers on drawn masks."""

from __future__ import annotations

import numpy as np

from napari_sam.engine.leftovers import cut_at_click, object_pieces

YY, XX = np.mgrid[:60, :120]


def _disk(row: float, col: float, radius: float) -> np.ndarray:
    return (YY - row) ** 2 + (XX - col) ** 2 < radius**2


def test_a_whole_neighbour_joined_by_a_bridge_is_one_piece():
    first, second = _disk(30, 30, 14), _disk(30, 62, 13)
    bridge = (np.abs(YY - 30) <= 1) & (XX >= 40) & (XX <= 52)  # the gap a merging tool closed
    pieces = object_pieces((first | second | bridge) & ~first, first)
    assert len(pieces) == 1
    assert (pieces[0] & second).sum() == second.sum()  # all of the neighbour, with its bridge
    assert not (pieces[0] & first).any()


def test_small_or_thin_parts_are_not_objects():
    first = _disk(30, 30, 14)
    assert object_pieces(_disk(30, 30, 17) & ~first, first) == []  # a rim 3 px wide
    assert object_pieces(_disk(30, 62, 5) & ~first, first) == []  # an eighth of the area
    sliver = (YY >= 10) & (YY < 50) & (XX >= 60) & (XX < 63)  # as large as a quarter, 3 px thick
    assert object_pieces(sliver, first) == []
    assert object_pieces(_disk(30, 62, 10), np.zeros_like(first)) == []  # nothing refined to compare


def test_two_neighbours_are_two_pieces_largest_first():
    first = _disk(30, 30, 12)
    left_out = _disk(30, 60, 11) | _disk(30, 95, 13)
    pieces = object_pieces(left_out, first)
    assert [int(p.sum()) for p in pieces] == sorted(
        (int(_disk(30, 95, 13).sum()), int(_disk(30, 60, 11).sum())), reverse=True
    )


def test_a_click_cuts_only_a_share_of_the_label():
    first, second = _disk(30, 30, 14), _disk(30, 58, 13)
    label = first | second
    centre = np.array([30, 58])
    np.testing.assert_array_equal(cut_at_click(label, second, centre), first & ~second)
    assert cut_at_click(label, label, centre) is None  # the click's object is the label itself
    assert cut_at_click(label, _disk(30, 58, 3), centre) is None  # a trim: the point prompt does it
    assert cut_at_click(np.zeros_like(label), second, centre) is None


def test_a_click_near_the_edge_does_not_cut():
    grown = _disk(30, 30, 16)
    rim = np.array([15, 30])  # on the rim of a label drawn 2 px too large
    half = grown & (YY < 30)  # what a point prompt on the rim might return
    assert cut_at_click(grown, half, rim) is None
    inner = np.array([22, 30])  # the same part, clicked deep inside
    assert cut_at_click(grown, half, inner) is not None


def test_object_at_a_click_on_plain_and_tiled_embeddings():
    import napari_sam as ns
    from napari_sam.data.synthetic import nuclei_2d
    from napari_sam.engine.leftovers import object_at
    from napari_sam.engine.types import TiledEmbeddings

    image, truth = nuclei_2d((600, 1400), n_objects=20, seed=2)
    k = int(np.unique(truth)[1])
    click = np.argwhere(truth == k).mean(0)
    for tile in (False, True):
        emb = ns.compute_embeddings(image, tile=tile)
        assert isinstance(emb, TiledEmbeddings) == tile
        found = object_at(emb, click, truth.shape, None)
        assert found.shape == truth.shape and found.dtype == bool
        assert (found & (truth == k)).sum() / (found | (truth == k)).sum() > 0.7  # the clicked nucleus
