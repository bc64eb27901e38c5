"""Images with more than four channels (issue 16, item 10).

A ``(Y, X, 5)`` image has the shape of a stack of ``Y`` slices. With ``channel=`` it is read as an
image with five channels; without it, it stays a stack and a :class:`~napari_sam.errors.LayoutWarning`
says so and names ``channel_axis=-1``. Real stacks with few slices, ``(5, Y, X)``, are never
reinterpreted.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.engine.embed.layout import image_layout
from napari_sam.errors import LayoutWarning
from tests.conftest import GOLDEN, Golden

BOX = [[10, 12, 40, 44]]


@pytest.fixture(scope="module")
def model():
    return Golden(GOLDEN / "small_a").model()


@pytest.fixture(scope="module")
def five() -> np.ndarray:
    """``(56, 64, 5)`` uint16: each channel another bright rectangle on noise."""
    rng = np.random.default_rng(3)
    image = rng.integers(100, 400, size=(56, 64, 5)).astype(np.uint16)
    for c in range(5):
        image[12 + 2 * c : 36 + c, 14 + 3 * c : 40, c] += 5000
    return image


@pytest.mark.parametrize("channel", [0, 3, -1])
def test_channel_reads_the_last_axis_as_channels(five, model, channel):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        labels = ns.segment(five, boxes=BOX, channel=channel, model=model)
    expected = ns.segment(five[..., channel], boxes=BOX, model=model)
    assert labels.shape == (56, 64)
    assert expected.any()
    np.testing.assert_array_equal(labels, expected)


def test_channel_triplet_maps_to_rgb_and_embeddings_match(five, model):
    emb = ns.compute_embeddings(five, model, channel=(4, 1, 2))
    ref = ns.compute_embeddings(np.ascontiguousarray(five[..., [4, 1, 2]]), model)
    assert emb.original_size == (56, 64)
    assert emb.preprocessing.channel == (4, 1, 2)
    np.testing.assert_array_equal(emb.features.numpy(), ref.features.numpy())
    layout = image_layout(five, channel=(4, 1, 2))
    assert not layout.is_volume and layout.plane_shape == (56, 64)


def test_a_stack_with_many_channels_and_a_channel(five, model):
    stack = np.stack([five, five[::-1]])  # (2, 56, 64, 5)
    layout = image_layout(stack, channel=2)
    assert layout.is_volume and layout.spatial_shape == (2, 56, 64)
    vol = ns.compute_embeddings(stack, model, channel=2, slices=[1])
    ref = ns.compute_embeddings(np.ascontiguousarray(five[::-1, :, 2]), model)
    np.testing.assert_array_equal(vol[1].features.numpy(), ref.features.numpy())
    labels = ns.segment(
        stack, boxes=[[1, *BOX[0][:2], 2, *BOX[0][2:]]], channel=2, model=model, propagate=False
    )
    assert labels.shape == (2, 56, 64) and labels[1].any() and not labels[0].any()


def test_without_channel_it_is_read_as_a_stack_and_a_warning_says_so(five):
    with pytest.warns(LayoutWarning, match=r"channel_axis=-1") as record:
        layout = image_layout(five)
    assert layout.is_volume and layout.spatial_shape == (56, 64, 5)
    assert "(56, 64, 5)" in str(record[0].message)
    assert len(record) == 1
    # told explicitly, nothing to warn about
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        assert not image_layout(five, channel_axis=-1).is_volume


@pytest.mark.parametrize("propagate", [False, True])
def test_one_segment_call_warns_once(five, model, propagate):
    """segment reads the layout, then compute_embeddings and propagate read it again: one warning."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ns.segment(five, boxes=[[10, 0, 0, 11, 64, 5]], model=model, propagate=propagate)
        ns.propagate(five, boxes=[[10, 0, 0, 11, 64, 5]], model=model)
    said = [w for w in record if issubclass(w.category, LayoutWarning)]
    assert len(said) == 2, [f"{w.filename}:{w.lineno}" for w in said]  # once per call


def test_a_2d_entry_point_says_how_to_pick_a_channel(five, model):
    with pytest.raises(ValueError, match=r"5 channels; pass channel="):
        ns.automatic(five, model=model, points_per_side=2)
    result = ns.automatic(five, model=model, points_per_side=2, channel=1)
    assert result.labels.shape == (56, 64)


@pytest.mark.parametrize("shape", [(5, 48, 64), (3, 16, 16), (6, 40, 40)])
@pytest.mark.parametrize("channel", [None, 0])
def test_real_stacks_with_few_slices_stay_stacks(shape, channel):
    stack = np.zeros(shape, np.uint16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        layout = image_layout(stack, channel=channel)
    assert layout.is_volume and layout.spatial_shape == shape


def test_a_five_slice_stack_is_segmented_as_a_stack(model):
    rng = np.random.default_rng(5)
    stack = rng.integers(0, 300, size=(5, 48, 64)).astype(np.uint16)
    stack[:, 10:30, 15:40] += 4000
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        labels = ns.segment(stack, boxes=[[2, 8, 12, 3, 32, 44]], model=model, propagate=False)
    assert labels.shape == (5, 48, 64) and labels[2].any() and not labels[[0, 1, 3, 4]].any()


@pytest.mark.parametrize(
    ("shape", "channel", "match"),
    [
        ((56, 64, 5), 7, r"channel=7 .*last axis .*5"),
        ((56, 64, 5), (0, 9), r"channel=\(0, 9\) .*last axis .*5"),
        ((5, 48, 64), 2, r"channel=2 .*\(Z, Y, X\) stack.*channel_axis=-1"),
        ((2, 56, 64, 40), 1, r"channel_axis="),
    ],
)
def test_a_channel_that_cannot_apply_is_a_clear_error(shape, channel, match):
    with pytest.raises(ValueError, match=match):
        image_layout(np.zeros(shape, np.uint16), channel=channel)


def test_propagate_reads_a_many_channel_stack_with_channel(five, model):
    stack = np.stack([five, five, five])  # (3, 56, 64, 5): the same plane three times
    seed = np.zeros((56, 64), np.uint32)
    seed[14:36, 16:40] = 7
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayoutWarning)
        result = ns.propagate(stack, seed, z=1, channel=2, model=model)
    expected = ns.propagate(np.ascontiguousarray(stack[..., 2]), seed, z=1, model=model)
    assert result.labels.shape == (3, 56, 64)
    np.testing.assert_array_equal(result.labels, expected.labels)


def test_a_batch_of_many_channel_images_with_channel(five, tmp_path):
    import tifffile

    from napari_sam.batch import read_prompts_csv, segment_files
    from tests.conftest import GOLDEN

    folder = tmp_path / "images"
    folder.mkdir()
    tifffile.imwrite(folder / "cells.tif", five)
    table = tmp_path / "boxes.csv"
    table.write_text("file,min_row,min_col,max_row,max_col\ncells.tif,10,12,40,44\n")
    weights = str(GOLDEN / "small_a" / "weights.pth")
    summary = segment_files(
        [folder],
        tmp_path / "out",
        boxes=read_prompts_csv(table, "boxes"),
        channel=3,
        model=weights,
        progress=False,
    )
    assert summary.ok == ["cells.tif"], summary.text()
    labels = tifffile.imread(tmp_path / "out" / "cells_labels.tif")
    expected = ns.segment(five[..., 3], boxes=BOX, model=weights)
    np.testing.assert_array_equal(labels, expected)
