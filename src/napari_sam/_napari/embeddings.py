"""Embeddings of napari image layers, kept per layer and per slice for the widgets to share.

The registry holds weak references to layers: deleting a layer frees its embeddings. Computing is a
generator that yields ``(done, total)`` after every slice, so a napari ``thread_worker`` can report
progress and stop between slices when cancelled.
"""

from __future__ import annotations

import queue
import threading
import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from ..engine.types import Precision, check_object_size
from ..errors import AnnotatorError
from .prompts import image_spatial_shape

T = TypeVar("T")


@dataclass(frozen=True)
class EmbeddingSettings:
    """How embeddings are computed: the model (name or weights path), device, encoder precision, an
    optional on-disk cache folder (zarr; reused when it matches, see :func:`napari_sam.compute_embeddings`)
    and, for RGB(A) layers, one channel to embed as a gray image (``None``: all, the official RGB path).

    ``object_size`` is ``compute_embeddings(object_size=)``: the objects' diameter in pixels,
    ``"auto"``, ``"fixed"`` or None (the model's choice). It sets how the image is scaled onto the
    model's canvas, so embeddings kept for other settings — another object size included — are not
    reused (:func:`stored`).
    """

    model: str = "nano"
    device: str = "auto"
    precision: Precision = "auto"
    cache: str | None = None
    channel: int | None = None
    object_size: float | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_size", check_object_size(self.object_size))


@dataclass
class LayerEmbeddings:
    """The embeddings computed so far for one image layer (key ``0`` for a 2D image, else ``z``).

    ``volume`` is the lazily computing
    :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings` of a stack.
    """

    settings: EmbeddingSettings
    shape: tuple[int, ...]
    slices: dict[int, Any] = field(default_factory=dict)
    volume: Any = None


_REGISTRY: weakref.WeakKeyDictionary[Any, LayerEmbeddings] = weakref.WeakKeyDictionary()
#: caches opened in napari (by the reader), by the spatial shape of the image they belong to
_OPENED_CACHES: dict[tuple[int, ...], str] = {}


def remember_cache(shape: tuple[int, ...], path: str) -> None:
    """Use the cache at ``path`` for images of spatial ``shape`` whose settings name no cache."""
    _OPENED_CACHES[tuple(int(s) for s in shape)] = str(path)


def cache_for(shape: tuple[int, ...], settings: EmbeddingSettings) -> str | None:
    """The cache folder a run uses: the settings' own, else one opened for this shape, else None."""
    return settings.cache or _OPENED_CACHES.get(tuple(shape))


def _key(plane: int | None) -> int:
    return 0 if plane is None else int(plane)


def stored(layer: Any, settings: EmbeddingSettings | None = None) -> LayerEmbeddings | None:
    """The record for ``layer`` if it exists (and matches ``settings`` and the layer's current shape)."""
    record = _REGISTRY.get(layer)
    if record is None:
        return None
    if settings is not None and record.settings != settings:
        return None
    if record.shape != image_spatial_shape(layer):
        return None
    return record


def scaled_object_size(layer: Any) -> float | None:
    """The objects' diameter (image px) the embeddings of ``layer`` were scaled for: the object size
    given, or the estimate of ``"auto"``; None when none are computed or the model's fixed rule placed
    the image."""
    record = stored(layer)
    if record is None:
        return None
    if record.volume is not None:
        return record.volume.object_size
    return next((emb.object_size for emb in record.slices.values()), None)


def lookup(layer: Any, plane: int | None = None, settings: EmbeddingSettings | None = None) -> Any:
    """The :class:`~napari_sam.engine.embed.embeddings.Embeddings` of ``layer`` (on ``plane``), or None."""
    record = stored(layer, settings)
    return None if record is None else record.slices.get(_key(plane))


def _level0(layer: Any) -> Any:
    return layer.data[0] if layer.multiscale else layer.data


def image_plane(layer: Any, plane: int | None = None) -> np.ndarray:
    """The 2D image (``(Y, X)`` or ``(Y, X, C)`` for RGB) of ``layer``, or its slice ``plane`` of a stack."""
    spatial = image_spatial_shape(layer)
    data = _level0(layer)
    if len(spatial) == 3:
        if plane is None or not 0 <= plane < spatial[0]:
            raise AnnotatorError(f"slice {plane} is outside image '{layer.name}' ({spatial[0]} slices)")
        return np.asarray(data[plane])
    return np.asarray(data)


def preprocessing_of(layer: Any) -> dict[str, Any]:
    """Keyword arguments for ``compute_embeddings`` that follow the layer's display.

    Gray images whose contrast limits the user narrowed take those limits; at napari's default (the
    full data range) the library's percentile normalisation is used, which suits the models better.
    RGB images take the default (official) path.
    """
    if layer.rgb:
        return {}
    lo, hi = (float(v) for v in layer.contrast_limits)
    full_lo, full_hi = (float(v) for v in layer.contrast_limits_range)
    if hi <= lo or (np.isclose(lo, full_lo) and np.isclose(hi, full_hi)):
        return {}
    return {"contrast_limits": (lo, hi)}


def embedding_options(shape: tuple[int, ...], settings: EmbeddingSettings) -> dict[str, Any]:
    """The keywords of ``compute_embeddings`` that ``settings`` give for an image of spatial ``shape``:
    ``device``, ``precision``, ``cache`` (:func:`cache_for`) and ``object_size``."""
    return {
        "device": settings.device,
        "precision": settings.precision,
        "cache": cache_for(shape, settings),
        "object_size": settings.object_size,
    }


def compute_steps(
    layer: Any, planes: Sequence[int | None], settings: EmbeddingSettings
) -> Iterator[tuple[int, int]]:
    """Embed ``planes`` of ``layer`` one after another, storing each; yield ``(done, total)`` after each.

    Slices already embedded with the same settings are skipped; with a cache folder, slices already in
    it are read instead of computed. Stopping the generator early keeps the slices finished so far.
    Call this on the UI thread (it reads the layer's contrast limits); iterate it anywhere.
    """
    from ..engine.embed.embeddings import compute_embeddings

    shape = image_spatial_shape(layer)
    for plane in planes:
        if (plane is None) != (len(shape) == 2) or (plane is not None and not 0 <= plane < shape[0]):
            raise AnnotatorError(f"slice {plane} does not exist in image '{layer.name}' of shape {shape}")
    record = stored(layer, settings)
    if record is None:
        record = LayerEmbeddings(settings=settings, shape=shape)
        _REGISTRY[layer] = record
    options = dict(preprocessing_of(layer))
    if settings.channel is not None:
        n_channels = int(np.shape(_level0(layer))[-1]) if layer.rgb else 0
        if not 0 <= settings.channel < n_channels:
            raise AnnotatorError(
                f"channel {settings.channel} does not exist in image '{layer.name}' "
                + (f"({n_channels} channels)" if layer.rgb else "(not an RGB image: pick a channel's layer)")
            )
        options["channel"] = settings.channel
    options.update(embedding_options(shape, settings))
    return _steps(_level0(layer), list(planes), settings.model, record, options, compute_embeddings)


def in_steps(
    call: Callable[[Callable[[int, int], None], threading.Event], T],
) -> Generator[tuple[int, int], None, T]:
    """Run ``call(progress, cancel)`` in a thread and yield its ``(done, total)`` reports as they come.

    Returns (``yield from``) what ``call`` returned, or raises what it raised. Closing the generator
    early (a cancelled napari worker) sets ``cancel`` and waits for ``call`` to stop.
    """
    reports: queue.Queue[tuple[int, int] | None] = queue.Queue()
    cancel = threading.Event()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call(lambda done, total: reports.put((done, total)), cancel)
        except BaseException as exc:  # handed to the generator's caller below
            outcome["error"] = exc
        finally:
            reports.put(None)

    thread = threading.Thread(target=run, name="napari-sam-embed", daemon=True)
    thread.start()
    try:
        while (report := reports.get()) is not None:
            yield report
    finally:
        cancel.set()
        thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _steps(
    data: Any,
    planes: list[int | None],
    model: str,
    record: LayerEmbeddings,
    options: dict[str, Any],
    compute: Any,
) -> Generator[tuple[int, int], None, None]:
    total = len(planes)
    for done, plane in enumerate(planes, start=1):
        key = _key(plane)
        if key not in record.slices:
            if plane is None:
                # a 2D image: its progress counts tiles (one for a normal-size image); the source is
                # passed as it is, so that a big memory-mapped / zarr / dask image is read tile by tile
                record.slices[key] = yield from in_steps(
                    lambda progress, cancel: compute(data, model, progress=progress, cancel=cancel, **options)
                )
            else:
                if record.volume is None:
                    record.volume = compute(data, model, slices=[], **options)
                record.slices[key] = record.volume[plane]
        yield done, total
