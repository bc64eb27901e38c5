"""Intensity windows: percentile limits exact for any dtype, and the mapping of intensities to 0–255.

A channel's *window* maps one intensity to 0 and another to 255 (values outside are clipped). Its limits
come from percentiles (:func:`percentile_limits`) or are given (contrast limits, a stack's percentiles, a
recorded slice's: :func:`rescale`). Every dtype keeps its contrast whatever its offset and scale: 64-bit
integers lose their minimum exactly (an integer *anchor*) before any rounding, and what float64 cannot hold
of their limits is kept as *residuals* (see :class:`~napari_sam.engine.types.PreprocessParams`), so a
tile or a slice normalised with recorded limits gets the values the whole image got.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .types import (
    DEFAULT_PERCENTILES,
    Limits,
    NormalizeMode,
    check_contrast_limits,
    check_normalize,
    check_percentiles,
)

__all__ = [
    "PERCENTILE_SAMPLE_PIXELS",
    "IntensityWindow",
    "apply_windows",
    "exact_percentile_limits",
    "finite_sample",
    "has_no_contrast",
    "normalize_exact",
    "normalize_intensity",
    "percentile_limits",
    "percentile_windows",
    "rescale",
    "split_windows",
    "warn_no_contrast",
]

#: Above this many pixels, percentiles are estimated on a regular subsample.
PERCENTILE_SAMPLE_PIXELS = 1 << 22


def finite_sample(channel: np.ndarray) -> np.ndarray:
    """The finite values of a regular subsample of ``channel`` (at most about
    :data:`PERCENTILE_SAMPLE_PIXELS` pixels: every ``k``-th row and column), flattened for floats."""
    step = max(1, math.isqrt(channel.size // PERCENTILE_SAMPLE_PIXELS))
    sample = channel[::step, ::step]
    if np.issubdtype(sample.dtype, np.floating):
        sample = sample[np.isfinite(sample)]
    return sample


#: dtypes float32 holds exactly: normalised in float32 (one multiply-add per pixel, half the memory).
_FLOAT32_EXACT = frozenset(
    np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.float16, np.float32)
)

#: float32's largest and smallest normal magnitudes, as Python floats (comparing a float64 with a
#: numpy float32 casts it to float32, which warns about overflow for values such as 1e300).
_F32_MAX = float(np.finfo(np.float32).max)
_F32_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class IntensityWindow:
    """One channel's intensity window: ``anchor + low`` maps to 0 and ``anchor + high`` to 255.

    ``anchor`` is an exact integer subtracted before any rounding (the channel's minimum for 64-bit
    integers, whose values float64 cannot all hold; 0 otherwise), so a large offset never eats the
    contrast: ``low`` and ``high`` are float64 offsets from it. ``top`` is the largest value of a
    64-bit integer dtype (None otherwise): the rounded :attr:`limits` never go above it.
    """

    anchor: int
    low: float
    high: float
    top: int | None = None

    @property
    def limits(self) -> tuple[float, float]:
        """``(low, high)`` in the image's own intensities, rounded to float64.

        Rounding never takes a limit past the dtype's largest value (``2**64 - 1`` rounds to
        ``2**64 - 2048`` for uint64, not to ``2**64``). ``low == high`` only for a flat channel: a
        window narrower than float64's step at the anchor's magnitude (64-bit integers) keeps the
        limits one step apart. The exact limits are ``limits + residuals``.
        """
        low, high = _plus(self.anchor, self.low), _plus(self.anchor, self.high)
        cap = _float_at_most(self.top) if self.top is not None else math.inf
        low, high = min(low, cap), min(high, cap)
        if self.low < self.high and not low < high:
            if high < cap:
                high = float(np.nextafter(low, math.inf))
            else:
                low = float(np.nextafter(high, -math.inf))
        return low, high

    @property
    def residuals(self) -> tuple[float, float]:
        """What :attr:`limits` leave out: ``limits + residuals`` are the exact limits (0 when exact)."""
        if self.top is None:  # not a 64-bit integer channel: the limits are float64 values
            return 0.0, 0.0
        rounded = self.limits
        exact = (Fraction(self.anchor) + Fraction(self.low), Fraction(self.anchor) + Fraction(self.high))
        return float(exact[0] - Fraction(rounded[0])), float(exact[1] - Fraction(rounded[1]))


def _plus(anchor: int, value: float) -> float:
    return float(value) if anchor == 0 else float(Fraction(anchor) + Fraction(value))


def _float_at_most(value: int) -> float:
    """The largest float64 not above the integer ``value``."""
    rounded = float(value)
    return rounded if Fraction(rounded) <= value else float(np.nextafter(rounded, -math.inf))


def _top(dtype: np.dtype) -> int | None:
    """The largest value of a 64-bit integer dtype; None for other dtypes."""
    return int(np.iinfo(dtype).max) if _is_wide_int(dtype) else None


def split_windows(windows: Sequence[IntensityWindow]) -> tuple[Limits, Limits | None]:
    """Per-channel windows → ``(limits, residuals)`` as recorded (see :class:`PreprocessParams`).

    Parameters
    ----------
    windows
        One window per channel.

    Returns
    -------
    limits, residuals
        The float64 limits in the image's intensities, and what rounding left out of them (None
        when every limit is exact).
    """
    limits = tuple(w.limits for w in windows)
    residuals = tuple(w.residuals for w in windows)
    exact = all(r == (0.0, 0.0) for r in residuals)
    return limits, None if exact else residuals


def _is_wide_int(dtype: np.dtype) -> bool:
    return bool(np.issubdtype(dtype, np.integer) and dtype.itemsize >= 8)


def _anchor(channel: np.ndarray) -> int:
    """The exact integer subtracted from ``channel`` first: its minimum for 64-bit integers, else 0."""
    return int(channel.min()) if _is_wide_int(channel.dtype) and channel.size else 0


def _offsets(values: np.ndarray, anchor: int) -> np.ndarray:
    """``values - anchor`` as float64, exact before the final rounding (``values >= anchor``).

    Only 64-bit integers have a non-zero anchor; they are subtracted in wrap-around uint64
    arithmetic: the true difference of two values at most ``2**64 - 1`` apart is what remains
    modulo ``2**64``.
    """
    if not _is_wide_int(values.dtype):
        return values.astype(np.float64, copy=False)
    # the same bits read as uint64 (no copy; byte order kept for big-endian files)
    wrapped = values.view(np.dtype(np.uint64).newbyteorder(values.dtype.byteorder))
    out = np.empty(values.shape, dtype=np.float64)
    np.subtract(wrapped, np.uint64(anchor % (1 << 64)), out=out, casting="unsafe")
    return out


def _window_from_limits(
    channel: np.ndarray, low: float, high: float, residuals: tuple[float, float] = (0.0, 0.0)
) -> IntensityWindow:
    """Intensity limits given in the image's units → a :class:`IntensityWindow` anchored for ``channel``.

    ``low + residuals[0]`` and ``high + residuals[1]`` are the exact limits (see
    :class:`PreprocessParams`); they are taken relative to ``channel``'s own anchor (its minimum,
    for 64-bit integers) before any rounding, so a tile is normalised as the whole image was.
    """
    anchor = _anchor(channel)
    exact_low = Fraction(float(low)) + Fraction(float(residuals[0]))
    exact_high = Fraction(float(high)) + Fraction(float(residuals[1]))
    if anchor == 0 and exact_low == float(low) and exact_high == float(high):
        return IntensityWindow(0, float(low), float(high))
    return IntensityWindow(anchor, float(exact_low - anchor), float(exact_high - anchor), _top(channel.dtype))


def _percentile_window(channel: np.ndarray, lo_p: float, hi_p: float) -> IntensityWindow:
    """``(H, W)`` channel → its percentile window (NaN / inf ignored; the full range if they meet).

    Raises
    ------
    ValueError
        The channel has no finite value.
    """
    sample = finite_sample(channel)
    if sample.size == 0:
        raise ValueError("image has no finite values (all NaN or inf)")
    anchor = _anchor(channel)
    values = _offsets(sample, anchor) if _is_wide_int(sample.dtype) else sample
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = (float(v) for v in np.percentile(values, [lo_p, hi_p]))
    if not low < high:  # most pixels share one value: keep the few that differ
        low, high = _finite_range(channel, anchor)
    return IntensityWindow(anchor, low, high, _top(channel.dtype))


def _finite_range(channel: np.ndarray, anchor: int) -> tuple[float, float]:
    """``(min, max)`` of the finite values of ``channel`` (all of them, not a sample), minus ``anchor``."""
    values = channel[np.isfinite(channel)] if np.issubdtype(channel.dtype, np.floating) else channel
    low, high = _offsets(np.array([values.min(), values.max()], dtype=channel.dtype), anchor)
    return float(low), float(high)


def percentile_windows(image: np.ndarray, percentiles: tuple[float, float]) -> tuple[IntensityWindow, ...]:
    """One :class:`IntensityWindow` per channel of an ``(H, W, C)`` image, from its percentiles."""
    lo_p, hi_p = check_percentiles(percentiles)
    return tuple(_percentile_window(image[..., c], lo_p, hi_p) for c in range(image.shape[-1]))


def percentile_limits(
    image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[tuple[float, float], ...]:
    """Per-channel ``(low, high)`` intensity percentiles of an ``(H, W, C)`` image (NaN/inf ignored).

    Computed after subtracting the channel's minimum exactly (64-bit integers) and in float64, so
    they keep their meaning for any offset or scale. When both percentiles fall on one value (a few
    pixels differ from a flat background), the channel's full finite range is returned instead;
    ``low == high`` only for a channel with a single value.

    Raises
    ------
    ValueError
        Bad percentiles, or a channel without any finite value.
    """
    return split_windows(percentile_windows(image, percentiles))[0]


def exact_percentile_limits(
    image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[Limits, Limits | None]:
    """:func:`percentile_limits` and what float64 rounding left out of them (see :class:`PreprocessParams`).

    Normalising any part of ``image`` with both (``rescale``) gives the values the whole image
    gets from :func:`normalize_intensity`, for 64-bit integers beyond ``2**53`` too.
    """
    return split_windows(percentile_windows(image, percentiles))


def _scale_float32(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Float32 arithmetic for channels float32 holds exactly and windows it can hold."""
    channel = channel.astype(np.float32)
    span = high - low
    if span > 0:
        return (channel - np.float32(low)) * np.float32(255.0 / span)
    return np.where(channel > low, 255.0, 0.0).astype(np.float32)


def _scale_float64(values: np.ndarray, low: float, high: float, *, in_place: bool = False) -> np.ndarray:
    """Float64 arithmetic, safe for any finite ``low``, ``high`` (spans up to ±1.8e308 and subnormals).

    ``(x - low) / span`` overflows only where ``|x - low| > span``: an infinity of the right sign,
    clipped to 0 or 255 afterwards. A span that itself overflows is computed on halved values.
    """
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        span = high - low
        if not math.isfinite(span):
            values, low, high = values * 0.5, low * 0.5, high * 0.5
            span = high - low
        if span > 0:
            out = np.subtract(values, low, out=values if in_place else None)
            out /= span
            out *= 255.0
            return out
        return np.where(values > low, 255.0, 0.0)


def _fits_float32(dtype: np.dtype, window: IntensityWindow) -> bool:
    if window.anchor != 0 or dtype not in _FLOAT32_EXACT:
        return False
    low, high = window.low, window.high
    if not (abs(low) <= _F32_MAX and abs(high) <= _F32_MAX):
        return False
    span = high - low
    return span <= 0 or (span >= _F32_TINY and 255.0 / span < _F32_MAX)


def _scale_channel(channel: np.ndarray, window: IntensityWindow, out: np.ndarray) -> None:
    """Write ``channel`` mapped through ``window`` to 0–255 (clipped) into the float32 ``out``."""
    if _fits_float32(channel.dtype, window):
        scaled = _scale_float32(channel, window.low, window.high)
    else:
        wide = _is_wide_int(channel.dtype)  # then the offsets are a new array, scaled in place
        scaled = _scale_float64(_offsets(channel, window.anchor), window.low, window.high, in_place=wide)
    np.clip(scaled, 0.0, 255.0, out=out, casting="unsafe")


def apply_windows(image: np.ndarray, windows: Sequence[IntensityWindow]) -> np.ndarray:
    """``(H, W, C)`` image → ``(H, W, C)`` float32 in ``[0, 255]``, one window per channel (NaN → 0)."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, window in enumerate(windows):
        _scale_channel(image[..., c], window, out[..., c])
    np.nan_to_num(out, copy=False, nan=0.0)
    return out


def rescale(
    image: np.ndarray,
    limits: Sequence[tuple[float, float]],
    residuals: Sequence[tuple[float, float]] | None = None,
) -> np.ndarray:
    """Map each channel's ``(low, high)`` to ``(0, 255)``, clip (+inf → 255), NaN → 0; float32 output.

    Parameters
    ----------
    image
        ``(H, W, C)`` array (a whole image, a tile or a window of one).
    limits
        Per channel, in the image's own intensities (given contrast limits, volume percentiles or a
        recorded slice's); the subtraction happens before any rounding to float32.
    residuals
        What float64 rounding left out of ``limits`` (64-bit integers beyond ``2**53``; see
        :class:`~napari_sam.engine.types.PreprocessParams`), or None.

    Returns
    -------
    numpy.ndarray
        ``(H, W, C)`` float32 in ``[0, 255]``.
    """
    rest = residuals if residuals is not None else [(0.0, 0.0)] * len(limits)
    windows = [_window_from_limits(image[..., c], lo, hi, rest[c]) for c, (lo, hi) in enumerate(limits)]
    return apply_windows(image, windows)


def has_no_contrast(limits: Sequence[tuple[float, float]] | None) -> bool:
    """Whether percentile ``limits`` (as recorded) say every channel held a single value."""
    return bool(limits) and all(lo == hi for lo, hi in limits)  # type: ignore[union-attr]


def warn_no_contrast(image: np.ndarray, where: str | None = None) -> None:
    """Emit one :class:`~napari_sam.errors.NoContrastWarning` for a flat ``(H, W, C)`` image."""
    from ..errors import NoContrastWarning

    finite = finite_sample(image[..., 0])
    value = finite.flat[0] if finite.size else float("nan")
    warnings.warn(
        f"{where or 'the image'} has no contrast: every pixel is {value} (NaN / inf aside), so "
        "nothing in it can be segmented; it is embedded as a blank image and gets no objects",
        NoContrastWarning,
        stacklevel=3,
    )


def normalize_intensity(
    image: np.ndarray,
    *,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    where: str | None = None,
) -> tuple[np.ndarray, str, tuple[float, float] | None, tuple[tuple[float, float], ...] | None]:
    """Bring an ``(H, W, C)`` image (C = 1 or 3) to the model's 0–255 intensity scale.

    Any dtype keeps its contrast whatever its offset and scale: 64-bit integers first lose their
    minimum exactly, and the mapping runs in float64 unless float32 holds the values and the
    window exactly (uint8, uint16, float32 … in their usual ranges).

    Parameters
    ----------
    image
        ``(H, W, C)`` array of any integer or floating dtype. NaN and ±inf pixels are left out of
        the percentiles; NaN and -inf pixels become 0 (black) and +inf pixels 255 (white: a
        saturated or overflowed pixel stays as bright as it can be), in every mode.
    normalize
        ``"auto"``: uint8 RGB as is (the official path), everything else by percentiles.
        ``"percentile"``: per-channel ``percentiles`` → 0 and 255 (see :func:`percentile_limits`).
        ``None`` / ``"none"``: values are already 0–255 intensities (uint8 stays uint8).
    percentiles
        ``(low, high)`` percentiles, ``0 <= low < high <= 100``.
    contrast_limits
        ``(low, high)`` intensities mapped to 0 and 255 for every channel (e.g. a napari layer's
        contrast limits); overrides ``normalize``.
    where
        How a :class:`~napari_sam.errors.NoContrastWarning` names the image (e.g. ``"slice 3"``).

    Returns
    -------
    image, mode, percentiles, limits
        ``(H, W, C)`` uint8 (official path) or float32 in [0, 255], and what was done. With
        percentiles, an image whose every channel holds a single value (a flat image) gives zeros,
        ``low == high`` limits and one :class:`~napari_sam.errors.NoContrastWarning`.
    """
    scaled, mode, used, limits, _ = normalize_exact(
        image, normalize=normalize, percentiles=percentiles, contrast_limits=contrast_limits, where=where
    )
    return scaled, mode, used, limits


def normalize_exact(
    image: np.ndarray,
    *,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    where: str | None = None,
) -> tuple[np.ndarray, str, tuple[float, float] | None, Limits | None, Limits | None]:
    """:func:`normalize_intensity`, and what float64 rounding left out of the limits.

    Parameters
    ----------
    image, normalize, percentiles, contrast_limits, where
        As for :func:`normalize_intensity`.

    Returns
    -------
    image, mode, percentiles, limits, residuals
        As :func:`normalize_intensity`, and the limits' residuals (see
        :class:`~napari_sam.engine.types.PreprocessParams`; None unless percentile limits of a
        64-bit integer image are not float64 values).
    """
    if contrast_limits is not None:
        lo, hi = check_contrast_limits(contrast_limits)  # type: ignore[misc]
        if image.size and not np.isfinite(finite_sample(image[..., 0])).any():
            raise ValueError("image has no finite values (all NaN or inf)")
        limits = tuple((lo, hi) for _ in range(image.shape[-1]))
        return rescale(image, limits), "contrast_limits", None, limits, None
    mode = check_normalize(normalize)
    if mode == "auto":
        mode = "none" if image.dtype == np.uint8 and image.shape[-1] == 3 else "percentile"
    if mode == "percentile":
        windows = percentile_windows(image, percentiles)
        limits, residuals = split_windows(windows)
        if has_no_contrast(limits):
            warn_no_contrast(image, where)
        low, high = percentiles  # as given (recorded with the embeddings)
        return apply_windows(image, windows), "percentile", (low, high), limits, residuals
    if image.dtype == np.uint8:
        return image, "none", None, None, None
    finite = finite_sample(image)
    if finite.size == 0:
        raise ValueError("image has no finite values (all NaN or inf)")
    if finite.min() < 0 or finite.max() > 255:
        raise ValueError(
            f"normalize=None expects intensities in 0–255 (uint8-like), but the image spans "
            f"{finite.min()}…{finite.max()}; use normalize='percentile' or contrast_limits="
        )
    out = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return out, "none", None, None, None
