"""Training images on the model's canvas: prepared exactly as inference prepares them, labels alongside.

The image goes through the one :class:`~napari_sam.engine.preprocess.Preprocessor` (normalise, resize the
longest side to the canvas, pad); its labels are resized (nearest) to the same place on the canvas.
Training then cuts token-aligned crops of the canvas (:func:`crop_window`; nano encoder only: it is
convolutional), so that prompt coordinates and the dense positional encoding are those of the crop's
window inside the full canvas.

:func:`object_scale_canvas` prepares an image the way nano's object-scale geometry does at inference
(:mod:`napari_sam.engine.object_scale`): the image is normalised whole, scaled by the model's rule for
its objects' size (taken from the labels, jittered by the error of the estimate inference uses), and a
random window that fills the canvas at that scale stands for one inference tile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...model import Sam
from ..object_scale import canvas_scale
from ..preprocess import Preprocessor

__all__ = ["Canvas", "crop_window", "labels_object_size", "object_scale_canvas", "prepare_canvas"]

#: Pixels of the canvas per image token (the encoder's patch size): crops start on this grid.
TOKEN = 16


@dataclass
class Canvas:
    """One training image prepared as model input, with its labels on the same canvas.

    Attributes
    ----------
    pixels
        ``(3, S, S)`` float32 model input (normalised, resized, padded), on the CPU.
    labels
        ``(S, S)`` int32 labels resized (nearest) to the canvas, 0 on the padding.
    input_size
        ``(rows, cols)`` of the image part of the canvas.
    """

    pixels: torch.Tensor
    labels: np.ndarray
    input_size: tuple[int, int]


def prepare_canvas(
    image: Any, labels: np.ndarray, model: Sam, preprocessor: Preprocessor | None = None
) -> Canvas:
    """Preprocess ``image`` (``(Y, X[, C])``) like inference and put its ``(Y, X)`` integer ``labels`` on the
    same ``(S, S)`` canvas (``S = model.image_size``); ``preprocessor`` defaults to ``Preprocessor()``."""
    labels = np.asarray(labels)
    if labels.shape != np.shape(image)[:2]:
        raise ValueError(f"labels shape {labels.shape} differs from the image's {np.shape(image)[:2]}")
    pixels, input_size, _, _ = (preprocessor or Preprocessor()).prepare(image, model, device="cpu")
    return Canvas(
        pixels=pixels[0], labels=_labels_on_canvas(labels, input_size, model), input_size=input_size
    )


def _labels_on_canvas(labels: np.ndarray, input_size: tuple[int, int], model: Sam) -> np.ndarray:
    """``(Y, X)`` labels resized (nearest) to ``input_size`` at the top left of an ``(S, S)`` canvas."""
    from PIL import Image

    resized = Image.fromarray(labels.astype(np.int32)).resize(
        (input_size[1], input_size[0]), Image.Resampling.NEAREST
    )
    canvas = np.zeros((model.image_size, model.image_size), dtype=np.int32)
    canvas[: input_size[0], : input_size[1]] = np.asarray(resized)
    return canvas


def labels_object_size(labels: np.ndarray, min_pixels: int = 12) -> float | None:
    """Median equivalent diameter ``sqrt(4 * area / pi)`` (px) of the objects of ``(Y, X)`` integer
    ``labels`` with at least ``min_pixels`` pixels; None when there is none.

    Examples
    --------
    >>> labels = np.zeros((20, 20), dtype=int)
    >>> labels[2:12, 2:12] = 1
    >>> round(labels_object_size(labels), 2)
    11.28
    """
    areas = np.bincount(np.asarray(labels).ravel().astype(np.int64))[1:]
    areas = areas[areas >= min_pixels]
    if areas.size == 0:
        return None
    return float(np.sqrt(4.0 * np.median(areas) / np.pi))


def object_scale_canvas(
    image: Any, labels: np.ndarray, model: Sam, rng: np.random.Generator, jitter: float = 0.0
) -> Canvas:
    """One training canvas at the object-scale geometry of inference.

    Parameters
    ----------
    image, labels
        ``(Y, X[, C])`` image and its ``(Y, X)`` integer labels (0 = background).
    model
        A model with an object-scale rule (:attr:`~napari_sam.model.Sam.object_scale`).
    rng
        Draws the size jitter and the window.
    jitter
        The objects' size is multiplied by ``exp(u)``, ``u`` uniform in ``[-jitter, jitter]``, before
        the scale is chosen (inference estimates the size within about ±25 %).

    Returns
    -------
    Canvas
        A window of the image (all of it when it fits) scaled by ``canvas_scale(size, rule)``; an
        image without objects of 12 px or more, or a model without a rule, gets :func:`prepare_canvas`.
    """
    labels = np.asarray(labels)
    if labels.shape != np.shape(image)[:2]:
        raise ValueError(f"labels shape {labels.shape} differs from the image's {np.shape(image)[:2]}")
    size = labels_object_size(labels)
    rule = getattr(model, "object_scale", None)
    if size is None or rule is None:
        return prepare_canvas(image, labels, model)
    scale = canvas_scale(size * float(np.exp(rng.uniform(-jitter, jitter))), rule)
    preprocessor = Preprocessor(scale=scale)
    scaled, _ = preprocessor.normalized(image)  # the whole image, as inference normalises its tiles
    side = max(1, int(model.image_size / scale))
    corner = [int(rng.integers(0, max(0, extent - side) + 1)) for extent in labels.shape]
    rows = slice(corner[0], corner[0] + side)
    cols = slice(corner[1], corner[1] + side)
    pixels, input_size = preprocessor.canvas(scaled[rows, cols], model, device="cpu")
    return Canvas(
        pixels=pixels[0],
        labels=_labels_on_canvas(labels[rows, cols], input_size, model),
        input_size=input_size,
    )


def crop_window(canvas: Canvas, crop: int, rng: np.random.Generator, patch: int = TOKEN) -> tuple[int, int]:
    """Token-aligned top-left corner ``(row, col)`` of a ``crop × crop`` window over the image part of
    the canvas (random, from ``rng``)."""
    corners = []
    for extent in canvas.input_size:
        last = max(0, min(extent, canvas.labels.shape[0]) - crop)
        corners.append(int(rng.integers(0, last // patch + 1)) * patch)
    return corners[0], corners[1]
