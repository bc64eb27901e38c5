"""napari prompts that used to be misread silently (issue 16, item 13, the napari / nodes parts).

* a Points layer's ``label`` feature holding NaN, None, 2 or a typo used to count as a positive (or
  negative) point; now it is an error naming the layer, the point and the value;
* a 2D Points / Shapes layer over a 3D stack used to act on slice 0 only and be ignored on every other
  slice; now it is an error naming the layer, the image and their dimensions;
* identical boxes used to leave one object's label silently missing; now they are merged into one
  object, with a message naming both boxes.

Everything runs on napari layer objects without a viewer window, and on the tiny random golden model.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import napari_sam as ns
from napari_sam import nodes
from napari_sam._napari.prompts import prompts_from_layers
from napari_sam.errors import AnnotatorError

from .conftest import Env

layers = pytest.importorskip("napari.layers")

RECT_A = np.array([[10.0, 20.0], [10.0, 39.0], [29.0, 39.0], [29.0, 20.0]])  # pixels 10..29 × 20..39
RECT_B = np.array([[2.0, 2.0], [2.0, 15.0], [12.0, 15.0], [12.0, 2.0]])  # pixels 2..12 × 2..15


def _on_slice(z: int, rect: np.ndarray) -> np.ndarray:
    """``(4, 3)`` ``(z, row, col)`` vertices of a 2D rectangle drawn on slice ``z``."""
    return np.column_stack([np.full(len(rect), float(z)), rect])


def _duplicate_warnings(record: list[warnings.WarningMessage]) -> list[Warning]:
    return [w.message for w in record if "identical" in str(w.message)]


# ---------------------------------------------------------------------------------------- label feature
@pytest.mark.parametrize(
    ("value", "said"),
    [
        (np.nan, "has no label (NaN)"),
        (None, "has no label (NaN)"),  # napari stores a missing value as NaN
        (2, "has label '2'"),  # napari stores a column of mixed types as text
        (-1, "has label '-1'"),
        (0.5, "has label '0.5'"),
        ("nagative", "has label 'nagative'"),
        ("", "has label ''"),
        ("maybe", "has label 'maybe'"),
    ],
    ids=["nan", "none", "two", "minus-one", "half", "typo", "empty", "word"],
)
def test_a_label_that_is_not_positive_or_negative_is_an_error(value, said):
    image = layers.Image(np.zeros((48, 64), np.float32), name="cells")
    points = layers.Points(
        np.array([[5.0, 6.0], [20.0, 30.0], [40.0, 50.0]]),
        features={"label": ["positive", value, "negative"]},
        name="clicks",
    )
    with pytest.raises(AnnotatorError) as caught:
        prompts_from_layers(image, points)
    text = str(caught.value)
    assert "'clicks'" in text  # the layer
    assert "point 1 at (20, 30)" in text  # which point, and where
    assert said in text  # the value itself
    assert "'positive'" in text and "'negative'" in text  # what is expected


def test_a_numeric_label_column_is_read_and_checked():
    image = layers.Image(np.zeros((48, 64), np.float32))
    points = layers.Points(np.array([[5.0, 6.0], [20.0, 30.0]]), features={"label": [1.0, 0.0]})
    assert prompts_from_layers(image, points).point_labels.tolist() == [1, 0]
    points.features = {"label": [1.0, 2.0]}
    with pytest.raises(AnnotatorError, match=r"point 1 at \(20, 30\) has label 2\.0"):
        prompts_from_layers(image, points)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["positive", "negative", " Negative ", "POSITIVE"], [1, 0, 0, 1]),
        ([True, False, True, False], [1, 0, 1, 0]),
        ([1, 0, 1.0, 0.0], [1, 0, 1, 0]),
        (["pos", "neg", "foreground", "background"], [1, 0, 1, 0]),
        (["1", "0", "true", "false"], [1, 0, 1, 0]),
    ],
)
def test_the_accepted_label_spellings_still_read(values, expected):
    image = layers.Image(np.zeros((48, 64), np.float32))
    data = np.array([[5.0, 6.0], [10.0, 12.0], [20.0, 30.0], [40.0, 50.0]])
    points = layers.Points(data, features={"label": values})
    assert prompts_from_layers(image, points).point_labels.tolist() == expected


def test_a_bad_label_on_another_slice_does_not_block_this_one():
    image = layers.Image(np.zeros((4, 48, 64), np.float32), name="stack")
    points = layers.Points(
        np.array([[1.0, 5.0, 6.0], [2.0, 20.0, 30.0]]),
        features={"label": [np.nan, "negative"]},
        name="clicks",
    )
    assert prompts_from_layers(image, points, plane=2).point_labels.tolist() == [0]
    with pytest.raises(AnnotatorError, match=r"'clicks'.*point 0 at \(1, 5, 6\) has no label"):
        prompts_from_layers(image, points, plane=1)


# ---------------------------------------------------------------------------------------- 2D layer, 3D image
@pytest.mark.parametrize("plane", [0, 2])
def test_a_2d_points_layer_on_a_stack_is_an_error_on_every_slice(plane):
    image = layers.Image(np.zeros((4, 48, 64), np.float32), name="stack")
    points = layers.Points(np.array([[5.0, 6.0]]), name="clicks 2D")
    with pytest.raises(AnnotatorError) as caught:
        prompts_from_layers(image, points, plane=plane)
    text = str(caught.value)
    assert "points layer 'clicks 2D' is 2D" in text and "image 'stack' is 3D" in text
    assert "(z, row, col)" in text  # how to fix it


@pytest.mark.parametrize("plane", [0, 2])
def test_a_2d_shapes_layer_on_a_stack_is_an_error_on_every_slice(plane):
    image = layers.Image(np.zeros((4, 48, 64), np.float32), name="stack")
    shapes = layers.Shapes([RECT_A], shape_type="rectangle", name="boxes 2D")
    with pytest.raises(AnnotatorError) as caught:
        prompts_from_layers(image, shapes_layer=shapes, plane=plane)
    assert "shapes layer 'boxes 2D' is 2D" in str(caught.value) and "image 'stack' is 3D" in str(caught.value)


def test_empty_or_matching_layers_on_a_stack_are_fine():
    image = layers.Image(np.zeros((4, 48, 64), np.float32), name="stack")
    empty_2d = layers.Points(np.zeros((0, 2)), name="nothing yet")
    assert prompts_from_layers(image, empty_2d, layers.Shapes(ndim=2), plane=1).empty
    points = layers.Points(np.array([[1.0, 5.0, 6.0]]))
    shapes = layers.Shapes([_on_slice(1, RECT_A)], shape_type="rectangle")
    prompts = prompts_from_layers(image, points, shapes, plane=1)
    assert prompts.points.tolist() == [[5.0, 6.0]] and prompts.boxes.tolist() == [[10, 20, 30, 40]]


@pytest.mark.parametrize("argument", ["points", "negative_points", "boxes"])
def test_nodes_say_which_prompts_are_2d_on_a_stack(env: Env, argument):
    kwargs = {"points": [[1.0, 5.0, 6.0]]}  # one good prompt, so only the 2D one is at fault
    kwargs[argument] = [RECT_A] if argument == "boxes" else [[5.0, 6.0]]
    with pytest.raises(ValueError, match=f"{argument} are 2D") as caught:
        nodes.segment_from_prompts(env.stack, model=env.model, **kwargs)
    text = str(caught.value)
    assert f"{argument} are 2D" in text and "image is 3D" in text and str(env.stack.shape) in text
    assert "(z, row, col)" in text


def test_nodes_say_which_prompts_are_3d_on_a_2d_image(env: Env):
    with pytest.raises(ValueError, match=r"points are 3D \(z, row, col\).*image is 2D"):
        nodes.segment_from_prompts(env.image, points=[[1.0, 5.0, 6.0]], model=env.model)


# ---------------------------------------------------------------------------------------- duplicate boxes
def test_identical_rectangles_become_one_box_with_a_note():
    image = layers.Image(np.zeros((48, 64), np.float32))
    nudged = RECT_A + np.array([[-0.3, -0.3], [-0.3, 0.3], [0.3, 0.3], [0.3, -0.3]])  # same pixels
    shapes = layers.Shapes([RECT_A, RECT_B, nudged], shape_type="rectangle", name="my boxes")
    prompts = prompts_from_layers(image, shapes_layer=shapes)
    assert prompts.boxes.tolist() == [[10, 20, 30, 40], [2, 2, 13, 16]]
    assert prompts.merged_boxes == [(1, 3)]
    assert prompts.notes == ["boxes 1 and 3 of 'my boxes' are identical: merged into one object"]


def test_identical_boxes_on_different_slices_stay_apart():
    image = layers.Image(np.zeros((4, 48, 64), np.float32))
    shapes = layers.Shapes([_on_slice(1, RECT_A), _on_slice(2, RECT_A)], shape_type="rectangle")
    for plane in (1, 2):
        prompts = prompts_from_layers(image, shapes_layer=shapes, plane=plane)
        assert len(prompts.boxes) == 1 and prompts.merged_boxes == [] and prompts.notes == []


def test_annotator_takes_two_identical_boxes_as_one_object(env: Env):
    from napari.components import ViewerModel

    from napari_sam._napari.annotator import Annotator

    viewer = ViewerModel()
    ann = Annotator(viewer)
    ann.set_image(viewer.add_image(env.image, name="cells"))
    ann.shapes_layer.add_rectangles([RECT_A, RECT_A])
    prompts = ann.prompts()
    assert len(prompts.boxes) == 1 and prompts.merged_boxes == [(1, 2)]
    single = ann.compute(prompts, None, embeddings=env.emb)  # one box: single-object mode works
    ann.batch = True
    batch = ann.compute(prompts, None, embeddings=env.emb)
    assert single.n_objects == 1 and batch.n_objects == 1 and (batch.index == 1).any()


def test_segment_merges_identical_boxes_and_keeps_the_numbering(env: Env):
    a, b = [10, 20, 30, 40], [2, 2, 13, 16]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        labels = ns.segment(env.image, boxes=[a, b, a], embeddings=env.emb)
    (warning,) = _duplicate_warnings(record)
    from napari_sam.errors import DuplicateBoxesWarning

    assert isinstance(warning, DuplicateBoxesWarning) and warning.pairs == ((1, 3),)
    assert "boxes 1 and 3 are identical" in str(warning) and "label 3 is not used" in str(warning)
    expected = ns.segment(env.image, boxes=[a, b], embeddings=env.emb)
    np.testing.assert_array_equal(labels, expected)  # box k keeps label k + 1; label 3 stays unused


def test_segment_on_a_stack_merges_identical_boxes_of_one_slice_only(env: Env):
    a, b, a0 = [1, 5, 5, 2, 20, 20], [1, 10, 22, 2, 30, 38], [0, 5, 5, 1, 20, 20]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        labels = ns.segment(env.stack, boxes=[a, b, a, a0], embeddings=env.vol, propagate=False)
    (warning,) = _duplicate_warnings(record)
    assert warning.pairs == ((1, 3),)
    expected = ns.segment(env.stack, boxes=[a, b, a0], embeddings=env.vol, propagate=False)
    np.testing.assert_array_equal(labels, np.where(expected == 3, 4, expected))


def test_nodes_name_duplicate_shapes_by_their_place_in_the_layer(env: Env):
    shapes = [_on_slice(0, RECT_A), _on_slice(1, RECT_B), _on_slice(1, RECT_A), _on_slice(1, RECT_B)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        labels = nodes.segment_from_prompts(env.stack, boxes=shapes, model=env.model)
    texts = [str(w) for w in _duplicate_warnings(record)]
    assert texts == ["boxes: shapes 2 and 4 are identical: merged into one object"]
    expected = nodes.segment_from_prompts(env.stack, boxes=shapes[:3], model=env.model)
    np.testing.assert_array_equal(labels, expected)


def test_nodes_number_stack_objects_by_their_prompts_and_name_empty_ones_by_that_number(env: Env):
    shapes = [_on_slice(0, RECT_A), _on_slice(0, RECT_A), _on_slice(1, RECT_B)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        labels = nodes.segment_from_prompts(env.stack, boxes=shapes, model=env.model)
    # slice 0 holds objects 1 and 2 (2 is the merged copy: unused), so slice 1's box is object 3
    assert set(np.unique(labels[0])) == {0, 1} and set(np.unique(labels[1])) == {0, 3}
    from napari_sam.errors import EmptyObjectsWarning

    empty = [w.message for w in record if isinstance(w.message, EmptyObjectsWarning)]
    assert [(w.objects, w.slices) for w in empty] == [((2,), (0,))]  # the node's numbers, once
