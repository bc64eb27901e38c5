"""Training images on the model's canvas: prepared exactly as inference prepares them, labels alongside.

The image goes through the one :class:`~napari_sam.engine.preprocess.Preprocessor` (normalise, resize the
longest side to the canvas, pad); its labels are resized (nearest) to the same place on the canvas.
Training then cuts token-aligned crops of the canvas (:func:`crop_window`; nano encoder only: it is
convolutional), so that prompt coordinates and the dense positional encoding are those of the crop's
window inside the full canvas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...model import Sam
from ..preprocess import Preprocessor

__all__ = ["Canvas", "crop_window", "prepare_canvas"]

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
    from PIL import Image

    labels = np.asarray(labels)
    if labels.shape != np.shape(image)[:2]:
        raise ValueError(f"labels shape {labels.shape} differs from the image's {np.shape(image)[:2]}")
    pixels, input_size, _, _ = (preprocessor or Preprocessor()).prepare(image, model, device="cpu")
    resized = Image.fromarray(labels.astype(np.int32)).resize(
        (input_size[1], input_size[0]), Image.Resampling.NEAREST
    )
    canvas = np.zeros((model.image_size, model.image_size), dtype=np.int32)
    canvas[: input_size[0], : input_size[1]] = np.asarray(resized)
    return Canvas(pixels=pixels[0], labels=canvas, input_size=input_size)


def crop_window(canvas: Canvas, crop: int, rng: np.random.Generator, patch: int = TOKEN) -> tuple[int, int]:
    """Token-aligned top-left corner ``(row, col)`` of a ``crop × crop`` window over the image part of
    the canvas (random, from ``rng``)."""
    corners = []
    for extent in canvas.input_size:
        last = max(0, min(extent, canvas.labels.shape[0]) - crop)
        corners.append(int(rng.integers(0, last // patch + 1)) * patch)
    return corners[0], corners[1]
