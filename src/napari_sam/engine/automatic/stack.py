"""A stack for automatic mask generation, read one slice at a time and normalised as one volume.

Slices are read one at a time (numpy, memory-mapped, zarr or dask arrays: only that slice is read).
Percentile limits for the whole volume come from evenly spaced sample slices, each read strided, the way
the embedding pipeline takes volume-wide percentiles (``percentile_scope="volume"``): for a stack of at
most :data:`~napari_sam.engine.types.VOLUME_SAMPLE_SLICES` slices of at most ``2**18`` pixels the
sample is every pixel, and the limits are those of the whole volume.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..preprocess import Preprocessor, exact_percentile_limits
from ..types import _VOLUME_SAMPLE_PIXELS, VOLUME_SAMPLE_SLICES, ImageLayout

__all__ = ["read_slice", "stack_layout", "volume_preprocessor"]


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


def read_slice(image: Any, layout: ImageLayout, z: int, step: int = 1) -> np.ndarray:
    """Slice ``z`` of a stack in the slice's own layout (channel axis at ``layout.slice_channel_axis``),
    every ``step``-th row and column; only those pixels are read."""
    index: list[Any] = [slice(None, None, step)] * len(layout.shape)
    index[layout.z_axis] = int(z)  # type: ignore[index]
    if layout.channel_axis is not None:
        index[layout.channel_axis] = slice(None)
    elif len(layout.shape) == 4:
        index[3] = slice(None)
    return np.asarray(image[tuple(index)])


def volume_preprocessor(image: Any, layout: ImageLayout, preprocessor: Preprocessor) -> Preprocessor:
    """``preprocessor`` with percentile limits fixed for the whole stack, when it normalises by
    percentiles; else ``preprocessor`` itself (contrast limits and ``"none"`` treat every pixel alone)."""
    if preprocessor.contrast_limits is not None or preprocessor.normalize == "none":
        return preprocessor
    n = layout.n_slices
    rows, cols = layout.plane_shape
    step = max(1, math.ceil(math.sqrt(rows * cols / _VOLUME_SAMPLE_PIXELS)))
    picks = np.unique(np.linspace(0, n - 1, min(n, VOLUME_SAMPLE_SLICES)).round()).astype(int)
    samples = [preprocessor.channels(read_slice(image, layout, int(z), step))[0] for z in picks]
    if preprocessor.mode_for(samples[0].dtype, samples[0].shape[-1]) != "percentile":
        return preprocessor
    flat = np.concatenate([s.reshape(-1, 1, s.shape[-1]) for s in samples])
    return preprocessor.with_volume_limits(*exact_percentile_limits(flat, preprocessor.percentiles))
