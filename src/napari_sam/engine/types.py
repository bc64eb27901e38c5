"""The values that flow through the engine, and their constants: a leaf that imports nothing of the engine
but the :class:`~napari_sam.engine.lru.LRU` helper (itself a leaf).

- :class:`PreprocessParams`: how an image was turned into model input (recorded with every embedding).
- :class:`Embeddings`: the image encoder's output for one 2D image; :class:`TiledEmbeddings` for a large
  image embedded in tiles (:class:`TileSpec`, :class:`Window`).
- :class:`ImageLayout`: where an array keeps its slices and channels.
- :class:`EmbedOptions`: how images are embedded (preprocessing, precision, batching, tiling), checked once.
- :class:`PropagationOptions`: how 3D propagation prompts each slice and when an object stops.
- :class:`AutomaticOptions`: the options of automatic mask generation, checked once.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .lru import LRU

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
        self._recent: LRU[int, Any] = LRU(keep)

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
        return self._recent.get_or_make(i, lambda: self._loader(i))

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._length):
            yield self[i]


@dataclass(eq=False)
class TiledEmbeddings:
    """Embeddings of one large 2D image, tile by tile.

    Attributes
    ----------
    tiles
        One :class:`Embeddings` per window (``original_size`` is the
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
    #: windows embedded for objects no tile holds, the last few kept
    _extra: LRU[tuple[int, int, int, int], Embeddings] = field(default_factory=lambda: LRU(4), repr=False)

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
            bounds, encode = self.centred_window(bbox), self.encode_window
            return bounds, self._extra.get_or_make(bounds, lambda: encode(bounds)), True
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


# ------------------------------------------------------------------------------ automatic segmentation

#: Largest prompt grid side accepted (a million single-point prompts per crop already takes hours).
MAX_POINTS_PER_SIDE = 1024


def _checked_integer(owner: Any, name: str, low: int) -> None:
    """Store ``owner.name`` as an int, or raise ValueError when it is not an integer ``>= low``."""
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    object.__setattr__(owner, name, int(value))


def _checked_number(
    owner: Any, name: str, low: float, high: float, *, open_low: bool = False, open_high: bool = False
) -> None:
    """Store ``owner.name`` as a float, or raise ValueError when it is not a finite number in the range
    from ``low`` to ``high`` (each end included unless ``open_low`` / ``open_high``)."""
    value = getattr(owner, name)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if not math.isfinite(value) or too_low or too_high:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")
    object.__setattr__(owner, name, value)


@dataclass(frozen=True)
class AutomaticOptions:
    """Options of the automatic mask generator, checked when made; the defaults are the official
    ``SamAutomaticMaskGenerator``'s.

    Attributes
    ----------
    points_per_side
        Grid points along each side of the image (``n × n`` prompts on the whole image), at most
        :data:`MAX_POINTS_PER_SIDE`.
    points_per_batch
        Prompts decoded together (memory vs speed; does not change the result).
    pred_iou_thresh
        Keep masks whose predicted IoU is above this, in [0, 1].
    stability_score_thresh
        Keep masks whose stability score is at least this, in [0, 1].
    stability_score_offset
        Logit offset of the two thresholds compared by the stability score.
    mask_threshold
        Logit above which a pixel belongs to a mask.
    box_nms_thresh
        Box IoU above which the lower-scoring of two masks of one crop is dropped, in [0, 1].
    crop_n_layers
        Extra layers of crops (layer ``i`` has ``2**i × 2**i`` crops), 0 = whole image only.
    crop_nms_thresh
        Box IoU for suppression across crops, in [0, 1].
    crop_overlap_ratio
        Overlap of neighbouring crops as a fraction of the shorter image side, in [0, 1).
    crop_n_points_downscale_factor
        Layer ``i`` uses ``points_per_side / factor**i`` points per side.
    min_mask_region_area
        Fill holes and remove islands smaller than this many pixels (0 = off).
    max_area_fraction
        Drop masks covering more than this fraction of their crop (1 = off; not an official option —
        useful against "background" masks in microscopy).
    min_area
        Drop masks with fewer pixels (0 = off; not an official option).
    point_in_mask
        Drop masks that do not contain the grid point that prompted them (not an official option;
        with models never trained on background clicks such masks are mostly spurious).
    mask_nms_thresh
        After the box suppression, drop a mask when its overlap with a higher-scoring kept mask
        (intersection over the smaller of the two) exceeds this (1 = off; not an official option).
        Unlike boxes, masks of touching round objects hardly overlap, while duplicates and parts
        of one object do.
    overlap
        Who keeps a pixel covered by several masks: ``"score"`` the higher predicted IoU, ``"area"``
        the smaller mask (a mask merging several objects cannot swallow them).

    Raises
    ------
    ValueError
        A value of the wrong type or outside its range, or a crop layer left without grid points.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    max_area_fraction: float = 1.0
    min_area: int = 0
    point_in_mask: bool = False
    mask_nms_thresh: float = 1.0
    overlap: str = "score"

    def __post_init__(self) -> None:
        _checked_integer(self, "points_per_side", 1)
        if self.points_per_side > MAX_POINTS_PER_SIDE:
            raise ValueError(
                f"points_per_side must be an integer >= 1 and <= {MAX_POINTS_PER_SIDE} "
                f"({MAX_POINTS_PER_SIDE}² prompts per crop), got {self.points_per_side!r}"
            )
        _checked_integer(self, "points_per_batch", 1)
        _checked_integer(self, "crop_n_layers", 0)
        _checked_integer(self, "crop_n_points_downscale_factor", 1)
        _checked_integer(self, "min_mask_region_area", 0)
        _checked_integer(self, "min_area", 0)
        if not isinstance(self.point_in_mask, (bool, np.bool_)):
            raise ValueError(f"point_in_mask must be True or False, got {self.point_in_mask!r}")
        object.__setattr__(self, "point_in_mask", bool(self.point_in_mask))
        if self.overlap not in ("score", "area"):
            raise ValueError(f"overlap must be 'score' or 'area', got {self.overlap!r}")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            _checked_number(self, name, 0.0, 1.0)
        _checked_number(self, "crop_overlap_ratio", 0.0, 1.0, open_high=True)
        _checked_number(self, "max_area_fraction", 0.0, 1.0, open_low=True)
        _checked_number(self, "mask_nms_thresh", 0.0, 1.0)
        _checked_number(self, "stability_score_offset", 0.0, math.inf, open_high=True)
        _checked_number(self, "mask_threshold", -math.inf, math.inf, open_low=True, open_high=True)
        last = int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers)
        if last < 1:
            raise ValueError(
                f"points_per_side={self.points_per_side} with crop_n_points_downscale_factor="
                f"{self.crop_n_points_downscale_factor} leaves no points on crop layer {self.crop_n_layers}"
            )


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


# ---------------------------------------------------------------------------------------------- embedding

#: How intensities are brought to the model's scale (see :class:`~napari_sam.engine.preprocess.Preprocessor`).
NormalizeMode = Literal["auto", "percentile", "none"] | None
#: Where percentile limits of a stack come from: each slice, or the whole stack.
PercentileScope = Literal["slice", "volume"]
#: Encoder arithmetic (see :func:`napari_sam.engine.embed.encoder.resolve_precision`).
Precision = Literal["auto", "fp32", "bf16", "fp16"]

#: Percentiles used by default for intensity normalisation (low, high).
DEFAULT_PERCENTILES = (1.0, 99.8)

#: The names ``precision=`` accepts (lower case), each with the encoder arithmetic it means.
PRECISION_NAMES = {
    "auto": "auto",
    "fp32": "fp32",
    "float32": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
}

#: The dtypes an embedding cache may keep its features in.
CACHE_DTYPE_NAMES = ("float16", "float32")


def check_int(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int, or ValueError (``"<name> must be an integer >= <low>, got …"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_precision(precision: Any) -> str:
    """The encoder arithmetic ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` that ``precision`` names.

    Any case and the aliases of :data:`PRECISION_NAMES` (``"bfloat16"``, ``"half"`` …) are accepted.

    Raises
    ------
    ValueError
        Not one of those names (or not a string).
    """
    name = PRECISION_NAMES.get(precision.strip().lower()) if isinstance(precision, str) else None
    if name is None:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
    return name


def check_normalize(normalize: Any) -> str:
    """``"auto"``, ``"percentile"`` or ``"none"`` (for None too), or ValueError."""
    mode = "none" if normalize is None else normalize
    if not isinstance(mode, str) or mode not in ("auto", "percentile", "none"):
        raise ValueError(f"normalize must be 'auto', 'percentile' or None, got {normalize!r}")
    return mode


def check_percentiles(percentiles: Any) -> tuple[float, float]:
    """``(low, high)`` percentiles as floats, ``0 <= low < high <= 100``, or ValueError."""
    low, high = (float(p) for p in percentiles)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    return low, high


def check_contrast_limits(contrast_limits: Any) -> tuple[float, float] | None:
    """Finite ``(low, high)`` intensities with ``low < high`` as floats, None for None, or ValueError."""
    if contrast_limits is None:
        return None
    low, high = (float(v) for v in contrast_limits)
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        raise ValueError(f"contrast_limits must be finite (low, high) with low < high, got {contrast_limits}")
    return low, high


def check_tile_threshold(threshold: Any) -> int:
    """The ``tile_threshold=`` option (longest side above which images are tiled) as an int >= 16."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 16:
        raise ValueError(f"tile_threshold must be an integer >= 16, got {threshold!r}")
    return int(threshold)


def tiling_option(tile: Any) -> TileSpec | bool | None:
    """The ``tile=`` option in one of three forms: None (tile large images), False (never) or a spec.

    Parameters
    ----------
    tile
        None, False, True (the default :class:`TileSpec`), an int ``tile_size`` (with a halo of an
        eighth of it, at most :data:`DEFAULT_HALO`), a ``(tile_size, halo)`` pair or a :class:`TileSpec`.

    Raises
    ------
    ValueError
        Any other value, or a tile size and halo :class:`TileSpec` refuses.
    """
    if tile is None or tile is False:
        return tile
    if tile is True:
        return TileSpec()
    if isinstance(tile, TileSpec):
        return tile
    if isinstance(tile, (int, np.integer)):
        size = int(tile)
        return TileSpec(size, min(DEFAULT_HALO, max(0, (size - 1) // 8)))
    if isinstance(tile, Sequence) and len(tile) == 2:
        return TileSpec(int(tile[0]), int(tile[1]))
    raise ValueError(
        f"tile must be None, False, True, a tile size, a (tile_size, halo) pair or a TileSpec; got {tile!r}"
    )


@dataclass(frozen=True)
class EmbedOptions:
    """How images are embedded, checked when made (so a typo fails before any model is loaded).

    :func:`napari_sam.compute_embeddings` builds one from its keyword arguments; the engine passes it on.
    Values are kept in one form: ``normalize`` is ``"auto"``, ``"percentile"`` or ``"none"``,
    ``precision`` a canonical name, ``tile`` None, False or a :class:`TileSpec`.

    Attributes
    ----------
    normalize, percentiles, contrast_limits, channel
        Preprocessing (see :class:`napari_sam.engine.preprocess.Preprocessor`).
    channel_axis
        Axis of the whole image (or stack) that holds channels; None: found from the shape.
    precision
        Encoder arithmetic: ``"auto"`` (bf16 on CUDA, fp32 elsewhere), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    compile
        Run the encoder compiled with ``torch.compile``.
    batch_size
        Slices (tiles) encoded per forward pass, at least 1.
    tile, tile_threshold
        Tiling of large slices (see :func:`napari_sam.engine.embed.tiling.resolve_tiling`).
    percentile_scope
        Stacks with percentile normalisation: limits per ``"slice"`` or once for the ``"volume"``.
    cache_dtype
        ``"float16"`` or ``"float32"``: the dtype features are kept in by a cache (and rounded to).

    Raises
    ------
    ValueError
        A value out of its range; the message names the option.

    Examples
    --------
    >>> EmbedOptions(precision="bfloat16", tile=(512, 64)).precision
    'bf16'
    >>> EmbedOptions(normalize="zscore")
    Traceback (most recent call last):
    ...
    ValueError: normalize must be 'auto', 'percentile' or None, got 'zscore'
    """

    normalize: NormalizeMode = "auto"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    contrast_limits: tuple[float, float] | None = None
    channel: int | Sequence[int] | None = None
    channel_axis: int | None = None
    precision: Precision = "auto"
    compile: bool = False
    batch_size: int = 1
    tile: TileSpec | bool | None = None
    tile_threshold: int = DEFAULT_TILE_THRESHOLD
    percentile_scope: PercentileScope = "slice"
    cache_dtype: str = "float16"

    def __post_init__(self) -> None:
        def keep(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        keep("batch_size", check_int(self.batch_size, "batch_size"))
        if self.cache_dtype not in CACHE_DTYPE_NAMES:
            raise ValueError(f"cache_dtype must be 'float16' or 'float32', got {self.cache_dtype!r}")
        if self.percentile_scope not in ("slice", "volume"):
            raise ValueError(f"percentile_scope must be 'slice' or 'volume', got {self.percentile_scope!r}")
        keep("tile_threshold", check_tile_threshold(self.tile_threshold))
        keep("tile", tiling_option(self.tile))
        keep("precision", check_precision(self.precision))
        keep("compile", bool(self.compile))
        keep("normalize", check_normalize(self.normalize))
        check_percentiles(self.percentiles)
        keep("percentiles", tuple(self.percentiles))
        check_contrast_limits(self.contrast_limits)
        if self.contrast_limits is not None:
            keep("contrast_limits", tuple(self.contrast_limits))


# ------------------------------------------------------------------------------------------- propagation

#: What a propagation step may prompt the decoder with, from the object on the previous slice.
PROPAGATION_PROMPT_KINDS = ("box", "points", "mask")


@dataclass(frozen=True)
class PropagationOptions:
    """How each slice is prompted from the previous one, and when an object stops.

    Attributes
    ----------
    prompt
        Prompt kinds taken from the previous slice's mask, any of ``"box"`` (its bounding box grown
        by ``box_margin``), ``"points"`` (``n_points`` interior points) and ``"mask"`` (the previous
        prediction's low-resolution logits; a seed's binary mask on the first step).
    n_points
        Interior points sampled when ``"points"`` is used, >= 1.
    box_margin
        Growth of the box on each side, as a fraction of its extent along that axis (at least 1 pixel
        when > 0), so that a growing object is not cut by its previous box.
    multimask
        Decode 3 candidates and keep the best-scoring one (else a single mask).
    iou_threshold
        Stop when the predicted IoU falls below this, in [0, 1].
    min_area
        Stop when the mask (the part not owned by other objects) has fewer pixels than this.
    max_area_change
        Stop when the area grows or shrinks by more than this factor from one slice to the next, >= 1.
    max_centroid_shift
        Stop when the centroid moves by more than this fraction of the previous mask's equivalent
        diameter (``2 * sqrt(area / pi)``), > 0.
    min_contrast
        Stop when the object's contrast on the image (mean intensity inside the mask minus the
        slice's 5th percentile) falls below this fraction of the highest contrast it had on the slices
        so far, in [0, 1]; 0 turns the rule off. Out-of-focus light makes objects visible some slices
        beyond their end (the decoder keeps finding them there); 0.5 cuts them about where their signal
        halves. Needs the image (not only its embeddings).
    min_intensity
        Drop the pixels of each propagated mask whose intensity lies less than this fraction of the
        way from the object's surroundings to the object itself, both measured on its seed slice
        (medians inside the seed mask and in a ring around it; see
        :class:`~napari_sam.engine.volume.steps.SeedIntensity`); holes this opens inside the mask are
        filled back. Bright and dark objects are both handled; an
        object not clearly brighter or darker than its ring is left untrimmed. In [0, 1); 0 turns it
        off. Out-of-focus light makes the slices near an object's end show a blurred, dimmer and
        larger copy of it, and the decoder follows that halo; 0.5 keeps what is at least
        half-way bright. Needs the image.
    clip_to_box
        With ``"box"`` prompts: drop the parts of a prediction outside its box (the decoder often
        spills past small or faint objects); growth and drift from slice to slice are then at most
        ``box_margin`` per side, so it suits objects that shrink away from their seed (off by default).
    connected
        Keep only the parts of a prediction (8-connected regions) that overlap the object on the
        previous slice: pieces that leaked onto other objects are dropped before the checks.
    """

    prompt: tuple[str, ...] = ("box", "mask")
    n_points: int = 1
    box_margin: float = 0.0
    multimask: bool = False
    iou_threshold: float = 0.5
    min_area: int = 4
    max_area_change: float = 3.0
    max_centroid_shift: float = 0.5
    min_contrast: float = 0.5
    min_intensity: float = 0.5
    clip_to_box: bool = False
    connected: bool = True

    def __post_init__(self) -> None:
        kinds = (self.prompt,) if isinstance(self.prompt, str) else tuple(self.prompt)
        unknown = [k for k in kinds if k not in PROPAGATION_PROMPT_KINDS]
        if not kinds or unknown or len(set(kinds)) != len(kinds):
            raise ValueError(
                f"prompt must be a non-empty selection of {PROPAGATION_PROMPT_KINDS} without repeats, got "
                f"{self.prompt if isinstance(self.prompt, str) else kinds!r}"
            )
        object.__setattr__(self, "prompt", kinds)
        _whole_option(self, "n_points", 1)
        _whole_option(self, "min_area", 1)
        _number_option(self, "box_margin", 0.0, math.inf)
        _number_option(self, "iou_threshold", 0.0, 1.0)
        _number_option(self, "max_area_change", 1.0, math.inf)
        _number_option(self, "max_centroid_shift", 0.0, math.inf, open_low=True)
        _number_option(self, "min_contrast", 0.0, 1.0)
        _number_option(self, "min_intensity", 0.0, 1.0, open_high=True)
        for name in ("multimask", "clip_to_box", "connected"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")


def _whole_option(opts: Any, name: str, low: int) -> None:
    """Store ``opts.name`` as an int, or raise ValueError when it is not an integer ``>= low``."""
    value = getattr(opts, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    object.__setattr__(opts, name, int(value))


def _number_option(
    opts: Any,
    name: str,
    low: float,
    high: float,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    """Store ``opts.name`` as a float, or raise ValueError when it is not a number (NaN is not) from
    ``low`` to ``high``, each end included unless ``open_low`` / ``open_high`` (an infinite ``high``
    admits infinity)."""
    value = getattr(opts, name)
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    if ok:
        value = float(value)
        ok = (
            not math.isnan(value)
            and (value > low if open_low else value >= low)
            and (value < high if open_high else value <= high)
        )
    if not ok:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        bounds = f"{left}{low}, {high}{right}"
        raise ValueError(f"{name} must be a number in {bounds}, got {getattr(opts, name)!r}")
    object.__setattr__(opts, name, value)
