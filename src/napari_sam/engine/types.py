"""The values that flow through the engine, and their constants: a leaf that imports nothing of the engine.

- :class:`PreprocessParams`: how an image was turned into model input (recorded with every embedding).
- :class:`Embeddings`: the image encoder's output for one 2D image; :class:`TiledEmbeddings` for a large
  image embedded in tiles (:class:`TileSpec`, :class:`Window`).
- :class:`ImageLayout`: where an array keeps its slices and channels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..model import Sam

Limits = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PreprocessParams:
    """How an image was turned into model input (recorded with every embedding).

    Attributes
    ----------
    normalize
        ``"percentile"``, ``"contrast_limits"`` or ``"none"`` (resolved; never ``"auto"``).
    percentiles
        ``(low, high)`` percentiles, when ``normalize == "percentile"``.
    contrast_limits
        ``(low, high)`` intensities mapped to 0 and 1: the given limits, or the computed percentile
        values per selected channel.
    channel
        Selected channel indices mapped to R, G, B (``None``: the image is gray or RGB as given).
    limit_residuals
        What rounding ``contrast_limits`` to float64 left out, per channel: the exact limits are
        ``contrast_limits + limit_residuals``. Only 64-bit integer images beyond ``2**53`` have
        limits float64 cannot hold (their percentiles are taken after subtracting the minimum
        exactly); ``None`` when every limit is exact as it is. A tile, a window or a slice of such an
        image normalised with these limits is normalised exactly as the whole image.
    """

    normalize: str
    percentiles: tuple[float, float] | None
    contrast_limits: tuple[tuple[float, float], ...] | None
    channel: tuple[int, ...] | None
    limit_residuals: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Embeddings:
    """The image encoder's output for one 2D image, with what is needed to decode prompts on it.

    Attributes
    ----------
    features
        ``(1, C, h, w)`` float32 tensor, e.g. ``(1, 256, 64, 64)``.
    input_size
        ``(rows, cols)`` of the resized image inside the padded model input.
    original_size
        ``(rows, cols)`` of the image.
    image_size
        Side of the square model input (1024 for the official models).
    model_name
        The model's name (``"vit_b"``, a file stem …).
    weights_sha256
        Identifies the exact weights.
    preprocessing
        How the image was normalised (see :class:`PreprocessParams`).
    model
        The model that computed the features (used to decode prompts); not part of the record.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> emb = ns.compute_embeddings(image)
    >>> tuple(emb.features.shape), emb.features.dtype, emb.original_size, emb.image_size
    ((1, 256, 64, 64), torch.float32, (128, 128), 1024)
    >>> emb.preprocessing.normalize, emb.preprocessing.percentiles
    ('percentile', (1.0, 99.8))
    """

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    image_size: int
    model_name: str
    weights_sha256: str
    preprocessing: PreprocessParams
    model: Sam | None = field(default=None, repr=False)

    def record(self) -> dict[str, Any]:
        """Everything but the tensors, as plain JSON-able values."""
        return {
            "input_size": list(self.input_size),
            "original_size": list(self.original_size),
            "image_size": self.image_size,
            "model_name": self.model_name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing.to_dict(),
        }


#: Slices sampled (evenly spaced) to estimate volume-wide percentiles (``percentile_scope="volume"``).
VOLUME_SAMPLE_SLICES = 16


_VOLUME_SAMPLE_PIXELS = 1 << 18


@dataclass(frozen=True)
class ImageLayout:
    """Where an image keeps its slices and channels.

    Attributes
    ----------
    shape
        The array's full shape.
    is_volume
        True for a ``(Z, Y, X[, C])`` stack.
    z_axis
        Axis of the slices (None for a 2D image).
    slice_channel_axis
        Channel axis inside one slice, when given by ``channel_axis`` or inferred from ``channel``
        (None: last if ``C <= 4``).
    spatial_shape
        ``(Z, Y, X)`` or ``(Y, X)``.
    channel_axis
        Axis of the whole array holding channels (non-negative), when given or inferred; None for
        gray images and for channels found last on their own (``C <= 4``).
    """

    shape: tuple[int, ...]
    is_volume: bool
    z_axis: int | None
    slice_channel_axis: int | None
    spatial_shape: tuple[int, ...]
    channel_axis: int | None = None

    @property
    def n_slices(self) -> int:
        return self.spatial_shape[0] if self.is_volume else 1

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(Y, X)`` of one slice."""
        y, x = self.spatial_shape[-2:]
        return int(y), int(x)


#: Longest image side (pixels) above which images are tiled by default.
DEFAULT_TILE_THRESHOLD = 2048


DEFAULT_TILE_SIZE = 1024


DEFAULT_HALO = 128


#: Logit written outside the tile a mask was decoded on (``predict(..., return_logits=True)``).
OUTSIDE_LOGIT = -1.0e4


@dataclass(frozen=True)
class TileSpec:
    """How to tile: square tiles of ``tile_size`` pixels, neighbours overlapping by ``2 * halo``.

    The halo should exceed the radius of the largest object so that every object fits in some tile.

    Attributes
    ----------
    tile_size
        Side of the square tiles in image pixels (at least 16; default 1024).
    halo
        Overlap on each side of a tile's core, in pixels; ``0 <= 2 * halo < tile_size`` (default 128).

    Examples
    --------
    >>> import napari_sam as ns
    >>> ns.TileSpec()
    TileSpec(tile_size=1024, halo=128)
    >>> ns.TileSpec(tile_size=512, halo=300)
    Traceback (most recent call last):
    ...
    ValueError: halo must satisfy 0 <= 2 * halo < tile_size, got halo=300, tile_size=512

    Pass one as ``compute_embeddings(image, tile=spec)`` (or ``tile=(512, 64)``).
    """

    tile_size: int = DEFAULT_TILE_SIZE
    halo: int = DEFAULT_HALO

    def __post_init__(self) -> None:
        for name in ("tile_size", "halo"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, got {value!r}")
        if self.tile_size < 16:
            raise ValueError(f"tile_size must be at least 16 pixels, got {self.tile_size}")
        if self.halo < 0 or 2 * self.halo >= self.tile_size:
            raise ValueError(
                f"halo must satisfy 0 <= 2 * halo < tile_size, got halo={self.halo}, "
                f"tile_size={self.tile_size}"
            )


@dataclass(frozen=True)
class Window:
    """One tile: ``bounds`` and ``core`` as half-open ``(min_row, min_col, max_row, max_col)``."""

    bounds: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def slices(self) -> tuple[slice, slice]:
        r0, c0, r1, c1 = self.bounds
        return slice(r0, r1), slice(c0, c1)

    @property
    def offset(self) -> np.ndarray:
        """``(2,)`` ``(row, col)`` of the window's top-left pixel."""
        return np.array(self.bounds[:2], dtype=np.float64)

    @property
    def shape(self) -> tuple[int, int]:
        r0, c0, r1, c1 = self.bounds
        return r1 - r0, c1 - c0


class LazySequence(Sequence):
    """A read-only sequence whose items are produced by ``loader(i)``; the last ``keep`` are kept."""

    def __init__(self, length: int, loader: Callable[[int], Any], keep: int = 2) -> None:
        self._length = int(length)
        self._loader = loader
        self._keep = max(0, int(keep))
        self._recent: dict[int, Any] = {}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        i = int(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"index {index} out of range for {self._length} item(s)")
        if i in self._recent:
            return self._recent[i]
        value = self._loader(i)
        if self._keep:
            self._recent[i] = value
            while len(self._recent) > self._keep:
                self._recent.pop(next(iter(self._recent)))
        return value

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._length):
            yield self[i]


@dataclass(eq=False)
class TiledEmbeddings:
    """Embeddings of one large 2D image, tile by tile.

    Attributes
    ----------
    tiles
        One :class:`~napari_sam.engine.embed.embeddings.Embeddings` per window (``original_size`` is the
        tile's shape); a list, or a lazy sequence reading from the cache.
    windows
        The tiles' :class:`Window` in image coordinates, row-major.
    spec
        Tile size and halo.
    original_size
        ``(rows, cols)`` of the whole image.
    encode_window
        ``bounds → Embeddings`` embedding any window of the image (same normalisation as the tiles),
        used for objects no tile contains; None when the image is not at hand.
    model
        The model that computed the features.

    Examples
    --------
    Large slices are tiled automatically (longest side over 2048 px); small tiles force it here:

    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((100, 200), n_objects=5, seed=2)
    >>> tiled = ns.compute_embeddings(image, tile=(128, 16))  # (tile_size, halo)
    >>> type(tiled).__name__, len(tiled.tiles), tiled.original_size
    ('TiledEmbeddings', 2, (100, 200))
    >>> [window.bounds for window in tiled.windows]  # (min_row, min_col, max_row, max_col)
    [(0, 0, 100, 128), (0, 72, 100, 200)]
    >>> ns.predict(tiled, box=[[30, 80, 70, 130]], multimask=False).masks.shape  # whole-image masks
    (1, 1, 100, 200)
    """

    tiles: Sequence[Embeddings]
    windows: tuple[Window, ...]
    spec: TileSpec
    original_size: tuple[int, int]
    encode_window: Callable[[tuple[int, int, int, int]], Embeddings] | None = field(default=None, repr=False)
    model: Sam | None = field(default=None, repr=False)
    _extra: dict[tuple[int, int, int, int], Embeddings] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.windows)

    def __repr__(self) -> str:
        return (
            f"TiledEmbeddings(original_size={self.original_size}, tiles={len(self.windows)}, "
            f"tile_size={self.spec.tile_size}, halo={self.spec.halo})"
        )

    def __getitem__(self, index: int) -> Embeddings:
        return self.tiles[index]

    @property
    def weights_sha256(self) -> str:
        return self.tiles[0].weights_sha256

    @property
    def model_name(self) -> str:
        return self.tiles[0].model_name

    def centred_window(self, bbox: Sequence[float]) -> tuple[int, int, int, int]:
        """A window of at least ``tile_size`` (or the object plus a halo) centred on ``bbox``."""
        out = []
        for lo, hi, length in (
            (bbox[0], bbox[2], self.original_size[0]),
            (bbox[1], bbox[3], self.original_size[1]),
        ):
            size = min(length, max(self.spec.tile_size, int(np.ceil(hi - lo)) + 2 * self.spec.halo))
            start = round((lo + hi) / 2 - size / 2)
            start = min(max(start, 0), length - size)
            out.append((start, start + size))
        (r0, r1), (c0, c1) = out
        return r0, c0, r1, c1

    def route(self, bbox: Sequence[float]) -> int | None:
        """Index of the tile containing ``bbox`` (half-open, rows first) with the widest margin, or None."""
        r0, c0, r1, c1 = bbox
        rows, cols = self.original_size
        best, best_margin = None, -np.inf
        for i, win in enumerate(self.windows):
            wr0, wc0, wr1, wc1 = win.bounds
            if not (wr0 <= r0 and wc0 <= c0 and r1 <= wr1 and c1 <= wc1):
                continue
            margins = [
                r0 - wr0 if wr0 > 0 else np.inf,
                c0 - wc0 if wc0 > 0 else np.inf,
                wr1 - r1 if wr1 < rows else np.inf,
                wc1 - c1 if wc1 < cols else np.inf,
            ]
            margin = min(margins)
            if margin > best_margin:
                best, best_margin = i, margin
        return best

    def embeddings_for(self, bbox: Sequence[float]) -> tuple[tuple[int, int, int, int], Embeddings, bool]:
        """``(bounds, embeddings, exact)`` to decode an object with bounding box ``bbox`` on.

        ``exact`` is False when no window contains the object and none could be embedded for it: the
        prompts must then be clipped to the returned window.
        """
        index = self.route(bbox)
        if index is not None:
            return self.windows[index].bounds, self.tiles[index], True
        if self.encode_window is not None:
            bounds = self.centred_window(bbox)
            if bounds not in self._extra:
                while len(self._extra) >= 4:
                    self._extra.pop(next(iter(self._extra)))
                self._extra[bounds] = self.encode_window(bounds)
            return bounds, self._extra[bounds], True
        r0, c0, r1, c1 = bbox
        overlaps = []
        for win in self.windows:
            wr0, wc0, wr1, wc1 = win.bounds
            overlaps.append(max(0.0, min(r1, wr1) - max(r0, wr0)) * max(0.0, min(c1, wc1) - max(c0, wc0)))
        index = int(np.argmax(overlaps))
        warnings.warn(
            f"an object with bounding box {list(bbox)} does not fit in any tile and the image is not "
            "available to embed a tile around it; it is segmented within the tile overlapping it most "
            "(increase the tile halo, or pass the image)",
            stacklevel=3,
        )
        return self.windows[index].bounds, self.tiles[index], False


# ------------------------------------------------------------------------------------------------ prompts


@dataclass(frozen=True, eq=False)
class Prompts:
    """Checked prompts in napari coordinates, made by
    :func:`~napari_sam.engine.decode.prompts.normalize_prompts` (code that derives prompts from checked
    ones, such as one slice's or one tile's share, builds one directly).

    Coordinates are pixels of the original image, rows first: pixel ``i`` is centred on ``i``. A set of
    prompts (``segment``, the nodes, propagation) holds flat rows; :func:`napari_sam.predict`'s prompts
    are grouped by object (``per_object``).

    Attributes
    ----------
    points
        float64 ``(N, 2)`` rows ``(row, col)`` on an image, ``(N, 3)`` rows ``(z, row, col)`` on a stack
        (``z`` a whole slice number); grouped by object: ``(K, P, 2)``, the ``P`` points of each of
        ``K`` objects. No points: ``N = 0`` (``(0, 0, 2)`` grouped).
    point_labels
        int64 of shape ``points.shape[:-1]``: 1 foreground (on the object), 0 background.
    boxes
        float64 ``(M, 4)`` half-open ``(min_row, min_col, max_row, max_col)`` clipped to the image, or
        ``(M, 6)`` ``(min_z, min_row, min_col, max_z, max_row, max_col)`` with ``max_z = min_z + 1`` on a
        stack (a box lies on one slice); ``M = 0`` for none. Grouped by object: one box per object.
    masks
        Mask prompts as given (``predict``'s ``mask_input``: low-resolution logits or a binary mask of
        the image's shape, one for all objects or one per object), checked by the decoder against the
        model's mask size; None when not given.
    """

    points: np.ndarray
    point_labels: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray | None = None

    @property
    def per_object(self) -> bool:
        """True when points are grouped by object, ``(K, P, 2)`` (:func:`napari_sam.predict`'s form)."""
        return self.points.ndim == 3

    @property
    def has_points(self) -> bool:
        return self.points.size > 0

    @property
    def has_boxes(self) -> bool:
        return len(self.boxes) > 0

    @property
    def n_objects(self) -> int:
        """Objects described by prompts grouped by object: one set of points may serve all boxes."""
        return max(len(self.points), len(self.boxes), 1)

    @property
    def slices(self) -> list[int]:
        """The slices that prompts on a stack lie on, in order."""
        z = np.concatenate([self.points[:, 0], self.boxes[:, 0]])
        return sorted({int(v) for v in z})

    def on_slice(self, z: int) -> Prompts:
        """The ``(row, col)`` prompts of slice ``z`` of prompts on a stack, in their given order."""
        on_points, on_boxes = self.points[:, 0] == z, self.boxes[:, 0] == z
        return Prompts(
            points=self.points[on_points, 1:],
            point_labels=self.point_labels[on_points],
            boxes=self.boxes[on_boxes][:, [1, 2, 4, 5]],
        )
