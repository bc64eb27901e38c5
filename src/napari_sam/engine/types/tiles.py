"""Tiling values: how a large image is cut (:class:`TileSpec`), one tile (:class:`Window`), and the
embeddings of a tiled image (:class:`TiledEmbeddings`, which picks the tile an object is decoded on).

Windows are half-open ``(min_row, min_col, max_row, max_col)`` in image pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..lru import LRU
from .values import Embeddings

if TYPE_CHECKING:
    from ...model import Sam

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

    @property
    def object_size(self) -> float | None:
        """The objects' diameter (image px) the tiles' scale was chosen from; None: the fixed rule."""
        return self.tiles[0].object_size if len(self.tiles) else None

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

    def centred_window(self, bbox: Sequence[float] | np.ndarray) -> tuple[int, int, int, int]:
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

    def route(self, bbox: Sequence[float] | np.ndarray) -> int | None:
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

    def embeddings_for(
        self, bbox: Sequence[float] | np.ndarray
    ) -> tuple[tuple[int, int, int, int], Embeddings, bool]:
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
