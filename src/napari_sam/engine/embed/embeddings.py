"""Image embeddings: the value objects, and computing them for 2D images, large images and stacks.

:class:`Embeddings` holds one 2D image's encoder output. :func:`compute_embeddings` also embeds
large images in tiles (:class:`~napari_sam.engine.embed.tiling.TiledEmbeddings`) and ``(Z, Y, X[, C])``
stacks slice by slice (:class:`VolumeEmbeddings`), in memory or through the zarr cache of
:mod:`napari_sam.engine.embed.store`.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import torch

from ...errors import CorruptSliceError, MissingSliceError
from ...model import Sam
from ..device import DeviceLike
from ..intensity import PERCENTILE_SAMPLE_PIXELS, rescale
from ..loading import ModelLike, load_model, model_weights_id
from ..preprocess import (
    AUTO_CHANNELS,
    DEFAULT_PERCENTILES,
    MAX_INFERRED_CHANNELS,
    NormalizeMode,
    as_channels_last_2d,
    exact_percentile_limits,
    has_no_contrast,
    may_hold_channels,
    normalize_exact,
    normalize_intensity,
    preprocess_shape,
    resize_image,
    select_channels,
    to_model_input,
    warn_no_contrast,
)
from ..steps import Progress, ProgressLike
from ..types import (
    _VOLUME_SAMPLE_PIXELS,
    DEFAULT_TILE_THRESHOLD,
    VOLUME_SAMPLE_SLICES,
    Embeddings,
    ImageLayout,
    LazySequence,
    Limits,
    PreprocessParams,
    TiledEmbeddings,
    TileSpec,
)
from .encoder import _PRECISION_ALIASES, Precision, encode_images
from .store import EmbeddingStore, hash_blocks, open_store, slice_hash
from .tiling import resolve_tiling, tile_windows

# ---------------------------------------------------------------------------------------------------------
# Stacks, large images and the on-disk cache
# ---------------------------------------------------------------------------------------------------------

PercentileScope = Literal["slice", "volume"]


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
        from ...errors import LayoutWarning

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


@dataclass(frozen=True)
class _Prep:
    """Preprocessing requested by the caller, applied slice by slice."""

    normalize: NormalizeMode
    percentiles: tuple[float, float]
    contrast_limits: tuple[float, float] | None
    channel: int | Sequence[int] | None
    channel_axis: int | None  # inside a slice
    fixed_limits: tuple[tuple[float, float], ...] | None = None  # volume-wide percentiles
    fixed_residuals: Limits | None = None  # what float64 rounding left out of them

    def select(self, raw: np.ndarray) -> tuple[np.ndarray, tuple[int, ...] | None]:
        arr = as_channels_last_2d(raw, channel_axis=self.channel_axis)
        return select_channels(arr, self.channel)

    def apply(self, raw: np.ndarray, where: str | None = None) -> tuple[np.ndarray, PreprocessParams]:
        """``(H, W, 1|3)`` on the 0–255 scale, and what was done.

        ``where`` names the slice in a :class:`~napari_sam.errors.NoContrastWarning` (``"slice 3"``).
        """
        arr, picks = self.select(raw)
        if self.fixed_limits is not None:
            params = PreprocessParams(
                "percentile", tuple(self.percentiles), self.fixed_limits, picks, self.fixed_residuals
            )
            if has_no_contrast(self.fixed_limits):
                warn_no_contrast(arr, "the stack (percentiles over the volume)")
            return rescale(arr, self.fixed_limits, self.fixed_residuals), params
        scaled, mode, used, limits, residuals = normalize_exact(
            arr,
            normalize=self.normalize,
            percentiles=self.percentiles,
            contrast_limits=self.contrast_limits,
            where=where,
        )
        return scaled, PreprocessParams(mode, used, limits, picks, residuals)

    def reapply(self, raw: np.ndarray, params: PreprocessParams) -> np.ndarray:
        """Normalise ``raw`` (a tile, a window) exactly as a slice recorded with ``params`` was."""
        arr, _ = self.select(raw)
        if params.contrast_limits is None:
            return normalize_intensity(arr, normalize=None)[0]
        return rescale(arr, params.contrast_limits, params.limit_residuals)


def _resolved_mode(prep: _Prep, dtype: np.dtype, n_channels: int) -> str:
    if prep.contrast_limits is not None:
        return "contrast_limits"
    mode = "none" if prep.normalize is None else prep.normalize
    if mode == "auto":
        return "none" if dtype == np.uint8 and n_channels == 3 else "percentile"
    return str(mode)


def _volume_limits(image: Any, layout: ImageLayout, prep: _Prep) -> tuple[Limits, Limits | None]:
    """Percentile limits over evenly spaced sample slices of a stack, and their residuals.

    The residuals (see :class:`~napari_sam.engine.preprocess.PreprocessParams`) keep the limits of a
    64-bit integer stack beyond ``2**53`` exact, so every slice is normalised with the same exact
    limits (each slice's own minimum is subtracted first).
    """
    picks = np.unique(np.linspace(0, layout.n_slices - 1, min(layout.n_slices, VOLUME_SAMPLE_SLICES)).round())
    rows, cols = layout.plane_shape
    every = slice(None, None, max(1, int(np.ceil(np.sqrt(rows * cols / _VOLUME_SAMPLE_PIXELS)))))
    samples = []
    for z in picks.astype(int):  # only the strided sample is read, not the whole slice
        arr, _ = prep.select(_read_window(image, layout, int(z), every, every))
        samples.append(arr.reshape(-1, 1, arr.shape[-1]))
    return exact_percentile_limits(np.concatenate(samples), prep.percentiles)


def _params_from_record(
    mode: str, percentiles: Any, limits: np.ndarray, picks: Any, residuals: np.ndarray | None = None
) -> PreprocessParams:
    """A slice's :class:`PreprocessParams` from its recorded ``(3, 2)`` limits and residuals (NaN: unused)."""
    used = [i for i, row in enumerate(np.asarray(limits)) if np.isfinite(row).all()]
    rows = tuple(tuple(float(v) for v in limits[i]) for i in used)
    rest = None
    if residuals is not None and used:
        rest = tuple(tuple(float(v) for v in residuals[i]) for i in used)
        if all(r == (0.0, 0.0) for r in rest):
            rest = None
    return PreprocessParams(
        normalize=mode,
        percentiles=tuple(percentiles) if percentiles is not None else None,
        contrast_limits=rows or None,
        channel=tuple(picks) if picks is not None else None,
        limit_residuals=rest,
    )


#: Bytes read at a time from the source when a tiled slice is hashed (its blocks are not kept).
_READ_BLOCK_BYTES = 64 << 20
#: Pixels of the subsample on which the input checks of non-percentile modes run (tiled slices).
_CHECK_SAMPLE_PIXELS = 1 << 18


def _slice_axes(layout: ImageLayout) -> tuple[list[int], int, int]:
    """The axes of the whole array that hold one slice, and the row / column axes among them."""
    axes = [i for i in range(len(layout.shape)) if i != layout.z_axis]
    plane = [a for a in range(len(axes)) if a != layout.slice_channel_axis]
    return axes, plane[0], plane[1]


def _plane_index(layout: ImageLayout, rows: slice, cols: slice) -> tuple[Any, ...]:
    """Index of one slice (in the slice's own axes) that takes ``rows`` and ``cols`` of it."""
    axes, row_axis, col_axis = _slice_axes(layout)
    index: list[Any] = [slice(None)] * len(axes)
    index[row_axis], index[col_axis] = rows, cols
    return tuple(index)


def _slice_region(image: Any, layout: ImageLayout, z: int, region: Sequence[Any]) -> np.ndarray:
    """``region`` (indices of the slice's leading axes) of slice ``z``, read from ``image`` alone.

    Only that part is read from a memory-mapped, zarr or dask array.
    """
    axes, _, _ = _slice_axes(layout)
    index: list[Any] = [slice(None)] * len(layout.shape)
    if layout.z_axis is not None:
        index[layout.z_axis] = int(z)
    for axis, value in zip(axes, region, strict=False):
        index[axis] = value
    return np.asarray(image[tuple(index)])


def _read_window(image: Any, layout: ImageLayout, z: int, rows: slice, cols: slice) -> np.ndarray:
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
    return _slice_region(image, layout, z, _plane_index(layout, rows, cols))


def _c_order_regions(shape: Sequence[int], itemsize: int, budget: int) -> Iterator[tuple[Any, ...]]:
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
        for rest in _c_order_regions(shape[1:], itemsize, budget):
            yield (i, *rest)


def _percentile_step(plane_shape: tuple[int, int]) -> int:
    """The stride of the rows and columns percentiles are taken on (as for a whole slice in memory)."""
    rows, cols = plane_shape
    return max(1, math.isqrt(rows * cols // PERCENTILE_SAMPLE_PIXELS))


@dataclass
class _Pending:
    """A slice whose tiles are being encoded."""

    params: PreprocessParams
    content_hash: int
    features: list[torch.Tensor | None]
    input_sizes: dict[int, tuple[int, int]]
    original_sizes: dict[int, tuple[int, int]]
    left: int


class _Embedder:
    """Embeds the slices of one image, into memory or through an :class:`EmbeddingStore`."""

    def __init__(
        self,
        image: Any,
        layout: ImageLayout,
        sam: Sam | None,
        prep: _Prep | None,
        spec: TileSpec | None,
        *,
        precision: str = "auto",
        batch_size: int = 1,
        compile: bool = False,
        store: EmbeddingStore | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if image is not None and not isinstance(getattr(image, "dtype", None), np.dtype):
            image = np.asarray(image)  # lists, tensors …: windows are cut from a numpy array
        self.image, self.layout, self.sam, self.prep, self.spec = image, layout, sam, prep, spec
        self.windows = tile_windows(layout.plane_shape, spec) if spec is not None else None
        self.precision, self.batch_size, self.compile = precision, batch_size, compile
        self.store, self.meta = store, meta or (store.meta if store is not None else {})
        self.memory: dict[int, Embeddings | TiledEmbeddings] = {}
        self.params: dict[int, PreprocessParams] = {}
        self.round_dtype = (
            torch.float16 if store is not None and store.meta.get("cache_dtype") == "float16" else None
        )
        # the row band of the source the current tiles are cut from: (z, first row, stop row, band)
        self._band: tuple[int, int, int, np.ndarray] | None = None

    @property
    def n_tiles(self) -> int:
        return len(self.windows) if self.windows is not None else 1

    # ---------------------------------------------------------------- computing
    def _model_input(self, crop: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        sam = self.sam
        assert sam is not None
        input_size = preprocess_shape(crop.shape[0], crop.shape[1], sam.image_size, sam.max_upscale)
        resized = resize_image(crop, input_size)
        inp = to_model_input(
            resized,
            image_size=sam.image_size,
            pixel_mean=sam.pixel_mean,
            pixel_std=sam.pixel_std,
            device=sam.device,
        )
        return inp, input_size

    def _encode(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        assert self.sam is not None
        feats = encode_images(self.sam, torch.cat(inputs), precision=self.precision, compile=self.compile)
        if self.round_dtype is not None:
            feats = feats.to(self.round_dtype).float()
        return feats

    def computed(self) -> np.ndarray:
        """``(Z,)`` bool: slices available without computing."""
        mask = np.zeros(self.layout.n_slices, dtype=bool)
        if self.store is not None:
            mask |= self.store.done_mask()
        for z in self.memory:
            mask[z] = True
        return mask

    def _cached(self, z: int, done: np.ndarray | None, content_hash: int) -> bool:
        """Whether the cache holds slice ``z`` intact, made from this content."""
        store = self.store
        return bool(
            store is not None
            and done is not None
            and done[z]
            and store.stored_hash(z) == content_hash
            and store.verify_slice(z)
        )

    def _load(
        self, z: int, done: np.ndarray | None
    ) -> tuple[int, np.ndarray | None, PreprocessParams] | None:
        """Hash slice ``z`` and work out its normalisation; None when the cache already holds it intact.

        An untiled slice is read whole and returned normalised. A tiled slice is never read whole:
        it is hashed block by block and its percentiles are taken on a strided subsample of the
        source; its tiles are read one by one later (:meth:`_tile_input`), so the array returned is
        None. Runs in a reader thread, ahead of the encoder.
        """
        assert self.prep is not None
        where = f"slice {z}" if self.layout.is_volume else None
        if self.windows is not None:
            content_hash = self._hash_tiled(z)
            if self._cached(z, done, content_hash):
                return None
            return content_hash, None, self._tiled_params(z, where)
        raw = read_slice(self.image, self.layout, z)
        content_hash = slice_hash(raw)
        if self._cached(z, done, content_hash):
            return None
        scaled, params = self.prep.apply(raw, where)
        return content_hash, scaled, params

    def _hash_tiled(self, z: int) -> int:
        """:func:`slice_hash` of slice ``z``, reading at most ``_READ_BLOCK_BYTES`` at a time."""
        axes, _, _ = _slice_axes(self.layout)
        shape = [self.layout.shape[a] for a in axes]
        itemsize = np.dtype(self.image.dtype).itemsize
        regions = _c_order_regions(shape, itemsize, _READ_BLOCK_BYTES)
        return hash_blocks(shape, (_slice_region(self.image, self.layout, z, r) for r in regions))

    def _tiled_params(self, z: int, where: str | None) -> PreprocessParams:
        """The normalisation of tiled slice ``z``, from a strided subsample of the source.

        Percentiles are taken on every ``k``-th row and column, the same pixels a whole slice in
        memory was sampled on (:func:`~napari_sam.engine.preprocess.percentile_limits`), so the limits
        are those the untiled pipeline finds; they are recorded with the slice. Other modes need no
        statistic: their input checks run on a small subsample here, and on each tile.
        """
        prep = self.prep
        assert prep is not None
        step = _percentile_step(self.layout.plane_shape)
        sample = _read_window(self.image, self.layout, z, slice(None, None, step), slice(None, None, step))
        arr, picks = prep.select(sample)
        if prep.fixed_limits is None and _resolved_mode(prep, arr.dtype, arr.shape[-1]) == "percentile":
            limits, residuals = exact_percentile_limits(arr, prep.percentiles)
            if has_no_contrast(limits):
                warn_no_contrast(arr, where)
            return PreprocessParams("percentile", tuple(prep.percentiles), limits, picks, residuals)
        k = max(1, math.isqrt(arr.shape[0] * arr.shape[1] // _CHECK_SAMPLE_PIXELS))
        return prep.apply(
            sample[_plane_index(self.layout, slice(None, None, k), slice(None, None, k))], where
        )[1]

    def _tile_input(
        self, z: int, t: int, params: PreprocessParams
    ) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """Model input of tile ``t`` of slice ``z``: its window read from the source and normalised.

        Tiles of one row share a band of source rows, read once. Runs in the reader thread.
        """
        assert self.windows is not None and self.prep is not None
        r0, c0, r1, c1 = self.windows[t].bounds
        if self._band is None or self._band[:3] != (z, r0, r1):
            self._band = None  # the old band goes before the new one is read
            band = _read_window(self.image, self.layout, z, slice(r0, r1), slice(None))
            self._band = (z, r0, r1, band)
        crop = self._band[3][_plane_index(self.layout, slice(None), slice(c0, c1))]
        inp, input_size = self._model_input(self.prep.reapply(crop, params))
        return inp, input_size, (r1 - r0, c1 - c0)

    def _inputs(
        self, z: int, scaled: np.ndarray | None, params: PreprocessParams, tiles: Sequence[int], pool: Any
    ) -> Iterator[tuple[int, torch.Tensor, tuple[int, int], tuple[int, int]]]:
        """``(tile, model input, input size, original size)`` for ``tiles`` of slice ``z``.

        A tiled slice's tiles are prepared in the reader ``pool``, two ahead of the encoder.
        """
        if scaled is not None:  # an untiled slice, normalised whole
            inp, input_size = self._model_input(scaled)
            yield 0, inp, input_size, (int(scaled.shape[0]), int(scaled.shape[1]))
            return
        from collections import deque

        feed = iter(tiles)
        ahead: deque[tuple[int, Any]] = deque()
        try:
            while True:
                while len(ahead) < 2 and (t := next(feed, None)) is not None:
                    ahead.append((t, pool.submit(self._tile_input, z, t, params)))
                if not ahead:
                    return
                t, future = ahead.popleft()
                yield (t, *future.result())
        finally:
            for _, future in ahead:
                future.cancel()

    def run(self, slices: Sequence[int], progress: ProgressLike = False, cancel: Any = None) -> None:
        """Make ``slices`` available: reuse intact cached slices of unchanged content, compute the others.

        A background thread reads ahead of the encoder: the next slice (hashed and normalised) while
        the current one is encoded, so at most two untiled slices of the input are in memory. Large
        (tiled) slices are never held whole: the thread reads one band of tile rows at a time and
        prepares the next two tiles; progress moves as each tile is written.
        """
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        if self.image is None or self.sam is None or self.prep is None:
            raise LookupError(
                "these embeddings were opened from a cache without the image; cannot compute slices"
            )
        unit = "slice" if self.windows is None else "tile"
        reporter = Progress(progress, len(slices) * self.n_tiles, cancel=cancel, unit=unit, what="embedding")
        done = self.store.done_mask() if self.store is not None else None
        pending: dict[int, _Pending] = {}
        queue: list[tuple[int, int, torch.Tensor]] = []
        todo = []
        for z in slices:
            if self.store is None and z in self.memory:
                reporter.advance(self.n_tiles)
            else:
                todo.append(z)
        feed = iter(todo)
        ahead: deque[tuple[int, Future]] = deque()
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sam-reader")

        def top_up() -> None:
            while len(ahead) < 2:
                z = next(feed, None)
                if z is None:
                    return
                ahead.append((z, pool.submit(self._load, z, done)))

        try:
            top_up()
            while ahead:
                reporter.check()
                z, future = ahead.popleft()
                loaded = future.result()
                top_up()
                if loaded is None:
                    reporter.advance(self.n_tiles)
                    continue
                content_hash, scaled, params = loaded
                del loaded
                if self.store is not None and self.store.mode != "r+":
                    self.store = self.store.writable()
                kept = self.store.begin_slice(z, content_hash) if self.store is not None else None
                todo_tiles = [t for t in range(self.n_tiles) if kept is None or not kept[t]]
                state = _Pending(params, content_hash, [None] * self.n_tiles, {}, {}, len(todo_tiles))
                pending[z] = state
                reporter.advance(self.n_tiles - len(todo_tiles))  # written before an interruption
                if not todo_tiles:
                    self._finish(z, pending.pop(z))
                    continue
                with contextlib.closing(self._inputs(z, scaled, params, todo_tiles, pool)) as inputs:
                    for t, inp, input_size, original_size in inputs:
                        state.input_sizes[t] = input_size
                        state.original_sizes[t] = original_size
                        queue.append((z, t, inp))
                        if len(queue) >= self.batch_size:
                            self._flush(queue, pending, reporter)
                            reporter.check()
                del scaled
            self._flush(queue, pending, reporter)
        finally:
            for _, future in ahead:
                future.cancel()
            pool.shutdown(wait=True)
            self._band = None
            reporter.close()
            if self.store is not None:  # slices begun and not finished (an error, a cancel)
                self.store.release_locks()

    def _flush(
        self, queue: list[tuple[int, int, torch.Tensor]], pending: dict[int, _Pending], reporter: Progress
    ) -> None:
        if not queue:
            return
        feats = self._encode([inp for _, _, inp in queue])
        for row, (z, t, _) in enumerate(queue):
            state = pending[z]
            feature = feats[row : row + 1] if len(queue) == 1 else feats[row : row + 1].clone()
            if self.store is not None:
                tile = None if self.windows is None else t
                self.store.write_tile(
                    z, tile, feature[0].cpu().numpy(), state.input_sizes[t], state.original_sizes[t]
                )
            else:
                state.features[t] = feature
            state.left -= 1
            if state.left == 0:
                self._finish(z, pending.pop(z))
            reporter.advance(1)
        queue.clear()

    def _finish(self, z: int, state: _Pending) -> None:
        if self.store is not None:
            self.store.finish_slice(
                z,
                content_hash=state.content_hash,
                contrast_limits=state.params.contrast_limits,
                limit_residuals=state.params.limit_residuals,
            )
            return
        self.params[z] = state.params
        tiles = [
            self._embeddings(feature, state.input_sizes[t], state.original_sizes[t], state.params)
            for t, feature in enumerate(state.features)
        ]
        self.memory[z] = tiles[0] if self.windows is None else self._tiled(z, tiles)

    # ---------------------------------------------------------------- reading
    def _embeddings(
        self, features: Any, input_size: Any, original_size: Any, params: PreprocessParams
    ) -> Embeddings:
        model_meta = self.meta.get("model", {})
        sam = self.sam
        if isinstance(features, np.ndarray):
            features = torch.from_numpy(features)[None]
            if sam is not None:
                features = features.to(sam.device)
        return Embeddings(
            features=features,
            input_size=(int(input_size[0]), int(input_size[1])),
            original_size=(int(original_size[0]), int(original_size[1])),
            image_size=int(model_meta.get("image_size") or (sam.image_size if sam is not None else 0)),
            model_name=str(model_meta.get("name") or (sam.name if sam is not None else "")),
            weights_sha256=str(
                model_meta.get("weights_sha256")
                or (model_weights_id(sam, check_content=False) if sam else "")
            ),
            preprocessing=params,
            model=sam,
        )

    def _tiled(self, z: int, tiles: Sequence[Embeddings]) -> TiledEmbeddings:
        assert self.windows is not None and self.spec is not None
        encode = None
        if self.image is not None and self.sam is not None and self.prep is not None:

            def encode(bounds: tuple[int, int, int, int]) -> Embeddings:
                return self._encode_window(z, bounds)

        return TiledEmbeddings(
            tiles=tiles,
            windows=self.windows,
            spec=self.spec,
            original_size=self.layout.plane_shape,
            encode_window=encode,
            model=self.sam,
        )

    def _slice_params(self, z: int) -> PreprocessParams:
        if z in self.params:
            return self.params[z]
        assert self.store is not None
        prep = self.meta["preprocessing"]
        rec = self.store.read_slice(z, tile=0 if self.windows is not None else None)
        return _params_from_record(
            prep["normalize"],
            prep.get("percentiles"),
            rec["contrast_limits"],
            prep.get("channel"),
            rec["limit_residuals"],
        )

    def _encode_window(self, z: int, bounds: tuple[int, int, int, int]) -> Embeddings:
        """Embed any window of slice ``z`` with the slice's normalisation (objects spanning tiles)."""
        assert self.prep is not None
        params = self._slice_params(z)
        r0, c0, r1, c1 = bounds
        raw = _read_window(self.image, self.layout, z, slice(r0, r1), slice(c0, c1))
        crop = self.prep.reapply(raw, params)  # only the window is read and normalised
        inp, input_size = self._model_input(crop)
        return self._embeddings(self._encode([inp]), input_size, crop.shape[:2], params)

    def _from_store(self, z: int) -> Embeddings | TiledEmbeddings:
        store = self.store
        assert store is not None
        if self.windows is None:
            rec = store.read_slice(z)
            params = self._slice_params(z)
            return self._embeddings(rec["features"], rec["input_size"], rec["original_size"], params)
        params = self._slice_params(z)
        store.check_slice(z)  # every tile once, one at a time

        def load_tile(t: int) -> Embeddings:
            rec = store.read_slice(z, tile=t)
            return self._embeddings(rec["features"], rec["input_size"], rec["original_size"], params)

        return self._tiled(z, LazySequence(self.n_tiles, load_tile, keep=2))

    def get(self, z: int) -> Embeddings | TiledEmbeddings:
        """Slice ``z``'s embeddings: from memory, the cache, or computed now when the image is at hand."""
        if z in self.memory:
            return self.memory[z]
        if self.store is not None:
            try:
                return self._from_store(z)
            except CorruptSliceError as exc:
                if self.image is None:
                    if not self.store.done_mask()[z]:
                        raise _missing_slice(self.store, z) from exc
                    raise
        self.run([z])
        return self.memory[z] if self.store is None else self._from_store(z)


class VolumeEmbeddings(Sequence):
    """Embeddings of a ``(Z, Y, X[, C])`` stack, one item per slice, read lazily.

    ``volume[z]`` is the :class:`Embeddings` (or :class:`~napari_sam.engine.embed.tiling.TiledEmbeddings` for
    large slices) of slice ``z``: taken from memory, read from the cache folder (only that slice), or —
    when the image is at hand — computed on first access.

    Attributes
    ----------
    shape
        ``(Z, Y, X)`` spatial shape of the stack.
    store
        The :class:`~napari_sam.engine.embed.store.EmbeddingStore` behind it, or None (in memory).
    model
        The model that computes / decodes the embeddings (None when opened without one).

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_3d
    >>> stack, _ = nuclei_3d((3, 96, 96), n_objects=2, seed=1)
    >>> vol = ns.compute_embeddings(stack, slices=[0])  # slice 0 now, the others when first used
    >>> len(vol), vol.shape, vol.computed()
    (3, (3, 96, 96), array([ True, False, False]))
    >>> vol[2].original_size, vol.is_complete  # slice 2 computed on access
    ((96, 96), False)
    """

    def __init__(self, embedder: _Embedder) -> None:
        self._embedder = embedder

    @property
    def shape(self) -> tuple[int, int, int]:
        z, y, x = self._embedder.layout.spatial_shape
        return int(z), int(y), int(x)

    @property
    def store(self) -> EmbeddingStore | None:
        return self._embedder.store

    @property
    def model(self) -> Sam | None:
        return self._embedder.sam

    @property
    def tiled(self) -> bool:
        return self._embedder.windows is not None

    def __len__(self) -> int:
        return self._embedder.layout.n_slices

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"index a VolumeEmbeddings with a slice number, got {index!r}")
        z = int(index) + (len(self) if index < 0 else 0)
        if not 0 <= z < len(self):
            raise IndexError(f"slice {index} out of range for a stack of {len(self)} slices")
        return self._embedder.get(z)

    def computed(self) -> np.ndarray:
        """``(Z,)`` bool: slices available without computing."""
        return self._embedder.computed()

    @property
    def is_complete(self) -> bool:
        """Whether every slice is available."""
        return bool(self.computed().all())

    def compute(
        self, slices: Sequence[int] | None = None, *, progress: ProgressLike = False, cancel: Any = None
    ) -> VolumeEmbeddings:
        """Compute ``slices`` (default: all not yet available) now; returns self."""
        todo = (
            _check_slices(slices, len(self))
            if slices is not None
            else np.flatnonzero(~self.computed()).tolist()
        )
        self._embedder.run(todo, progress, cancel)
        return self

    def __repr__(self) -> str:
        where = f"cache={str(self.store.path)!r}" if self.store is not None else "in memory"
        n_done = int(self.computed().sum())
        return f"VolumeEmbeddings(shape={self.shape}, computed={n_done}/{len(self)}, {where})"


def _check_slices(slices: Any, n: int) -> list[int]:
    arr = np.asarray(slices)
    if arr.ndim != 1 or not (arr.size == 0 or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"slices must be a sequence of slice numbers, got {slices!r}")
    if arr.size and (arr.min() < -n or arr.max() >= n):
        raise ValueError(f"slices {arr.tolist()} out of range for a stack of {n} slices")
    return sorted({int(v) % n for v in arr})


def _check_int(value: Any, name: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _cache_meta(
    image: Any,
    layout: ImageLayout,
    sam: Sam,
    prep: _Prep,
    spec: TileSpec | None,
    cache_dtype: str,
    scope: str,
) -> dict[str, Any]:
    from ..._version import __version__

    dtype = np.dtype(image.dtype if hasattr(image, "dtype") else np.asarray(image).dtype)
    probe_shape = [2, 2]
    if layout.slice_channel_axis is not None:
        probe_shape.insert(layout.slice_channel_axis, _n_channels(layout))
    elif len(layout.shape) - int(layout.is_volume) == 3:
        probe_shape.append(layout.shape[-1])
    probe, picks = prep.select(np.zeros(probe_shape, dtype=dtype))
    mode = _resolved_mode(prep, dtype, probe.shape[-1])
    windows = tile_windows(layout.plane_shape, spec) if spec is not None else None
    preprocessing = {
        "normalize": mode,
        "percentiles": list(prep.percentiles) if mode == "percentile" else None,
        "percentile_scope": scope if mode == "percentile" else None,
        "volume_limits": [list(v) for v in prep.fixed_limits] if prep.fixed_limits else None,
        "contrast_limits": list(prep.contrast_limits) if prep.contrast_limits is not None else None,
        "channel": list(picks) if picks is not None else None,
        "channel_axis": layout.slice_channel_axis,
        "max_upscale": sam.max_upscale,
    }
    if prep.fixed_residuals is not None:  # only where float64 cannot hold the volume's limits
        preprocessing["volume_residuals"] = [list(v) for v in prep.fixed_residuals]
    return {
        "library_version": __version__,
        "model": {"name": sam.name, "weights_sha256": model_weights_id(sam), "image_size": sam.image_size},
        "preprocessing": preprocessing,
        "image": {
            "shape": list(layout.shape),
            "dtype": dtype.str,
            "n_slices": layout.n_slices,
            "spatial_shape": list(layout.spatial_shape),
            "is_volume": layout.is_volume,
        },
        "tiling": None
        if windows is None or spec is None
        else {
            "tile_size": spec.tile_size,
            "halo": spec.halo,
            "windows": [list(w.bounds) for w in windows],
            "cores": [list(w.core) for w in windows],
        },
        "feature_shape": list(sam.embedding_shape),
        "cache_dtype": cache_dtype,
    }


def _n_channels(layout: ImageLayout) -> int:
    ca = layout.slice_channel_axis
    assert ca is not None
    axes = [i for i in range(len(layout.shape)) if i != layout.z_axis]
    return layout.shape[axes[ca]]


def compute_embeddings(
    image: Any,
    model: ModelLike = "nano",
    *,
    device: DeviceLike = "auto",
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    precision: Precision = "auto",
    compile: bool = False,
    cache: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    cache_dtype: str = "float16",
    batch_size: int = 1,
    tile: Any = None,
    tile_threshold: int = DEFAULT_TILE_THRESHOLD,
    percentile_scope: PercentileScope = "slice",
    slices: Sequence[int] | None = None,
    progress: ProgressLike = False,
    cancel: Any = None,
) -> Embeddings | TiledEmbeddings | VolumeEmbeddings:
    """Embed a 2D image or a 3D stack, optionally through an on-disk cache.

    Parameters
    ----------
    image
        ``(Y, X[, C])`` image or ``(Z, Y, X[, C])`` stack: numpy, dask or zarr array of any integer or
        float dtype. Stacks are read one slice at a time.
    model
        A model name, weights path or :class:`Sam` (see :func:`napari_sam.load_model`).
    device
        Where to run (``"auto"``: CUDA → MPS → CPU).
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing; see :func:`napari_sam.engine.preprocess.prepare_image`. ``channel_axis`` is an
        axis of ``image`` (of the whole stack).
    precision
        Encoder arithmetic: ``"auto"`` (bf16 on CUDA, fp32 elsewhere), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    compile
        Run the encoder compiled with ``torch.compile`` (opt-in: the first call compiles, tens of
        seconds on a GPU and minutes on a CPU; kernels are cached on disk for later processes, see
        :mod:`napari_sam.engine.embed.encoder`). Worth it for long stacks and batches.
    cache
        Folder of a zarr v3 embedding cache (created if missing). Slices already there, intact and of
        unchanged content are reused; others are computed and written one by one, so an interrupted run
        resumes. A cache made for another model, preprocessing, tiling or image shape raises
        :class:`~napari_sam.errors.CacheMismatchError`.
    overwrite
        Replace an existing cache at ``cache`` instead of reusing it or raising.
    cache_dtype
        ``"float16"`` (default, half the disk) or ``"float32"``. Results read from a cache — and those
        computed with one — carry features rounded to this dtype, so a first and a cached run agree.
    batch_size
        Slices (tiles) encoded per forward pass.
    tile, tile_threshold
        Tiling of large slices (see :func:`napari_sam.engine.embed.tiling.resolve_tiling`): by default slices
        whose longest side exceeds ``tile_threshold`` (2048) are embedded in 1024-pixel tiles with a
        128-pixel halo. ``tile=False`` never tiles; ``(tile_size, halo)`` or a
        :class:`~napari_sam.engine.embed.tiling.TileSpec` tiles slices larger than ``tile_size``.
        A tiled slice is never read whole: it is hashed block by block, its percentiles come from
        a regular subsample of the source (the pixels a whole slice in memory is sampled on, so
        the limits are the same), and each tile reads only its window (one band of tile rows at a
        time from a memory-mapped, zarr or dask array); peak memory is a few tiles.
    percentile_scope
        Stacks with percentile normalisation: ``"slice"`` (default) computes the limits on each slice;
        ``"volume"`` once for the stack, from up to 16 evenly spaced slices (the limits are part of
        the cache's preprocessing record: if they change, the cache no longer matches).
    slices
        Stacks: only compute these slices now; the others are computed when first indexed.
    progress
        True: a tqdm bar; a callable: called as ``progress(done, total)`` (in tiles; 1 per untiled
        slice) before starting and after each tile is written (tiles found in the cache count at
        once). A callable with a ``unit`` attribute gets ``"tile"`` or ``"slice"`` there first. An
        exception it raises stops the run; tiles and slices finished so far stay in the cache.
    cancel
        A :class:`threading.Event`; when set, the run stops after the current batch with
        :class:`Cancelled` (the cache stays valid).

    Returns
    -------
    Embeddings | TiledEmbeddings | VolumeEmbeddings
        2D image: :class:`Embeddings`, or :class:`~napari_sam.engine.embed.tiling.TiledEmbeddings` when tiled.
        Stack: :class:`VolumeEmbeddings` (one item per slice, read lazily).

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d, nuclei_3d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> emb = ns.compute_embeddings(image)  # the shipped "nano" model
    >>> tuple(emb.features.shape), emb.original_size, emb.model_name
    ((1, 256, 64, 64), (128, 128), 'nano')

    A stack through a cache folder: slices are written one by one (a stopped run resumes) and read
    back by later calls; ``slices=`` computes only those now, the others when first indexed.

    >>> import tempfile
    >>> stack, _ = nuclei_3d((4, 96, 96), n_objects=3, seed=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     vol = ns.compute_embeddings(stack, cache=f"{tmp}/stack.zarr", slices=[1])
    ...     print(vol.computed())
    ...     print(tuple(vol[1].features.shape))
    [False  True False False]
    (1, 256, 64, 64)
    """
    layout = image_layout(image, channel_axis, channel=channel)
    batch_size = _check_int(batch_size, "batch_size")
    if cache_dtype not in ("float16", "float32"):
        raise ValueError(f"cache_dtype must be 'float16' or 'float32', got {cache_dtype!r}")
    if percentile_scope not in ("slice", "volume"):
        raise ValueError(f"percentile_scope must be 'slice' or 'volume', got {percentile_scope!r}")
    if slices is not None and not layout.is_volume:
        raise ValueError("slices= applies to 3D stacks only")
    todo = _check_slices(slices, layout.n_slices) if slices is not None else list(range(layout.n_slices))
    spec = resolve_tiling(tile, layout.plane_shape, tile_threshold)
    if not isinstance(precision, str) or precision.strip().lower() not in _PRECISION_ALIASES:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
    sam = load_model(model, device)
    prep = _Prep(normalize, tuple(percentiles), contrast_limits, channel, layout.slice_channel_axis)  # type: ignore[arg-type]
    if normalize not in ("auto", "percentile", "none", None):
        raise ValueError(f"normalize must be 'auto', 'percentile' or None, got {normalize!r}")
    if layout.is_volume and percentile_scope == "volume" and contrast_limits is None:
        first, _ = prep.select(_read_window(image, layout, 0, slice(0, 2), slice(0, 2)))  # dtype, channels
        if _resolved_mode(prep, first.dtype, first.shape[-1]) == "percentile":
            limits, residuals = _volume_limits(image, layout, prep)
            prep = replace(prep, fixed_limits=limits, fixed_residuals=residuals)
    store = None
    meta = None
    if cache is not None:
        meta = _cache_meta(image, layout, sam, prep, spec, cache_dtype, percentile_scope)
        store = EmbeddingStore.open_or_create(cache, meta, overwrite=overwrite)
    embedder = _Embedder(
        image,
        layout,
        sam,
        prep,
        spec,
        precision=precision,
        batch_size=batch_size,
        compile=bool(compile),
        store=store,
        meta=meta,
    )
    embedder.run(todo, progress, cancel)
    if layout.is_volume:
        return VolumeEmbeddings(embedder)
    return embedder.get(0)


def open_embeddings(
    path: str | os.PathLike[str], model: ModelLike | None = None, *, device: DeviceLike = "auto"
) -> Embeddings | TiledEmbeddings | VolumeEmbeddings:
    """Read embeddings back from a cache folder, without the image.

    Parameters
    ----------
    path
        A cache written by :func:`compute_embeddings` (``cache=``).
    model
        The model to decode with (checked against the cache's weights by ``predict``); None: resolved
        by name when decoding (works for ``"nano"`` and the official models).
    device
        Where to load ``model`` (``"auto"``: CUDA → MPS → CPU).

    Returns
    -------
    Embeddings | TiledEmbeddings | VolumeEmbeddings
        As :func:`compute_embeddings` would; a slice not in the cache raises
        :class:`~napari_sam.errors.MissingSliceError` (a ``LookupError``) when indexed — for a 2D
        cache, here.

    Raises
    ------
    CorruptCacheError
        The cache's record is damaged (a hand-edited or truncated entry; checked before any model is
        loaded), or an array is missing or of the wrong shape.
    CacheMismatchError
        The cache was written in another format version.

    Examples
    --------
    >>> import tempfile
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_3d
    >>> stack, _ = nuclei_3d((4, 96, 96), n_objects=3, seed=1)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = ns.compute_embeddings(stack, cache=f"{tmp}/stack.zarr", slices=[2])
    ...     vol = ns.open_embeddings(f"{tmp}/stack.zarr")  # later, without the image
    ...     pred = ns.predict(vol[2], points=[[48, 48]])
    ...     try:
    ...         vol[0]
    ...     except LookupError:
    ...         print("slice 0 is not in the cache")
    slice 0 is not in the cache
    >>> vol.shape, pred.masks.shape
    ((4, 96, 96), (1, 3, 96, 96))
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be the folder of an embedding cache, got {type(path).__name__}")
    store = open_store(path)
    sam = load_model(model, device) if model is not None else None
    meta = store.meta
    shape = tuple(meta["image"]["shape"])
    spatial = tuple(meta["image"]["spatial_shape"])
    is_volume = bool(meta["image"]["is_volume"])
    layout = ImageLayout(
        shape, is_volume, 0 if is_volume else None, meta["preprocessing"].get("channel_axis"), spatial
    )
    tiling = meta.get("tiling")
    spec = TileSpec(tiling["tile_size"], tiling["halo"]) if tiling else None
    embedder = _Embedder(None, layout, sam, None, spec, store=store)
    if is_volume:
        return VolumeEmbeddings(embedder)
    if not store.done_mask()[0]:
        raise _missing_slice(store, 0)
    return embedder.get(0)


def _missing_slice(store: EmbeddingStore, z: int) -> MissingSliceError:
    """The error for slice ``z`` of ``store`` not being done, when no image is at hand to compute it."""
    what = f"slice {z} is" if store.meta["image"]["is_volume"] else "its only slice (slice 0) is"
    return MissingSliceError(
        f"the embedding cache at {store.path} is incomplete: {what} not finished (its 'done' flag is "
        "unset: a run interrupted before it, or the flag was lost), and the cache was opened without "
        f"the image, so it cannot be computed; run compute_embeddings(image, cache={str(store.path)!r}) "
        "to finish it, or pass overwrite=True to rebuild the cache"
    )
