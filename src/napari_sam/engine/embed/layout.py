"""Where an image keeps its slices and channels, and reading parts of it.

:func:`image_layout` tells a 2D ``(Y, X[, C])`` image from a ``(Z, Y, X[, C])`` stack (channels last,
or where ``channel_axis`` says) and describes it as an :class:`~napari_sam.engine.types.ImageLayout`.
The readers then take only what they need from numpy, memory-mapped, zarr or dask arrays: one slice
(:func:`read_slice`), rows and columns of one (:func:`read_window`: a tile, a row band, a strided
subsample), or consecutive C-order pieces of one (:func:`c_order_regions`, for hashing a large slice).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np

from ...errors import LayoutWarning
from ..preprocess import AUTO_CHANNELS, MAX_INFERRED_CHANNELS, may_hold_channels
from ..types import ImageLayout

__all__ = [
    "c_order_regions",
    "channel_count",
    "image_layout",
    "layout_warnings_once",
    "plane_index",
    "read_slice",
    "read_window",
    "slice_axes",
    "slice_region",
]


def image_layout(
    image: Any, channel_axis: int | None = None, *, channel: int | Sequence[int] | None = None
) -> ImageLayout:
    """Tell 2D ``(Y, X[, C])`` images from ``(Z, Y, X[, C])`` stacks.

    Without ``channel_axis``, a last axis of at most 4 is channels. A longer one (up to 16, and
    shorter than the axis before it, see :func:`~napari_sam.engine.preprocess.may_hold_channels`) is
    channels when ``channel`` is given and fits it; otherwise a 3D array is a stack, with a
    :class:`~napari_sam.errors.LayoutWarning` when its shape could also be an image with channels.

    Parameters
    ----------
    image
        Any array-like with a shape (only the shape is read).
    channel_axis
        Axis holding channels, when known.
    channel
        The ``channel=`` preprocessing option (an index or up to three), used to read a last axis of
        5 to 16 as channels.

    Raises
    ------
    ValueError
        Other dimensionalities, an empty image, a ``channel_axis`` out of range, or a ``channel`` that
        fits neither reading of the shape.
    TypeError
        A ``channel_axis`` that is not an integer.
    """
    shape = tuple(int(v) for v in np.shape(image))
    ndim = len(shape)
    if ndim and 0 in shape:
        raise ValueError(f"image is empty: shape {shape}")
    if channel_axis is not None:
        return _layout_with_channel_axis(shape, channel_axis)
    if ndim == 2:
        return ImageLayout(shape, False, None, None, shape)
    if ndim in (3, 4) and shape[-1] <= AUTO_CHANNELS:
        return ImageLayout(shape, ndim == 4, 0 if ndim == 4 else None, None, shape[:-1])
    picks = _channel_picks(channel)
    if ndim in (3, 4) and picks is not None and may_hold_channels(shape):
        if not all(-shape[-1] <= p < shape[-1] for p in picks):
            raise ValueError(
                f"channel={channel!r} does not fit an image of shape {shape}: its last axis would hold "
                f"{shape[-1]} channels (indices 0 to {shape[-1] - 1})"
            )
        return _layout_with_channel_axis(shape, ndim - 1)
    if ndim == 3:
        return _stack_layout(shape, channel, picks)
    raise ValueError(
        f"image must be 2D (Y, X[, C]) or 3D (Z, Y, X[, C]) with at most {AUTO_CHANNELS} channels last, "
        f"or up to {MAX_INFERRED_CHANNELS} with channel=<index>; got shape {shape} (pass channel_axis= "
        "to say which axis holds channels)"
    )


def _layout_with_channel_axis(shape: tuple[int, ...], channel_axis: Any) -> ImageLayout:
    ndim = len(shape)
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
        raise TypeError(f"channel_axis must be an integer or None, got {channel_axis!r}")
    if not -ndim <= channel_axis < ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for an image of shape {shape}")
    ca = int(channel_axis) % ndim
    spatial = tuple(s for i, s in enumerate(shape) if i != ca)
    if ndim == 3:
        return ImageLayout(shape, False, None, ca, spatial, ca)
    if ndim == 4:
        z_axis = 0 if ca != 0 else 1
        return ImageLayout(shape, True, z_axis, ca if ca < z_axis else ca - 1, spatial, ca)
    raise ValueError(
        f"with channel_axis, the image must be (Y, X, C) or (Z, Y, X, C) in some order; got shape {shape}"
    )


#: Shapes a LayoutWarning was given for in the current public call (None: outside of one).
_LAYOUT_WARNED: ContextVar[set[tuple[int, ...]] | None] = ContextVar("napari_sam_layout_warned", default=None)


@contextlib.contextmanager
def layout_warnings_once() -> Iterator[None]:
    """Within the block, at most one :class:`~napari_sam.errors.LayoutWarning` per shape.

    A public function that reads the image's layout in several places (``segment`` through
    ``compute_embeddings`` and ``propagate``) would otherwise say the same thing several times.
    A ``with`` block inside the function, not a decorator: a wrapper's frame would shift where the
    package's other warnings point (their ``stacklevel`` counts frames up to the user's call).
    Nested blocks share the outer block's record.
    """
    if _LAYOUT_WARNED.get() is not None:
        yield
        return
    token = _LAYOUT_WARNED.set(set())
    try:
        yield
    finally:
        _LAYOUT_WARNED.reset(token)


def _first_layout_warning(shape: tuple[int, ...]) -> bool:
    """Whether a LayoutWarning for ``shape`` is due (not given yet in this call); records it."""
    warned = _LAYOUT_WARNED.get()
    if warned is None:
        return True
    if shape in warned:
        return False
    warned.add(shape)
    return True


def _stack_layout(shape: tuple[int, ...], channel: Any, picks: tuple[int, ...] | None) -> ImageLayout:
    """A 3D array read as a ``(Z, Y, X)`` stack of gray slices; says so when it may be channels."""
    if picks is not None and any(p not in (0, -1) for p in picks):
        raise ValueError(
            f"channel={channel!r} given, but an image of shape {shape} is read as a (Z, Y, X) stack of "
            f"gray slices (channel 0 only); if its last axis holds channels, pass channel_axis=-1"
        )
    if channel is None and may_hold_channels(shape) and _first_layout_warning(shape):
        warnings.warn(
            f"an image of shape {shape} is read as a (Z, Y, X) stack of {shape[0]} slices of "
            f"{shape[1]} × {shape[2]} pixels; if its last axis holds {shape[2]} channels, pass "
            "channel=<index> (or channel_axis=-1)",
            LayoutWarning,
            stacklevel=3,
        )
    return ImageLayout(shape, True, 0, None, shape)


def _channel_picks(channel: Any) -> tuple[int, ...] | None:
    """``channel`` as a tuple of indices; None when not given (or malformed: checked later)."""
    if channel is None or isinstance(channel, bool):
        return None
    if isinstance(channel, (int, np.integer)):
        return (int(channel),)
    try:
        picks = tuple(channel)
    except TypeError:
        return None
    if not picks or any(isinstance(p, bool) or not isinstance(p, (int, np.integer)) for p in picks):
        return None
    return tuple(int(p) for p in picks)


def read_slice(image: Any, layout: ImageLayout, z: int) -> np.ndarray:
    """Slice ``z`` of ``image`` as a numpy array (only that slice is read from dask / zarr)."""
    if not layout.is_volume:
        return np.asarray(image)
    index: list[Any] = [slice(None)] * len(layout.shape)
    index[layout.z_axis] = int(z)  # type: ignore[index]
    return np.asarray(image[tuple(index)])


def slice_axes(layout: ImageLayout) -> tuple[list[int], int, int]:
    """The axes of the whole array that hold one slice, and the row / column axes among them."""
    axes = [i for i in range(len(layout.shape)) if i != layout.z_axis]
    plane = [a for a in range(len(axes)) if a != layout.slice_channel_axis]
    return axes, plane[0], plane[1]


def plane_index(layout: ImageLayout, rows: slice, cols: slice) -> tuple[Any, ...]:
    """Index of one slice (in the slice's own axes) that takes ``rows`` and ``cols`` of it."""
    axes, row_axis, col_axis = slice_axes(layout)
    index: list[Any] = [slice(None)] * len(axes)
    index[row_axis], index[col_axis] = rows, cols
    return tuple(index)


def slice_region(image: Any, layout: ImageLayout, z: int, region: Sequence[Any]) -> np.ndarray:
    """``region`` (indices of the slice's leading axes) of slice ``z``, read from ``image`` alone.

    Only that part is read from a memory-mapped, zarr or dask array.
    """
    axes, _, _ = slice_axes(layout)
    index: list[Any] = [slice(None)] * len(layout.shape)
    if layout.z_axis is not None:
        index[layout.z_axis] = int(z)
    for axis, value in zip(axes, region, strict=False):
        index[axis] = value
    return np.asarray(image[tuple(index)])


def read_window(image: Any, layout: ImageLayout, z: int, rows: slice, cols: slice) -> np.ndarray:
    """Rows and columns of slice ``z`` (a window, a row band, a strided subsample), in the slice's layout.

    Parameters
    ----------
    image
        The whole image or stack (numpy, memory-mapped, zarr or dask array).
    layout
        Its :class:`ImageLayout`.
    z
        Slice number (ignored for 2D images).
    rows, cols
        Slices of the slice's row and column axes (steps allowed).

    Returns
    -------
    numpy.ndarray
        ``(h, w)``, ``(h, w, C)`` or the channel axis where the slice keeps it; the image's dtype.
    """
    return slice_region(image, layout, z, plane_index(layout, rows, cols))


def c_order_regions(shape: Sequence[int], itemsize: int, budget: int) -> Iterator[tuple[Any, ...]]:
    """Indices of consecutive C-order pieces of an array of ``shape``, each at most ``budget`` bytes.

    Splits the first axis into runs of whole rows; a single row over the budget is split along the
    next axis, and so on. The pieces' bytes put end to end are the array's bytes.
    """
    if not shape:
        yield ()
        return
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * itemsize
    if row_bytes <= budget or len(shape) == 1:
        step = max(1, budget // max(1, row_bytes))
        for start in range(0, int(shape[0]), step):
            yield (slice(start, min(start + step, int(shape[0]))),)
        return
    for i in range(int(shape[0])):
        for rest in c_order_regions(shape[1:], itemsize, budget):
            yield (i, *rest)


def channel_count(layout: ImageLayout) -> int:
    """Channels along the slice's channel axis (``layout.slice_channel_axis`` must be set)."""
    ca = layout.slice_channel_axis
    assert ca is not None
    axes = [i for i in range(len(layout.shape)) if i != layout.z_axis]
    return layout.shape[axes[ca]]
