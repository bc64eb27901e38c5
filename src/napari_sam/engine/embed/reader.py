"""What the embedding pipeline's reader thread does: read slices and tiles, hash them, normalise them.

:class:`SliceReader` turns slice ``z`` of an image into what the encoder needs: its content hash (to
reuse a cached slice of unchanged content), its normalisation
(:class:`~napari_sam.engine.types.PreprocessParams`) and model inputs, one per tile. An untiled slice
is read whole. A tiled slice is never read whole: it is hashed block by block, its percentiles come
from a strided subsample of the source (the pixels a whole slice in memory is sampled on, so the
limits are the same), and each tile reads only its window, from one band of tile rows read once.

:func:`prefetch` runs such reads in a background thread ahead of the encoder.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch

from ...model import Sam
from ..intensity import PERCENTILE_SAMPLE_PIXELS, exact_percentile_limits, has_no_contrast, warn_no_contrast
from ..preprocess import Preprocessor
from ..types import _VOLUME_SAMPLE_PIXELS, VOLUME_SAMPLE_SLICES, ImageLayout, Limits, PreprocessParams, Window
from .layout import c_order_regions, plane_index, read_slice, read_window, slice_axes, slice_region
from .store_layout import hash_blocks, slice_hash

__all__ = ["LoadedSlice", "ModelInput", "SliceReader", "prefetch", "volume_limits"]

T = TypeVar("T")

#: Bytes read at a time from the source when a tiled slice is hashed (its blocks are not kept).
_READ_BLOCK_BYTES = 64 << 20
#: Pixels of the subsample on which the input checks of non-percentile modes run (tiled slices).
_CHECK_SAMPLE_PIXELS = 1 << 18


def prefetch(pool: Executor, calls: Iterable[Callable[[], T]], ahead: int) -> Generator[T, None, None]:
    """Results of ``calls`` in order, each computed in ``pool`` while the previous one is used.

    Up to ``ahead`` calls are submitted before the current result is handed out, so the pool works
    on them while the caller uses it. Closing the iterator cancels the calls not yet started.
    """
    feed = iter(calls)
    pending: deque[Future[T]] = deque()

    def top_up() -> None:
        while len(pending) < ahead and (call := next(feed, None)) is not None:
            pending.append(pool.submit(call))

    try:
        top_up()
        while pending:
            result = pending.popleft().result()
            top_up()
            yield result
            del result  # not held while the next one is awaited
    finally:
        for future in pending:
            future.cancel()


@dataclass(frozen=True)
class LoadedSlice:
    """A slice read ahead of the encoder.

    Attributes
    ----------
    z
        Slice number (0 for a 2D image).
    content_hash
        :func:`~napari_sam.engine.embed.store_layout.slice_hash` of the slice as stored in the source.
    params
        Its normalisation.
    scaled
        Untiled slices: the ``(H, W, 1|3)`` normalised slice; None for tiled slices (their tiles are
        read later, one by one).
    """

    z: int
    content_hash: int
    params: PreprocessParams
    scaled: np.ndarray | None


@dataclass(frozen=True)
class ModelInput:
    """One slice's (or tile's) ``(1, 3, S, S)`` model input, and where it came from."""

    tile: int
    pixels: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


class SliceReader:
    """Reads the slices (and tiles) of one image and prepares them for the encoder.

    Parameters
    ----------
    image
        ``(Y, X[, C])`` image or ``(Z, Y, X[, C])`` stack (numpy, memory-mapped, zarr or dask); other
        array-likes (lists, tensors) are turned into a numpy array once.
    layout
        Its :class:`~napari_sam.engine.types.ImageLayout`.
    preprocessor
        How slices are normalised (the channel axis in it is the slice's).
    sam
        The model whose canvas inputs are made for (on its device).
    windows
        The tiles of a slice, or None when slices are not tiled.
    """

    def __init__(
        self,
        image: Any,
        layout: ImageLayout,
        preprocessor: Preprocessor,
        sam: Sam,
        windows: tuple[Window, ...] | None,
    ) -> None:
        if not isinstance(getattr(image, "dtype", None), np.dtype):
            image = np.asarray(image)  # lists, tensors …: windows are cut from a numpy array
        self.image, self.layout, self.preprocessor, self.sam = image, layout, preprocessor, sam
        self.windows = windows
        # the row band of the source the current tiles are cut from: (z, first row, stop row, band)
        self._band: tuple[int, int, int, np.ndarray] | None = None

    def load(self, z: int, cached: Callable[[int, int], bool]) -> LoadedSlice | None:
        """Hash slice ``z`` and work out its normalisation; None when ``cached(z, content_hash)``.

        An untiled slice is read whole and normalised. A tiled slice is hashed block by block and
        its percentiles taken on a strided subsample of the source.
        """
        where = f"slice {z}" if self.layout.is_volume else None
        if self.windows is not None:
            content_hash = self._hash_tiled(z)
            if cached(z, content_hash):
                return None
            return LoadedSlice(z, content_hash, self._tiled_params(z, where), None)
        raw = read_slice(self.image, self.layout, z)
        content_hash = slice_hash(raw)
        if cached(z, content_hash):
            return None
        scaled, params = self.preprocessor.normalized(raw, where)
        return LoadedSlice(z, content_hash, params, scaled)

    def _hash_tiled(self, z: int) -> int:
        """:func:`slice_hash` of slice ``z``, reading at most ``_READ_BLOCK_BYTES`` at a time."""
        axes, _, _ = slice_axes(self.layout)
        shape = [self.layout.shape[a] for a in axes]
        itemsize = np.dtype(self.image.dtype).itemsize
        regions = c_order_regions(shape, itemsize, _READ_BLOCK_BYTES)
        return hash_blocks(shape, (slice_region(self.image, self.layout, z, r) for r in regions))

    def _tiled_params(self, z: int, where: str | None) -> PreprocessParams:
        """The normalisation of tiled slice ``z``, from a strided subsample of the source.

        Percentiles are taken on every ``k``-th row and column, the same pixels a whole slice in
        memory was sampled on (:func:`~napari_sam.engine.intensity.percentile_limits`), so the limits
        are those the untiled pipeline finds; they are recorded with the slice. Other modes need no
        statistic: their input checks run on a small subsample here, and on each tile.
        """
        pre = self.preprocessor
        rows, cols = self.layout.plane_shape
        step = max(1, math.isqrt(rows * cols // PERCENTILE_SAMPLE_PIXELS))
        every = slice(None, None, step)
        sample = read_window(self.image, self.layout, z, every, every)
        arr, picks = pre.channels(sample)
        if pre.volume_limits is None and pre.mode_for(arr.dtype, arr.shape[-1]) == "percentile":
            limits, residuals = exact_percentile_limits(arr, pre.percentiles)
            if has_no_contrast(limits):
                warn_no_contrast(arr, where)
            return PreprocessParams("percentile", pre.percentiles, limits, picks, residuals)
        k = max(1, math.isqrt(arr.shape[0] * arr.shape[1] // _CHECK_SAMPLE_PIXELS))
        check = slice(None, None, k)
        return pre.normalized(sample[plane_index(self.layout, check, check)], where)[1]

    def slice_input(self, loaded: LoadedSlice) -> ModelInput:
        """The model input of an untiled slice from its normalised pixels."""
        assert loaded.scaled is not None
        pixels, input_size = self.preprocessor.canvas(loaded.scaled, self.sam)
        return ModelInput(0, pixels, input_size, (int(loaded.scaled.shape[0]), int(loaded.scaled.shape[1])))

    def tile_input(self, z: int, t: int, params: PreprocessParams) -> ModelInput:
        """Model input of tile ``t`` of slice ``z``: its window read from the source and normalised.

        Tiles of one row share a band of source rows, read once.
        """
        assert self.windows is not None
        r0, c0, r1, c1 = self.windows[t].bounds
        if self._band is None or self._band[:3] != (z, r0, r1):
            self._band = None  # the old band goes before the new one is read
            band = read_window(self.image, self.layout, z, slice(r0, r1), slice(None))
            self._band = (z, r0, r1, band)
        crop = self._band[3][plane_index(self.layout, slice(None), slice(c0, c1))]
        pixels, input_size = self.preprocessor.canvas(self.preprocessor.normalized_as(crop, params), self.sam)
        return ModelInput(t, pixels, input_size, (r1 - r0, c1 - c0))

    def window_input(self, z: int, bounds: tuple[int, int, int, int], params: PreprocessParams) -> ModelInput:
        """Model input of any window of slice ``z``, normalised as the slice was (only it is read)."""
        r0, c0, r1, c1 = bounds
        raw = read_window(self.image, self.layout, z, slice(r0, r1), slice(c0, c1))
        crop = self.preprocessor.normalized_as(raw, params)
        pixels, input_size = self.preprocessor.canvas(crop, self.sam)
        return ModelInput(0, pixels, input_size, (int(crop.shape[0]), int(crop.shape[1])))

    def release(self) -> None:
        """Drop the row band kept for the next tile."""
        self._band = None


def volume_limits(
    image: Any, layout: ImageLayout, preprocessor: Preprocessor
) -> tuple[Limits, Limits | None]:
    """Percentile limits over evenly spaced sample slices of a stack, and their residuals.

    Up to :data:`~napari_sam.engine.types.VOLUME_SAMPLE_SLICES` slices are sampled, each on a regular
    grid of rows and columns (only that strided sample is read). The residuals (see
    :class:`~napari_sam.engine.types.PreprocessParams`) keep the limits of a 64-bit integer stack beyond
    ``2**53`` exact, so every slice is normalised with the same exact limits.

    Returns
    -------
    limits, residuals
        One ``(low, high)`` per selected channel, and what float64 rounding left out of them (or None).
    """
    picks = np.unique(np.linspace(0, layout.n_slices - 1, min(layout.n_slices, VOLUME_SAMPLE_SLICES)).round())
    rows, cols = layout.plane_shape
    every = slice(None, None, max(1, int(np.ceil(np.sqrt(rows * cols / _VOLUME_SAMPLE_PIXELS)))))
    samples = []
    for z in picks.astype(int):
        arr, _ = preprocessor.channels(read_window(image, layout, int(z), every, every))
        samples.append(arr.reshape(-1, 1, arr.shape[-1]))
    return exact_percentile_limits(np.concatenate(samples), preprocessor.percentiles)
