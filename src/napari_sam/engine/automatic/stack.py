"""A stack for automatic mask generation, read one slice at a time and normalised as one volume.

Slices are read one at a time (numpy, memory-mapped, zarr or dask arrays: only that slice is read).
Percentile limits for the whole volume come from evenly spaced sample slices, each read strided, the way
the embedding pipeline takes volume-wide percentiles (``percentile_scope="volume"``): for a stack of at
most :data:`~napari_sam.engine.types.VOLUME_SAMPLE_SLICES` slices of at most ``2**18`` pixels the
sample is every pixel, and the limits are those of the whole volume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..embed.layout import read_slice
from ..embed.reader import volume_limits
from ..preprocess import Preprocessor
from ..types import ImageLayout

__all__ = ["stack_layout", "volume_preprocessor"]


def stack_layout(shape: tuple[int, ...], channel_axis: int | None) -> ImageLayout:
    """The layout of a ``(Z, Y, X)`` or ``(Z, Y, X, C)`` stack whose channels are on ``channel_axis``.

    With ``channel_axis``, the slices run along the first other axis; without, a 4D stack keeps its
    channels last.

    Raises
    ------
    ValueError
        Not a stack of that form, an empty one, or ``channel_axis`` out of range.
    """
    ndim = len(shape)
    if ndim != 4 and not (ndim == 3 and channel_axis is None):
        raise ValueError(f"a stack must be (Z, Y, X) or (Z, Y, X, C), got shape {shape}")
    if channel_axis is None:
        layout = ImageLayout(shape, True, 0, None, shape[:3])
    else:
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel_axis={channel_axis} is out of range for an image of shape {shape}")
        channels = int(channel_axis) % ndim
        z_axis = 1 if channels == 0 else 0
        inside = channels if channels < z_axis else channels - 1
        spatial = tuple(n for i, n in enumerate(shape) if i != channels)
        layout = ImageLayout(shape, True, z_axis, inside, spatial, channels)
    if 0 in shape:
        raise ValueError(f"image is empty: shape {shape}")
    return layout


def volume_preprocessor(image: Any, layout: ImageLayout, preprocessor: Preprocessor) -> Preprocessor:
    """``preprocessor`` with percentile limits fixed for the whole stack, when it normalises by
    percentiles (the embedding pipeline's sample: :func:`~napari_sam.engine.embed.reader.volume_limits`);
    else ``preprocessor`` itself (contrast limits and ``"none"`` treat every pixel on its own)."""
    if preprocessor.contrast_limits is not None or preprocessor.normalize == "none":
        return preprocessor
    if np.dtype(image.dtype) == np.uint8:  # "auto" keeps uint8 RGB as it is: ask the first slice
        first, _ = preprocessor.channels(read_slice(image, layout, 0))
        if preprocessor.mode_for(first.dtype, first.shape[-1]) != "percentile":
            return preprocessor
    return preprocessor.with_volume_limits(*volume_limits(image, layout, preprocessor))
