"""The embedding pipeline: the slices (or tiles) of an image → the encoder → memory or the zarr cache.

:class:`SliceEmbedder` embeds the slices of one image. A reader thread works ahead of the encoder
(:func:`~napari_sam.engine.embed.reader.prefetch`): it hashes and normalises the next two slices while
the current one is encoded, and reads and normalises the next tile of a tiled slice. The main thread
batches model inputs, encodes them, writes the features to the store (or keeps them in memory) and
reports progress through :class:`~napari_sam.engine.steps.Progress`. A cached slice of unchanged
content is reused; an interrupted slice keeps the tiles it wrote; ``cancel`` stops after the current
batch. The same object reads slices back (from memory or the store) for
:class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings`.

:func:`embed_plane` is the direct way for one 2D image without cache or tiles: read → preprocess →
encode → :class:`~napari_sam.engine.types.Embeddings`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch

from ...errors import CorruptSliceError, MissingSliceError
from ...model import Sam
from ..loading import model_weights_id
from ..preprocess import Preprocessor
from ..steps import Progress, ProgressLike
from ..types import (
    Embeddings,
    EmbedOptions,
    ImageLayout,
    LazySequence,
    PreprocessParams,
    TiledEmbeddings,
    TileSpec,
)
from .encoder import encode_images
from .reader import LoadedSlice, ModelInput, SliceReader, prefetch
from .store import EmbeddingStore
from .tiling import tile_windows

__all__ = ["SliceEmbedder", "embed_plane", "missing_slice"]


def encode(
    sam: Sam, inputs: Sequence[torch.Tensor], options: EmbedOptions, round_to: Any = None
) -> torch.Tensor:
    """``(1, 3, S, S)`` model inputs → ``(B, 256, S / 16, S / 16)`` float32 features in one forward pass.

    ``round_to``: a dtype the features are rounded to (a float16 cache's), or None.
    """
    features = encode_images(
        sam, torch.cat(list(inputs)), precision=options.precision, compile=options.compile
    )
    if round_to is not None:
        features = features.to(round_to).float()
    return features


def make_embeddings(
    features: Any,
    input_size: Any,
    original_size: Any,
    params: PreprocessParams,
    sam: Sam | None,
    model_record: Mapping[str, Any] | None = None,
    object_size: float | None = None,
) -> Embeddings:
    """An :class:`Embeddings` from features (a ``(1, C, h, w)`` tensor, or ``(C, h, w)`` read from a store).

    The model's name, weights and canvas come from ``model_record`` (a store's) or else from ``sam``;
    ``object_size`` is the size the run's scale was chosen from (None: the model's fixed rule).
    """
    record = model_record or {}
    if isinstance(features, np.ndarray):
        features = torch.from_numpy(features)[None]
        if sam is not None:
            features = features.to(sam.device)
    weights = record.get("weights_sha256") or (model_weights_id(sam, check_content=False) if sam else "")
    return Embeddings(
        features=features,
        input_size=(int(input_size[0]), int(input_size[1])),
        original_size=(int(original_size[0]), int(original_size[1])),
        image_size=int(record.get("image_size") or (sam.image_size if sam is not None else 0)),
        model_name=str(record.get("name") or (sam.name if sam is not None else "")),
        weights_sha256=str(weights),
        preprocessing=params,
        model=sam,
        object_size=object_size,
    )


def embed_plane(
    image: Any,
    sam: Sam,
    preprocessor: Preprocessor,
    options: EmbedOptions,
    *,
    progress: ProgressLike = False,
    cancel: Any = None,
    object_size: float | None = None,
) -> Embeddings:
    """Embed one 2D image straight through: read → preprocess → encode (no cache, no tiles, no thread).

    Progress counts one slice; ``cancel`` is checked before and after the encoder runs. ``object_size``
    is recorded in the result (what ``preprocessor.scale`` was chosen from).
    """
    with Progress(progress, 1, cancel=cancel, unit="slice", what="embedding") as reporter:
        reporter.check()
        scaled, params = preprocessor.normalized(np.asarray(image))
        pixels, input_size = preprocessor.canvas(scaled, sam)
        features = encode(sam, [pixels], options)
        reporter.advance(1)
        reporter.check()
    return make_embeddings(features, input_size, scaled.shape[:2], params, sam, object_size=object_size)


@dataclass
class _SliceInProgress:
    """A slice whose tiles are being encoded: what its tiles gave so far (not its pixels)."""

    z: int
    content_hash: int
    params: PreprocessParams
    left: int
    features: dict[int, torch.Tensor] = field(default_factory=dict)
    input_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    original_sizes: dict[int, tuple[int, int]] = field(default_factory=dict)


class SliceEmbedder:
    """Embeds the slices of one image into memory or an :class:`EmbeddingStore`, and reads them back.

    Parameters
    ----------
    image
        The image or stack; None for embeddings opened from a cache without it (then nothing can be
        computed, only read).
    layout
        Its :class:`~napari_sam.engine.types.ImageLayout`.
    sam
        The model (None: opened from a cache without one).
    spec
        The tiling of each slice, or None.
    preprocessor, options
        How slices are normalised and encoded (None with ``image``).
    store, meta
        The cache and its record, or None (in memory).
    """

    def __init__(
        self,
        image: Any,
        layout: ImageLayout,
        sam: Sam | None,
        spec: TileSpec | None,
        *,
        preprocessor: Preprocessor | None = None,
        options: EmbedOptions | None = None,
        store: EmbeddingStore | None = None,
        meta: Mapping[str, Any] | None = None,
        object_size: float | None = None,
    ) -> None:
        self.layout, self.sam, self.spec, self.options, self.store = layout, sam, spec, options, store
        self.batch_size = options.batch_size if options is not None else 1
        self.windows = tile_windows(layout.plane_shape, spec) if spec is not None else None
        self.reader = None
        if image is not None and sam is not None and preprocessor is not None:
            self.reader = SliceReader(image, layout, preprocessor, sam, self.windows)
        self.meta = meta or (store.meta if store is not None else {})
        recorded = self.meta.get("preprocessing", {}).get("object_size")
        #: the objects' size the run's scale was chosen from (a store records it); None: fixed rule
        self.object_size = object_size if object_size is not None else recorded
        self.memory: dict[int, Embeddings | TiledEmbeddings] = {}
        self.params: dict[int, PreprocessParams] = {}
        cache_float16 = store is not None and store.meta.get("cache_dtype") == "float16"
        self.round_to = torch.float16 if cache_float16 else None

    @property
    def n_tiles(self) -> int:
        return len(self.windows) if self.windows is not None else 1

    def computed(self) -> np.ndarray:
        """``(Z,)`` bool: slices available without computing."""
        mask = np.zeros(self.layout.n_slices, dtype=bool)
        if self.store is not None:
            mask |= self.store.done_mask()
        for z in self.memory:
            mask[z] = True
        return mask

    # ---------------------------------------------------------------------------------------- computing
    def run(self, slices: Sequence[int], progress: ProgressLike = False, cancel: Any = None) -> None:
        """Make ``slices`` available: reuse intact cached slices of unchanged content, compute the others.

        The reader thread loads the next two slices (hashed and normalised) while the current one is
        encoded; a tiled slice is never held whole: its tiles are read one band of tile rows at a
        time, the next tile while the current batch is encoded. Progress counts tiles (1 per untiled
        slice) and moves as each is written; ``cancel`` is checked before each slice and after each
        batch.
        """
        if self.reader is None:
            raise LookupError(
                "these embeddings were opened from a cache without the image; cannot compute slices"
            )
        unit = "slice" if self.windows is None else "tile"
        reporter = Progress(progress, len(slices) * self.n_tiles, cancel=cancel, unit=unit, what="embedding")
        todo = []
        for z in slices:
            if self.store is None and z in self.memory:
                reporter.advance(self.n_tiles)
            else:
                todo.append(z)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sam-reader")
        try:
            with contextlib.closing(self._loaded(todo, pool)) as loaded_slices:
                self._encode_all(len(todo), loaded_slices, pool, reporter)
        finally:
            pool.shutdown(wait=True)
            self.reader.release()
            reporter.close()
            if self.store is not None:  # slices begun and not finished (an error, a cancel)
                self.store.release_locks()

    def _loaded(
        self, todo: Sequence[int], pool: ThreadPoolExecutor
    ) -> Generator[LoadedSlice | None, None, None]:
        """``todo``'s slices loaded in the reader thread, two ahead; None for a slice the cache holds."""
        assert self.reader is not None
        done = self.store.done_mask() if self.store is not None else None
        cached = partial(self._cached, done=done)
        return prefetch(pool, (partial(self.reader.load, z, cached) for z in todo), ahead=2)

    def _cached(self, z: int, content_hash: int, done: np.ndarray | None) -> bool:
        """Whether the cache holds slice ``z`` intact, made from this content."""
        store = self.store
        return bool(
            store is not None
            and done is not None
            and done[z]
            and store.stored_hash(z) == content_hash
            and store.verify_slice(z)
        )

    def _encode_all(
        self,
        n_slices: int,
        loaded_slices: Iterator[LoadedSlice | None],
        pool: ThreadPoolExecutor,
        reporter: Progress,
    ) -> None:
        """The main loop: ``n_slices`` slices in, batches through the encoder, features out."""
        batch: list[tuple[_SliceInProgress, ModelInput]] = []
        for _ in range(n_slices):
            reporter.check()  # before each slice is awaited
            loaded = next(loaded_slices)
            if loaded is None:  # in the cache already
                reporter.advance(self.n_tiles)
            else:
                self._encode_slice(loaded, pool, batch, reporter)
            del loaded  # the next slice is awaited without holding this one
        self._flush(batch, reporter)

    def _encode_slice(
        self,
        loaded: LoadedSlice,
        pool: ThreadPoolExecutor,
        batch: list[tuple[_SliceInProgress, ModelInput]],
        reporter: Progress,
    ) -> None:
        """Queue the tiles of ``loaded`` the cache lacks, encoding each batch as it fills."""
        tiles = self._begin(loaded.z, loaded.content_hash)
        state = _SliceInProgress(loaded.z, loaded.content_hash, loaded.params, len(tiles))
        reporter.advance(self.n_tiles - len(tiles))  # written before an interruption
        if not tiles:
            self._finish(state)
            return
        with contextlib.closing(self._inputs(loaded, tiles, pool)) as inputs:
            for model_input in inputs:
                batch.append((state, model_input))
                if len(batch) >= self.batch_size:
                    self._flush(batch, reporter)
                    reporter.check()

    def _begin(self, z: int, content_hash: int) -> list[int]:
        """Start writing slice ``z`` (locks it in the store); the tiles it still needs."""
        if self.store is None:
            return list(range(self.n_tiles))
        if self.store.mode != "r+":
            self.store = self.store.writable()
        kept = self.store.begin_slice(z, content_hash)
        return [t for t in range(self.n_tiles) if kept is None or not kept[t]]

    def _inputs(
        self, loaded: LoadedSlice, tiles: list[int], pool: ThreadPoolExecutor
    ) -> Generator[ModelInput, None, None]:
        """Model inputs of ``tiles`` of a slice: an untiled slice's, or tiles read in the reader thread."""
        reader = self.reader
        assert reader is not None
        if loaded.scaled is not None:
            yield reader.slice_input(loaded)
            return
        calls = (partial(reader.tile_input, loaded.z, t, loaded.params) for t in tiles)
        yield from prefetch(pool, calls, ahead=1)

    def _encode(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        assert self.sam is not None and self.options is not None
        return encode(self.sam, inputs, self.options, self.round_to)

    def _flush(self, batch: list[tuple[_SliceInProgress, ModelInput]], reporter: Progress) -> None:
        """Encode ``batch`` and store each tile's features; a slice whose tiles are all done is finished."""
        if not batch:
            return
        features = self._encode([model_input.pixels for _, model_input in batch])
        for row, (state, model_input) in enumerate(batch):
            feature = features[row : row + 1] if len(batch) == 1 else features[row : row + 1].clone()
            t = model_input.tile
            state.input_sizes[t], state.original_sizes[t] = model_input.input_size, model_input.original_size
            if self.store is not None:
                tile = None if self.windows is None else t
                self.store.write_tile(
                    state.z, tile, feature[0].cpu().numpy(), model_input.input_size, model_input.original_size
                )
            else:
                state.features[t] = feature
            state.left -= 1
            if state.left == 0:
                self._finish(state)
            reporter.advance(1)
        batch.clear()

    def _finish(self, state: _SliceInProgress) -> None:
        """Mark a slice done in the store, or keep its embeddings in memory."""
        z, params = state.z, state.params
        if self.store is not None:
            self.store.finish_slice(
                z,
                content_hash=state.content_hash,
                contrast_limits=params.contrast_limits,
                limit_residuals=params.limit_residuals,
            )
            return
        self.params[z] = params
        tiles = [
            self._embeddings(state.features[t], state.input_sizes[t], state.original_sizes[t], params)
            for t in range(self.n_tiles)
        ]
        self.memory[z] = tiles[0] if self.windows is None else self._tiled(z, tiles)

    # ------------------------------------------------------------------------------------------ reading
    def get(self, z: int) -> Embeddings | TiledEmbeddings:
        """Slice ``z``'s embeddings: from memory, the cache, or computed now when the image is at hand."""
        if z in self.memory:
            return self.memory[z]
        if self.store is not None:
            try:
                return self._from_store(z)
            except CorruptSliceError as exc:
                if self.reader is None:
                    if not self.store.done_mask()[z]:
                        raise missing_slice(self.store, z) from exc
                    raise
        self.run([z])
        return self.memory[z] if self.store is None else self._from_store(z)

    def _embeddings(
        self, features: Any, input_size: Any, original_size: Any, params: PreprocessParams
    ) -> Embeddings:
        return make_embeddings(
            features, input_size, original_size, params, self.sam, self.meta.get("model"), self.object_size
        )

    def _tiled(self, z: int, tiles: Sequence[Embeddings]) -> TiledEmbeddings:
        assert self.windows is not None and self.spec is not None
        encode_window = partial(self._encode_window, z) if self.reader is not None else None
        return TiledEmbeddings(
            tiles=tiles,
            windows=self.windows,
            spec=self.spec,
            original_size=self.layout.plane_shape,
            encode_window=encode_window,
            model=self.sam,
        )

    def _slice_params(self, z: int) -> PreprocessParams:
        """How slice ``z`` was normalised: kept in memory, or read from its record in the store."""
        if z in self.params:
            return self.params[z]
        assert self.store is not None
        prep = self.meta["preprocessing"]
        rec = self.store.read_slice(z, tile=0 if self.windows is not None else None)
        return params_from_record(
            prep["normalize"],
            prep.get("percentiles"),
            rec["contrast_limits"],
            prep.get("channel"),
            rec["limit_residuals"],
        )

    def _encode_window(self, z: int, bounds: tuple[int, int, int, int]) -> Embeddings:
        """Embed any window of slice ``z`` with the slice's normalisation (objects spanning tiles)."""
        assert self.reader is not None
        params = self._slice_params(z)
        model_input = self.reader.window_input(z, bounds, params)
        features = self._encode([model_input.pixels])
        return self._embeddings(features, model_input.input_size, model_input.original_size, params)

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


def params_from_record(
    mode: str, percentiles: Any, limits: np.ndarray, picks: Any, residuals: np.ndarray | None = None
) -> PreprocessParams:
    """A slice's :class:`PreprocessParams` from its recorded ``(3, 2)`` limits and residuals (NaN: unused)."""
    used = [i for i, row in enumerate(np.asarray(limits)) if np.isfinite(row).all()]
    rows = tuple((float(limits[i][0]), float(limits[i][1])) for i in used)
    rest = None
    if residuals is not None and used:
        rest = tuple((float(residuals[i][0]), float(residuals[i][1])) for i in used)
        if all(r == (0.0, 0.0) for r in rest):
            rest = None
    return PreprocessParams(
        normalize=mode,
        percentiles=tuple(percentiles) if percentiles is not None else None,
        contrast_limits=rows or None,
        channel=tuple(picks) if picks is not None else None,
        limit_residuals=rest,
    )


def missing_slice(store: EmbeddingStore, z: int) -> MissingSliceError:
    """The error for slice ``z`` of ``store`` not being done, when no image is at hand to compute it."""
    what = f"slice {z} is" if store.meta["image"]["is_volume"] else "its only slice (slice 0) is"
    return MissingSliceError(
        f"the embedding cache at {store.path} is incomplete: {what} not finished (its 'done' flag is "
        "unset: a run interrupted before it, or the flag was lost), and the cache was opened without "
        f"the image, so it cannot be computed; run compute_embeddings(image, cache={str(store.path)!r}) "
        "to finish it, or pass overwrite=True to rebuild the cache"
    )
