"""How images are embedded: :class:`EmbedOptions` and the checks of its options, which the preprocessing
and the encoder also run on the values they are given directly (normalisation, percentiles, contrast
limits, precision, tiling).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from .checks import check_choice, check_field, check_int, check_number, keep, one_of
from .tiles import DEFAULT_HALO, DEFAULT_TILE_THRESHOLD, TileSpec

#: How intensities are brought to the model's scale (see :class:`~napari_sam.engine.preprocess.Preprocessor`).
NormalizeMode = Literal["auto", "percentile", "none"] | None
#: Where percentile limits of a stack come from: each slice, or the whole stack.
PercentileScope = Literal["slice", "volume"]
#: Encoder arithmetic (see :func:`napari_sam.engine.embed.encoder.resolve_precision`).
Precision = Literal["auto", "fp32", "bf16", "fp16"]

#: Smallest and largest ``object_size`` accepted (pixels across).
OBJECT_SIZE_RANGE = (1.0, 100_000.0)


def check_object_size(value: Any, name: str = "object_size") -> float | str | None:
    """``value`` as ``object_size=`` keeps it: None (the model's default), ``"auto"`` (estimate),
    ``"fixed"`` (the fixed rule, whatever the model) or a diameter in pixels (a float).

    Raises
    ------
    ValueError
        Anything else, naming ``name``.

    Examples
    --------
    >>> check_object_size(20), check_object_size("auto"), check_object_size(None)
    (20.0, 'auto', None)
    """
    if value is None or (isinstance(value, str) and value in ("auto", "fixed")):
        return value
    if isinstance(value, str):
        raise ValueError(
            f"{name} must be None, 'auto', 'fixed' or the objects' diameter in pixels, got {value!r}"
        )
    return check_number(value, name, *OBJECT_SIZE_RANGE)


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

#: The encoder arithmetics, by their canonical names.
PRECISIONS: tuple[str, ...] = get_args(Precision)

#: The dtypes an embedding cache may keep its features in.
CACHE_DTYPE_NAMES = ("float16", "float32")

#: The values ``percentile_scope=`` takes.
PERCENTILE_SCOPES: tuple[str, ...] = get_args(PercentileScope)


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
        raise ValueError(f"precision must be {one_of(PRECISIONS)}, got {precision!r}")
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
    return check_int(threshold, "tile_threshold", 16)


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
    object_size
        The objects' typical diameter in image pixels, ``"auto"`` (estimated from the image), or None
        (the model's fixed rule); see :mod:`napari_sam.engine.object_scale`.

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
    object_size: float | str | None = None

    def __post_init__(self) -> None:
        keep(self, "object_size", check_object_size(self.object_size))
        check_field(self, "batch_size", check_int)
        check_choice(self.cache_dtype, "cache_dtype", CACHE_DTYPE_NAMES)
        check_choice(self.percentile_scope, "percentile_scope", PERCENTILE_SCOPES)
        keep(self, "tile_threshold", check_tile_threshold(self.tile_threshold))
        keep(self, "tile", tiling_option(self.tile))
        keep(self, "precision", check_precision(self.precision))
        keep(self, "compile", bool(self.compile))
        keep(self, "normalize", check_normalize(self.normalize))
        check_percentiles(self.percentiles)
        keep(self, "percentiles", tuple(self.percentiles))
        check_contrast_limits(self.contrast_limits)
        if self.contrast_limits is not None:
            keep(self, "contrast_limits", tuple(self.contrast_limits))
