"""The demo's picture: titled panels, the prompt boxes drawn, one bright colour per object."""

from __future__ import annotations

import numpy as np

from napari_sam.demo import demo_picture, object_colours, overlay_picture


def _scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = np.full((96, 128), 10.0, np.float32)
    truth = np.zeros((96, 128), np.uint32)
    truth[20:40, 20:44] = 1
    truth[50:80, 70:110] = 2
    image[truth > 0] = 200.0
    boxes = np.array([[20, 20, 40, 44], [50, 70, 80, 110]], float)
    return image, truth, boxes


def test_colours_are_bright_and_distinct():
    colours = object_colours(40).astype(int)
    assert colours.shape == (40, 3)
    assert (colours.max(axis=1) == 255).all()  # full value: no dull grey or brown outlines
    assert (colours.max(axis=1) - colours.min(axis=1) > 150).all()  # saturated, not grey
    assert len({tuple(c) for c in colours}) == 40


def test_outlines_carry_each_objects_colour_on_a_dimmed_image():
    image, truth, _ = _scene()
    rgb = overlay_picture(image, truth)
    colours = object_colours(2)
    assert (rgb[20, 30] == colours[0]).all() and (rgb[21, 30] == colours[0]).all()  # two pixels wide
    assert (rgb[50, 90] == colours[1]).all()
    assert rgb[30, 30].max() <= 0.6 * 255 + 1  # the inside of an object is dimmed image, not colour
    assert rgb[5, 5].max() < 20  # dark background


def test_picture_has_titles_boxes_and_score():
    image, truth, boxes = _scene()
    labels = truth.copy()
    labels[labels == 2] = 0  # the model missed object 2
    picture = demo_picture(image, truth, labels, boxes, "nano", 0.5)
    assert picture.dtype == np.uint8 and picture.ndim == 3
    height, width = picture.shape[:2]
    strip = height - 96
    assert strip > 0 and width == 2 * 128 + 4
    right = picture[:, 128 + 4 :]
    assert (picture[:strip, :128] > 200).any()  # a title is written on the left strip
    assert (right[:strip, 64:] > 200).any()  # and the score in the right corner
    # object 2 was missed, but its box is drawn (grey) on the right panel and not on the left
    top_edge = right[strip + 50, 75:105]
    assert (np.abs(top_edge.astype(int) - 150) < 3).all()
    assert not (np.abs(picture[strip + 50, 75:105].astype(int) - 150) < 3).all()
