"""Embedding images: :func:`compute_embeddings` for 2D images, large images and stacks; reading caches back.

:func:`compute_embeddings` checks its options once (an :class:`~napari_sam.engine.types.EmbedOptions`,
before any model is loaded) and embeds a 2D image directly, a large image in tiles
(:class:`~napari_sam.engine.types.TiledEmbeddings`) and a ``(Z, Y, X[, C])`` stack slice by slice
(:class:`VolumeEmbeddings`), in memory or through the zarr cache of
:mod:`napari_sam.engine.embed.store`. :func:`embed_image` is the same for callers that already hold a
loaded model and options. :func:`open_embeddings` reads a cache back without the image.

The work is done by the pipeline (:mod:`napari_sam.engine.embed.pipeline`), which reads ahead with
:mod:`napari_sam.engine.embed.reader`; :mod:`napari_sam.engine.embed.layout` reads the image's shape.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...model import Sam
from ..device import DeviceLike
from ..loading import ModelLike, load_model, model_weights_id
from ..preprocess import Preprocessor
from ..steps import ProgressLike
from ..types import (
    DEFAULT_PERCENTILES,
    DEFAULT_TILE_THRESHOLD,
    Embeddings,
    EmbedOptions,
    ImageLayout,
    NormalizeMode,
    PercentileScope,
    Precision,
    TiledEmbeddings,
    TileSpec,
)
from .geometry import resolve_geometry
from .layout import channel_count, image_layout, read_window
from .pipeline import SliceEmbedder, embed_plane, missing_slice
from .reader import volume_limits
from .store import EmbeddingStore, open_store
from .tiling import tile_windows

__all__ = ["VolumeEmbeddings", "compute_embeddings", "embed_image", "open_embeddings"]


class VolumeEmbeddings(Sequence):
    """Embeddings of a ``(Z, Y, X[, C])`` stack, one item per slice, read lazily.

    ``volume[z]`` is the :class:`Embeddings` (or :class:`~napari_sam.engine.types.TiledEmbeddings` for
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

    def __init__(self, embedder: SliceEmbedder) -> None:
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
    def object_size(self) -> float | None:
        """The objects' diameter (image px) the slices' scale was chosen from; None: the fixed rule."""
        return self._embedder.object_size

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
    object_size: float | str | None = None,
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
        Preprocessing; see :class:`napari_sam.engine.preprocess.Preprocessor`. ``channel_axis`` is an
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
        :class:`~napari_sam.engine.types.TileSpec` tiles slices larger than ``tile_size``.
        A tiled slice is never read whole: it is hashed block by block, its percentiles come from
        a regular subsample of the source (the pixels a whole slice in memory is sampled on, so
        the limits are the same), and each tile reads only its window (one band of tile rows at a
        time from a memory-mapped, zarr or dask array); peak memory is a few tiles.
    percentile_scope
        Stacks with percentile normalisation: ``"slice"`` (default) computes the limits on each slice;
        ``"volume"`` once for the stack, from up to 16 evenly spaced slices (the limits are part of
        the cache's preprocessing record: if they change, the cache no longer matches).
    object_size
        The objects' typical diameter in image pixels (as Cellpose's ``diameter``); ``"auto"``:
        estimate it from the image (the middle slice of a stack,
        :func:`~napari_sam.engine.object_scale.estimate_object_size`); ``"fixed"``: the fixed rule (the
        longer side to the canvas, nano enlarging at most 2×, tiles past ``tile_threshold``); None
        (default): the model's choice (``model.default_object_size``: ``"auto"`` for nano, ``"fixed"``
        for the official models, whose results then match the reference package's). With a size, the
        image is scaled by ``model.object_scale`` (nano: ``3 * sqrt(14 / object_size)``, at most 3×, the
        scales it segments best at) — enlarged for small objects, shrunk for very large ones — and, when
        the scaled image exceeds the canvas, embedded in tiles that each fill it (unless ``tile=`` says
        otherwise); see :mod:`napari_sam.engine.object_scale`. The size and scale are part of the cache's
        record.
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
        2D image: :class:`Embeddings`, or :class:`~napari_sam.engine.types.TiledEmbeddings` when tiled.
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
    options = EmbedOptions(
        normalize=normalize,
        percentiles=percentiles,
        contrast_limits=contrast_limits,
        channel=channel,
        channel_axis=channel_axis,
        precision=precision,
        compile=compile,
        batch_size=batch_size,
        tile=tile,
        tile_threshold=tile_threshold,
        percentile_scope=percentile_scope,
        cache_dtype=cache_dtype,
        object_size=object_size,
    )
    layout = image_layout(image, channel_axis, channel=channel)
    todo = _slices_to_embed(slices, layout)
    sam = load_model(model, device)  # after every check: a typo costs no download
    return _embed(image, layout, sam, options, todo, cache, overwrite, progress, cancel)


def embed_image(
    image: Any,
    sam: Sam,
    options: EmbedOptions,
    *,
    layout: ImageLayout | None = None,
    cache: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    slices: Sequence[int] | None = None,
    progress: ProgressLike = False,
    cancel: Any = None,
) -> Embeddings | TiledEmbeddings | VolumeEmbeddings:
    """:func:`compute_embeddings` for a loaded model and options already checked.

    Parameters
    ----------
    image
        ``(Y, X[, C])`` image or ``(Z, Y, X[, C])`` stack.
    sam
        The model.
    options
        How to embed (checked when made).
    layout
        The image's layout when the caller has read it (as
        :func:`~napari_sam.engine.embed.layout.image_layout` reads it with ``options``' channel axis and
        channel); None: read here.
    cache, overwrite, slices, progress, cancel
        As for :func:`compute_embeddings`.

    Returns
    -------
    Embeddings | TiledEmbeddings | VolumeEmbeddings
        As :func:`compute_embeddings`.
    """
    if layout is None:
        layout = image_layout(image, options.channel_axis, channel=options.channel)
    todo = _slices_to_embed(slices, layout)
    return _embed(image, layout, sam, options, todo, cache, overwrite, progress, cancel)


def _slices_to_embed(slices: Sequence[int] | None, layout: ImageLayout) -> list[int]:
    """The slices to compute now: ``slices`` checked, or all of them."""
    if slices is None:
        return list(range(layout.n_slices))
    if not layout.is_volume:
        raise ValueError("slices= applies to 3D stacks only")
    return _check_slices(slices, layout.n_slices)


def _embed(
    image: Any,
    layout: ImageLayout,
    sam: Sam,
    options: EmbedOptions,
    todo: list[int],
    cache: str | os.PathLike[str] | None,
    overwrite: bool,
    progress: ProgressLike,
    cancel: Any,
) -> Embeddings | TiledEmbeddings | VolumeEmbeddings:
    """Embed ``todo`` of ``image``: a plain 2D image directly, anything else through the pipeline."""
    preprocessor = Preprocessor.from_options(options, layout.slice_channel_axis)
    if layout.is_volume and options.percentile_scope == "volume":
        preprocessor = _with_volume_limits(image, layout, preprocessor)
    geometry = resolve_geometry(image, layout, sam, options, preprocessor)
    preprocessor, spec = geometry.preprocessor, geometry.tiling
    if cache is None and spec is None and not layout.is_volume:
        return embed_plane(
            image,
            sam,
            preprocessor,
            options,
            progress=progress,
            cancel=cancel,
            object_size=geometry.object_size,
        )
    store = meta = None
    if cache is not None:
        meta = _cache_record(image, layout, sam, preprocessor, spec, options, geometry.object_size)
        store = EmbeddingStore.open_or_create(cache, meta, overwrite=overwrite)
    embedder = SliceEmbedder(
        image,
        layout,
        sam,
        spec,
        preprocessor=preprocessor,
        options=options,
        store=store,
        meta=meta,
        object_size=geometry.object_size,
    )
    embedder.run(todo, progress, cancel)
    return VolumeEmbeddings(embedder) if layout.is_volume else embedder.get(0)


def _with_volume_limits(image: Any, layout: ImageLayout, preprocessor: Preprocessor) -> Preprocessor:
    """``percentile_scope="volume"``: the preprocessing with limits over the stack, when percentiles apply."""
    if preprocessor.contrast_limits is not None:
        return preprocessor
    corner = read_window(image, layout, 0, slice(0, 2), slice(0, 2))  # enough for its dtype and channels
    first, _ = preprocessor.channels(corner)
    if preprocessor.mode_for(first.dtype, first.shape[-1]) != "percentile":
        return preprocessor
    return preprocessor.with_volume_limits(*volume_limits(image, layout, preprocessor))


def _cache_record(
    image: Any,
    layout: ImageLayout,
    sam: Sam,
    preprocessor: Preprocessor,
    spec: TileSpec | None,
    options: EmbedOptions,
    object_size: float | None = None,
) -> dict[str, Any]:
    """The record a cache is made with and checked against: library, model, preprocessing, image, tiling."""
    from ..._version import __version__

    dtype = np.dtype(image.dtype if hasattr(image, "dtype") else np.asarray(image).dtype)
    probe_shape = [2, 2]
    if layout.slice_channel_axis is not None:
        probe_shape.insert(layout.slice_channel_axis, channel_count(layout))
    elif len(layout.shape) - int(layout.is_volume) == 3:
        probe_shape.append(layout.shape[-1])
    probe, picks = preprocessor.channels(np.zeros(probe_shape, dtype=dtype))
    mode = preprocessor.mode_for(dtype, probe.shape[-1])
    windows = tile_windows(layout.plane_shape, spec) if spec is not None else None
    volume, contrast = preprocessor.volume_limits, preprocessor.contrast_limits
    preprocessing = {
        "normalize": mode,
        "percentiles": list(preprocessor.percentiles) if mode == "percentile" else None,
        "percentile_scope": options.percentile_scope if mode == "percentile" else None,
        "volume_limits": [list(v) for v in volume] if volume else None,
        "contrast_limits": list(contrast) if contrast is not None else None,
        "channel": list(picks) if picks is not None else None,
        "channel_axis": layout.slice_channel_axis,
        "max_upscale": sam.max_upscale,
    }
    if preprocessor.scale is not None:  # chosen from the objects' size (absent: the model's rule)
        preprocessing["object_size"] = object_size
        preprocessing["scale"] = preprocessor.scale
    if preprocessor.volume_residuals is not None:  # only where float64 cannot hold the volume's limits
        preprocessing["volume_residuals"] = [list(v) for v in preprocessor.volume_residuals]
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
        "cache_dtype": options.cache_dtype,
    }


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
    embedder = SliceEmbedder(None, layout, sam, spec, store=store)
    if is_volume:
        return VolumeEmbeddings(embedder)
    if not store.done_mask()[0]:
        raise missing_slice(store, 0)
    return embedder.get(0)
