"""Large images in overlapping tiles: the tile grid, tiled embeddings, and routing prompts to tiles.

A slice larger than the tiling threshold is cut into square tiles of ``tile_size`` pixels that overlap
by ``2 * halo`` pixels (the last tile of a row / column is shifted back so every tile has the same
size). Each tile is embedded like a small image. Every pixel belongs to the *core* of exactly one tile
(the cores split each overlap in the middle); cores are used to pick tiles, not to cut masks.

An object (a box, or the bounding box of its foreground points) is decoded on the tile whose window
contains it with the widest margin. An object that no tile contains (it spans a tile boundary by more
than the halo) is decoded on a window centred on it, embedded on demand when the image is at hand
(:attr:`TiledEmbeddings.encode_window`), otherwise on the tile that overlaps it most, with its
prompts clipped to that tile. Masks are pasted back into image coordinates.

Choose ``tile_size`` close to the model's input size (1024 for nano and the official models, the
default): a smaller tile is enlarged to the model input, so objects look bigger than the model was
trained on and masks get worse (nano on 400-pixel tiles, 2.6× enlarged: box IoU ≈ 0.5 instead of 0.97).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..model import Sam
    from .embeddings import Embeddings
    from .predict import Prediction

__all__ = [
    "DEFAULT_HALO",
    "DEFAULT_TILE_SIZE",
    "DEFAULT_TILE_THRESHOLD",
    "LocalPrompt",
    "TileSpec",
    "TiledEmbeddings",
    "Window",
    "predict_tiled",
    "resolve_tiling",
    "tile_windows",
]

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


def resolve_tiling(
    tile: Any, image_shape: Sequence[int], threshold: int = DEFAULT_TILE_THRESHOLD
) -> TileSpec | None:
    """The tiling to use for a ``(rows, cols)`` slice, or None.

    Parameters
    ----------
    tile
        None: tile with the default :class:`TileSpec` when the longest side exceeds ``threshold``.
        False: never tile. True: the default spec. An int ``tile_size``, a ``(tile_size, halo)`` pair
        or a :class:`TileSpec`: tile when the longest side exceeds ``tile_size``.
    threshold
        Longest side above which ``tile=None`` tiles.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)) or threshold < 16:
        raise ValueError(f"tile_threshold must be an integer >= 16, got {threshold!r}")
    longest = max(int(image_shape[0]), int(image_shape[1]))
    if tile is False:
        return None
    if tile is None:
        return TileSpec() if longest > threshold else None
    if tile is True:
        spec = TileSpec()
    elif isinstance(tile, TileSpec):
        spec = tile
    elif isinstance(tile, (int, np.integer)):
        size = int(tile)
        spec = TileSpec(size, min(DEFAULT_HALO, max(0, (size - 1) // 8)))
    elif isinstance(tile, Sequence) and len(tile) == 2:
        spec = TileSpec(int(tile[0]), int(tile[1]))
    else:
        raise ValueError(
            "tile must be None, False, True, a tile size, a (tile_size, halo) pair or a TileSpec; "
            f"got {tile!r}"
        )
    return spec if longest > spec.tile_size else None


def _axis_tiles(length: int, size: int, halo: int) -> list[tuple[int, int, int, int]]:
    """``(start, stop, core_start, core_stop)`` along one axis."""
    if length <= size:
        return [(0, length, 0, length)]
    stride = size - 2 * halo
    starts = list(range(0, length - size, stride))
    if not starts or starts[-1] != length - size:
        starts.append(length - size)
    bounds = [0]
    for left, right in itertools.pairwise(starts):
        bounds.append((right + left + size) // 2)  # middle of the overlap
    bounds.append(length)
    return [(s, s + size, bounds[i], bounds[i + 1]) for i, s in enumerate(starts)]


def tile_windows(image_shape: Sequence[int], spec: TileSpec) -> tuple[Window, ...]:
    """The tiles of a ``(rows, cols)`` image, row-major."""
    rows = _axis_tiles(int(image_shape[0]), spec.tile_size, spec.halo)
    cols = _axis_tiles(int(image_shape[1]), spec.tile_size, spec.halo)
    return tuple(
        Window(bounds=(r0, c0, r1, c1), core=(cr0, cc0, cr1, cc1))
        for r0, r1, cr0, cr1 in rows
        for c0, c1, cc0, cc1 in cols
    )


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
        One :class:`~napari_sam.engine.embeddings.Embeddings` per window (``original_size`` is the
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


@dataclass
class LocalPrompt:
    """One object's prompts in the coordinates of the window it is decoded on."""

    bounds: tuple[int, int, int, int]
    embeddings: Embeddings
    box: np.ndarray | None  # (4,)
    points: np.ndarray | None  # (P, 2)
    labels: np.ndarray | None  # (P,)

    @property
    def key(self) -> tuple[Any, ...]:
        """Objects with equal keys can be decoded in one batch."""
        return (self.bounds, self.box is not None, 0 if self.points is None else len(self.points))


def object_bbox(box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None) -> np.ndarray:
    """Half-open ``(min_row, min_col, max_row, max_col)`` of an object's box, else of its positive points."""
    if box is not None:
        return np.asarray(box, dtype=np.float64)
    assert points is not None
    fg = points if labels is None or not (labels == 1).any() else points[labels == 1]
    lo = np.floor(fg.min(axis=0))
    hi = np.floor(fg.max(axis=0)) + 1
    return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float64)


def localize(
    tiled: TiledEmbeddings, box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None
) -> LocalPrompt | None:
    """Route one object (prompts in image coordinates) to a window; None when nothing of it is left."""
    bounds, emb, _exact = tiled.embeddings_for(object_bbox(box, points, labels))
    r0, c0, r1, c1 = bounds
    offset = np.array([r0, c0], dtype=np.float64)
    local_box = None
    if box is not None:
        b = np.asarray(box, dtype=np.float64) - np.tile(offset, 2)
        b[[0, 2]] = np.clip(b[[0, 2]], 0, r1 - r0)
        b[[1, 3]] = np.clip(b[[1, 3]], 0, c1 - c0)
        if b[2] <= b[0] or b[3] <= b[1]:
            return None
        local_box = b
    local_pts = local_labels = None
    if points is not None:
        p = np.asarray(points, dtype=np.float64) - offset
        inside = (
            (p[:, 0] >= -0.5) & (p[:, 0] <= r1 - r0 - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= c1 - c0 - 0.5)
        )
        lab = np.ones(len(p), dtype=np.int64) if labels is None else np.asarray(labels)
        if inside.any() and (local_box is not None or (lab[inside] == 1).any()):
            local_pts, local_labels = p[inside], lab[inside]
        elif local_box is None:
            return None
    return LocalPrompt(bounds, emb, local_box, local_pts, local_labels)


def predict_tiled(
    tiled: TiledEmbeddings,
    *,
    points: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    multimask: bool = True,
    best_only: bool = False,
    return_logits: bool = False,
    model: Sam | None = None,
) -> Prediction:
    """:func:`napari_sam.predict` on :class:`TiledEmbeddings` (same arguments and result).

    Each object is decoded on its own window (see the module docstring); masks are pasted into
    image-sized arrays (False / :data:`OUTSIDE_LOGIT` outside that window). ``low_res_logits`` refer
    to the window an object was decoded on; ``mask_input`` must be a binary mask of the image's shape.
    """
    from .predict import Prediction, _object_count, predict, validate_boxes, validate_points

    if points is None and point_labels is not None:
        raise ValueError("point_labels given without points")
    if points is None and box is None:
        raise ValueError(
            "predict on tiled embeddings needs points or a box (mask_input alone cannot be routed)"
        )
    shape = tuple(tiled.original_size)
    pts = labels = bxs = None
    if points is not None:
        pts, labels = validate_points(points, point_labels, shape)
    if box is not None:
        bxs = validate_boxes(box, shape)
    n = _object_count(pts, bxs) or 1
    masks_in = None
    if mask_input is not None:
        masks_in = np.asarray(mask_input)
        if masks_in.shape[-2:] != shape or not (
            masks_in.dtype == bool or np.issubdtype(masks_in.dtype, np.integer)
        ):
            raise ValueError(
                f"mask_input on tiled embeddings must be a binary mask of the image's shape {shape}; "
                f"got shape {masks_in.shape}, dtype {masks_in.dtype}"
            )
        masks_in = masks_in.reshape(-1, *shape)
        if masks_in.shape[0] not in (1, n):
            raise ValueError(
                f"mask_input holds {masks_in.shape[0]} masks for {n} objects; give one or one per object"
            )

    k = 3 if multimask and not best_only else 1
    fill = OUTSIDE_LOGIT if return_logits else False
    out_masks = np.full((n, k, *shape), fill, dtype=np.float32 if return_logits else bool)
    out_iou = np.zeros((n, k), dtype=np.float32)
    low_res: list[np.ndarray | None] = [None] * n
    for i in range(n):
        obj_pts = None if pts is None else pts[min(i, pts.shape[0] - 1)]
        obj_labels = None if labels is None else labels[min(i, labels.shape[0] - 1)]
        obj_box = None if bxs is None else bxs[i]
        local = localize(tiled, obj_box, obj_pts, obj_labels)
        if local is None:
            raise ValueError(f"object {i} has no prompt inside the image")
        (r0, c0, r1, c1), kwargs = local.bounds, {}
        if local.box is not None:
            kwargs["box"] = local.box
        if local.points is not None:
            kwargs["points"], kwargs["point_labels"] = local.points, local.labels
        if masks_in is not None:
            kwargs["mask_input"] = masks_in[min(i, masks_in.shape[0] - 1), r0:r1, c0:c1].astype(bool)
        pred = predict(
            local.embeddings,
            multimask=multimask,
            best_only=best_only,
            return_logits=return_logits,
            model=model or tiled.model,
            **kwargs,
        )
        out_masks[i, :, r0:r1, c0:c1] = pred.masks[0]
        out_iou[i] = pred.iou_scores[0]
        low_res[i] = pred.low_res_logits[0]
    return Prediction(masks=out_masks, iou_scores=out_iou, low_res_logits=np.stack(low_res))  # type: ignore[arg-type]
