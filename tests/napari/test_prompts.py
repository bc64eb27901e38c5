"""Layers → prompts in the image's pixel frame (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.prompts import image_spatial_shape, prompts_from_layers
from napari_sam.errors import AnnotatorError

layers = pytest.importorskip("napari.layers")


def test_points_with_label_feature_and_rectangles():
    image = layers.Image(np.zeros((50, 60), np.uint16))
    points = layers.Points(
        np.array([[10.2, 20.0], [30.0, 40.6]]), features={"label": ["positive", "negative"]}
    )
    shapes = layers.Shapes(
        [np.array([[5.0, 6.0], [5.0, 20.0], [15.0, 20.0], [15.0, 6.0]]), np.array([[1, 1], [3, 3], [1, 5]])],
        shape_type=["rectangle", "polygon"],
    )
    prompts = prompts_from_layers(image, points, shapes)
    np.testing.assert_allclose(prompts.points, [[10.2, 20.0], [30.0, 40.6]])
    assert prompts.point_labels.tolist() == [1, 0]
    # pixels whose centres lie in the rectangle: rows 5..15, cols 6..20 → half-open
    assert prompts.boxes.tolist() == [[5, 6, 16, 21]]
    assert prompts.skipped_shapes == 1


def test_points_follow_layer_transforms_into_image_pixels():
    image = layers.Image(np.zeros((50, 60)), scale=(2.0, 2.0), translate=(10.0, 0.0))
    # world (30, 40) is image pixel (10, 20); the points layer has its own (unit) scale
    points = layers.Points(np.array([[30.0, 40.0]]))
    prompts = prompts_from_layers(image, points)
    np.testing.assert_allclose(prompts.points, [[10.0, 20.0]])
    assert prompts.point_labels.tolist() == [1]


def test_3d_prompts_of_one_plane_and_outside_point():
    image = layers.Image(np.zeros((5, 30, 30)))
    points = layers.Points(np.array([[1.0, 5.0, 5.0], [2.0, 6.0, 7.0], [2.2, 8.0, 9.0]]))
    prompts = prompts_from_layers(image, points, plane=2)
    np.testing.assert_allclose(prompts.points, [[6.0, 7.0], [8.0, 9.0]])
    outside = layers.Points(np.array([[2.0, 45.0, 3.0]]), name="clicks")
    with pytest.raises(AnnotatorError, match=r"outside the image .*'clicks'"):
        prompts_from_layers(image, outside, plane=2)


def test_image_checks():
    assert image_spatial_shape(layers.Image(np.zeros((20, 30, 3), np.uint8), rgb=True)) == (20, 30)
    with pytest.raises(AnnotatorError, match="4 spatial axes"):
        image_spatial_shape(layers.Image(np.zeros((2, 3, 20, 30))))
    with pytest.raises(AnnotatorError, match="choose an image layer"):
        image_spatial_shape(layers.Labels(np.zeros((4, 4), np.uint8)))
    with pytest.raises(AnnotatorError, match="got nothing"):
        image_spatial_shape(None)
