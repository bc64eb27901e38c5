"""Microscopy images (any dtype, gray or multi-channel) → Segment Anything model input, and back.

Steps: pick channels → normalise intensities to [0, 1] (percentiles or given contrast limits) → RGB on
a 0–255 scale → resize the longest side to the model's ``image_size`` (Pillow bilinear, antialiased)
→ subtract the pixel mean, divide by the pixel std → zero-pad bottom/right to a square.

A uint8 RGB image with ``normalize=None`` (or the default ``"auto"``) goes through exactly the
official ``segment_anything`` path (Pillow resize of the uint8 image).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

from .types import Limits, PreprocessParams

NormalizeMode = Literal["auto", "percentile", "none"] | None

#: Percentiles used by default for intensity normalisation (low, high).
DEFAULT_PERCENTILES = (1.0, 99.8)
#: Above this many pixels, percentiles are estimated on a regular subsample.
_PERCENTILE_SAMPLE = 1 << 22
#: Magnitude of the logits a binary mask prompt is turned into.
MASK_PROMPT_LOGIT = 10.0


def _check_dtype(image: np.ndarray) -> None:
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise ValueError(
            f"image has unsupported dtype {image.dtype}; expected an integer or floating-point "
            "array (uint8, uint16, int32, float32 …)"
        )


#: A last axis at most this long is read as channels without being told (gray, RGB, RGBA …).
AUTO_CHANNELS = 4
#: With ``channel=`` given, a last axis up to this long (and shorter than the axis before it) is read
#: as channels too; longer ones need ``channel_axis=``.
MAX_INFERRED_CHANNELS = 16


def may_hold_channels(shape: Sequence[int]) -> bool:
    """Whether the last axis of a 3D / 4D ``shape`` may hold more than :data:`AUTO_CHANNELS` channels.

    True for ``AUTO_CHANNELS < C <= MAX_INFERRED_CHANNELS`` with ``C`` shorter than the axis before
    it: ``(Y, X, 5)`` may be an image with five channels or a stack of ``Y`` narrow slices, while
    ``(5, Y, X)`` and ``(3, 16, 16)`` are stacks.
    """
    if len(shape) not in (3, 4):
        return False
    last = int(shape[-1])
    return AUTO_CHANNELS < last <= MAX_INFERRED_CHANNELS and last < int(shape[-2])


def as_channels_last_2d(image: Any, *, channel_axis: int | None = None) -> np.ndarray:
    """Validate a 2D image and return it as ``(H, W, C)`` (``C = 1`` for gray).

    Parameters
    ----------
    image
        ``(H, W)`` or ``(H, W, C)`` array-like (numpy, dask, zarr). A last axis of at most 4, or of
        at most 16 when shorter than ``W`` (see :func:`may_hold_channels`), is taken as channels.
    channel_axis
        Axis holding channels when it is not the last one.

    Raises
    ------
    ValueError
        Wrong dimensionality, empty image or unsupported dtype.
    """
    arr = np.asarray(image)
    _check_dtype(arr)
    if channel_axis is not None:
        if arr.ndim != 3:
            raise ValueError(
                f"channel_axis={channel_axis} given but the image has {arr.ndim} dimensions "
                f"(shape {arr.shape}); expected (Y, X, C) with a channel axis"
            )
        arr = np.moveaxis(arr, channel_axis, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    elif arr.ndim != 3 or (
        channel_axis is None and arr.shape[-1] > AUTO_CHANNELS and not may_hold_channels(arr.shape)
    ):
        raise ValueError(
            f"image must be 2D: (Y, X) or (Y, X, C) with channels last, got shape {arr.shape}"
            + ("; for a 3D stack (Z, Y, X) embed one slice at a time" if arr.ndim == 3 else "")
            + ("; pass channel_axis= if channels are not last" if arr.ndim == 3 else "")
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image is empty: shape {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"image must be at least 2×2 pixels, got shape {arr.shape[:2]}")
    return arr


def select_channels(
    image: np.ndarray, channel: int | Sequence[int] | None
) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Pick channels of an ``(H, W, C)`` image: returns ``(H, W, 1)`` (gray) or ``(H, W, 3)``.

    ``channel=None`` accepts gray (C=1), RGB (C=3) and uint8 RGBA (alpha dropped); other channel counts
    need ``channel``: an index (gray from that channel) or up to three indices mapped to R, G, B.
    """
    n = image.shape[-1]
    if channel is None:
        if n in (1, 3):
            return image, None
        if n == 4 and image.dtype == np.uint8:
            return image[..., :3], None
        raise ValueError(
            f"image has {n} channels; pass channel=<index> to segment one channel, or "
            f"channel=(i, j[, k]) to map up to three channels to red, green, blue"
        )
    picks = (channel,) if isinstance(channel, (int, np.integer)) else tuple(channel)
    if not 1 <= len(picks) <= 3:
        raise ValueError(f"channel must name 1 to 3 channels, got {channel!r}")
    bad = [c for c in picks if not isinstance(c, (int, np.integer)) or not -n <= c < n]
    if bad:
        raise ValueError(f"channel {bad} out of range for an image with {n} channel(s)")
    picks = tuple(int(c) % n for c in picks)
    if len(picks) == 1:
        return image[..., picks[0] : picks[0] + 1], picks
    rgb = np.zeros((*image.shape[:2], 3), dtype=image.dtype)
    for i, c in enumerate(picks):
        rgb[..., i] = image[..., c]
    return rgb, picks


def _finite_sample(channel: np.ndarray) -> np.ndarray:
    step = max(1, math.isqrt(channel.size // _PERCENTILE_SAMPLE))
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
class _Window:
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


def _split_windows(windows: Sequence[_Window]) -> tuple[Limits, Limits | None]:
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
) -> _Window:
    """Intensity limits given in the image's units → a :class:`_Window` anchored for ``channel``.

    ``low + residuals[0]`` and ``high + residuals[1]`` are the exact limits (see
    :class:`PreprocessParams`); they are taken relative to ``channel``'s own anchor (its minimum,
    for 64-bit integers) before any rounding, so a tile is normalised as the whole image was.
    """
    anchor = _anchor(channel)
    exact_low = Fraction(float(low)) + Fraction(float(residuals[0]))
    exact_high = Fraction(float(high)) + Fraction(float(residuals[1]))
    if anchor == 0 and exact_low == float(low) and exact_high == float(high):
        return _Window(0, float(low), float(high))
    return _Window(anchor, float(exact_low - anchor), float(exact_high - anchor), _top(channel.dtype))


def _percentile_window(channel: np.ndarray, lo_p: float, hi_p: float) -> _Window:
    """``(H, W)`` channel → its percentile window (NaN / inf ignored; the full range if they meet).

    Raises
    ------
    ValueError
        The channel has no finite value.
    """
    sample = _finite_sample(channel)
    if sample.size == 0:
        raise ValueError("image has no finite values (all NaN or inf)")
    anchor = _anchor(channel)
    values = _offsets(sample, anchor) if _is_wide_int(sample.dtype) else sample
    with np.errstate(over="ignore", invalid="ignore"):
        low, high = (float(v) for v in np.percentile(values, [lo_p, hi_p]))
    if not low < high:  # most pixels share one value: keep the few that differ
        low, high = _finite_range(channel, anchor)
    return _Window(anchor, low, high, _top(channel.dtype))


def _finite_range(channel: np.ndarray, anchor: int) -> tuple[float, float]:
    """``(min, max)`` of the finite values of ``channel`` (all of them, not a sample), minus ``anchor``."""
    values = channel[np.isfinite(channel)] if np.issubdtype(channel.dtype, np.floating) else channel
    low, high = _offsets(np.array([values.min(), values.max()], dtype=channel.dtype), anchor)
    return float(low), float(high)


def _percentile_windows(image: np.ndarray, percentiles: tuple[float, float]) -> tuple[_Window, ...]:
    lo_p, hi_p = (float(p) for p in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
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
    return _split_windows(_percentile_windows(image, percentiles))[0]


def exact_percentile_limits(
    image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[Limits, Limits | None]:
    """:func:`percentile_limits` and what float64 rounding left out of them (see :class:`PreprocessParams`).

    Normalising any part of ``image`` with both (``_rescale``) gives the values the whole image
    gets from :func:`normalize_intensity`, for 64-bit integers beyond ``2**53`` too.
    """
    return _split_windows(_percentile_windows(image, percentiles))


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


def _fits_float32(dtype: np.dtype, window: _Window) -> bool:
    if window.anchor != 0 or dtype not in _FLOAT32_EXACT:
        return False
    low, high = window.low, window.high
    if not (abs(low) <= _F32_MAX and abs(high) <= _F32_MAX):
        return False
    span = high - low
    return span <= 0 or (span >= _F32_TINY and 255.0 / span < _F32_MAX)


def _scale_channel(channel: np.ndarray, window: _Window, out: np.ndarray) -> None:
    """Write ``channel`` mapped through ``window`` to 0–255 (clipped) into the float32 ``out``."""
    if _fits_float32(channel.dtype, window):
        scaled = _scale_float32(channel, window.low, window.high)
    else:
        wide = _is_wide_int(channel.dtype)  # then the offsets are a new array, scaled in place
        scaled = _scale_float64(_offsets(channel, window.anchor), window.low, window.high, in_place=wide)
    np.clip(scaled, 0.0, 255.0, out=out, casting="unsafe")


def _apply_windows(image: np.ndarray, windows: Sequence[_Window]) -> np.ndarray:
    out = np.empty(image.shape, dtype=np.float32)
    for c, window in enumerate(windows):
        _scale_channel(image[..., c], window, out[..., c])
    np.nan_to_num(out, copy=False, nan=0.0)
    return out


def _rescale(
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
        :class:`PreprocessParams`), or None.

    Returns
    -------
    numpy.ndarray
        ``(H, W, C)`` float32 in ``[0, 255]``.
    """
    rest = residuals if residuals is not None else [(0.0, 0.0)] * len(limits)
    windows = [_window_from_limits(image[..., c], lo, hi, rest[c]) for c, (lo, hi) in enumerate(limits)]
    return _apply_windows(image, windows)


def has_no_contrast(limits: Sequence[tuple[float, float]] | None) -> bool:
    """Whether percentile ``limits`` (as recorded) say every channel held a single value."""
    return bool(limits) and all(lo == hi for lo, hi in limits)  # type: ignore[union-attr]


def warn_no_contrast(image: np.ndarray, where: str | None = None) -> None:
    """Emit one :class:`~napari_sam.errors.NoContrastWarning` for a flat ``(H, W, C)`` image."""
    from ..errors import NoContrastWarning

    finite = _finite_sample(image[..., 0])
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
        As :func:`normalize_intensity`, and the limits' residuals (see :class:`PreprocessParams`;
        None unless percentile limits of a 64-bit integer image are not float64 values).
    """
    if contrast_limits is not None:
        lo, hi = (float(v) for v in contrast_limits)
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
            raise ValueError(
                f"contrast_limits must be finite (low, high) with low < high, got {contrast_limits}"
            )
        if image.size and not np.isfinite(_finite_sample(image[..., 0])).any():
            raise ValueError("image has no finite values (all NaN or inf)")
        limits = tuple((lo, hi) for _ in range(image.shape[-1]))
        return _rescale(image, limits), "contrast_limits", None, limits, None
    mode = "none" if normalize is None else normalize
    if mode not in ("auto", "percentile", "none"):
        raise ValueError(f"normalize must be 'auto', 'percentile' or None, got {normalize!r}")
    if mode == "auto":
        mode = "none" if image.dtype == np.uint8 and image.shape[-1] == 3 else "percentile"
    if mode == "percentile":
        windows = _percentile_windows(image, percentiles)
        limits, residuals = _split_windows(windows)
        if has_no_contrast(limits):
            warn_no_contrast(image, where)
        return _apply_windows(image, windows), "percentile", tuple(percentiles), limits, residuals
    if image.dtype == np.uint8:
        return image, "none", None, None, None
    finite = _finite_sample(image)
    if finite.size == 0:
        raise ValueError("image has no finite values (all NaN or inf)")
    if finite.min() < 0 or finite.max() > 255:
        raise ValueError(
            f"normalize=None expects intensities in 0–255 (uint8-like), but the image spans "
            f"{finite.min()}…{finite.max()}; use normalize='percentile' or contrast_limits="
        )
    out = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return out, "none", None, None, None


def preprocess_shape(
    height: int, width: int, long_side: int, max_upscale: float | None = None
) -> tuple[int, int]:
    """``(rows, cols)`` after resizing so the longer side equals ``long_side`` (official rounding).

    With ``max_upscale``, a small image is enlarged by at most that factor (its resized longer side
    is then shorter than ``long_side``; the rest of the canvas is padding). Images larger than the
    canvas are always shrunk to fit.
    """
    scale = long_side / max(height, width)
    if max_upscale is not None and scale > max_upscale:
        scale = float(max_upscale)
    # at least one pixel: a very elongated image (e.g. 3 × 2000 on a 256 canvas) would round to 0 rows
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear, antialiased (Pillow) resize of ``(H, W, C)`` to ``size = (rows, cols)``.

    uint8 RGB is resized as one Pillow RGB image (bit-identical to the official transform); float
    channels are resized one by one in Pillow's 32-bit float mode.
    """
    from PIL import Image

    rows, cols = size
    if image.shape[:2] == (rows, cols):
        return image
    if image.dtype == np.uint8 and image.shape[-1] == 3:
        return np.asarray(Image.fromarray(image).resize((cols, rows), Image.Resampling.BILINEAR))
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                (cols, rows), Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[-1])
    ]
    return np.stack(channels, axis=-1)


def to_model_input(
    resized: np.ndarray,
    *,
    image_size: int,
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(h, w, 1|3)`` resized image → normalised, zero-padded ``(1, 3, image_size, image_size)`` float32."""
    if not resized.flags.writeable or not resized.flags.c_contiguous:
        resized = np.array(resized, order="C")
    x = torch.from_numpy(resized).to(device)
    x = x.permute(2, 0, 1)[None].to(torch.float32)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = (x - pixel_mean.to(x.device)) / pixel_std.to(x.device)
    h, w = x.shape[-2:]
    return F.pad(x, (0, image_size - w, 0, image_size - h))


def prepare_image(
    image: Any,
    *,
    image_size: int,
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    device: torch.device | str = "cpu",
    max_upscale: float | None = None,
) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int], PreprocessParams]:
    """Any 2D image → model input.

    ``max_upscale`` limits how much a small image is enlarged (see :func:`preprocess_shape`); the
    models carry their own value as ``Sam.max_upscale``.

    Returns
    -------
    model_input
        ``(1, 3, image_size, image_size)`` float32.
    input_size
        ``(rows, cols)`` of the resized image inside the padded input.
    original_size
        ``(rows, cols)`` of the given image.
    params
        What was done, for the embedding record.
    """
    arr = as_channels_last_2d(image, channel_axis=channel_axis)
    arr, picks = select_channels(arr, channel)
    scaled, mode, used_percentiles, limits, residuals = normalize_exact(
        arr, normalize=normalize, percentiles=percentiles, contrast_limits=contrast_limits
    )
    original_size = (int(arr.shape[0]), int(arr.shape[1]))
    input_size = preprocess_shape(*original_size, image_size, max_upscale)
    resized = resize_image(scaled, input_size)
    model_input = to_model_input(
        resized, image_size=image_size, pixel_mean=pixel_mean, pixel_std=pixel_std, device=device
    )
    params = PreprocessParams(
        normalize=mode,
        percentiles=used_percentiles,
        contrast_limits=limits,
        channel=picks,
        limit_residuals=residuals,
    )
    return model_input, input_size, original_size, params


def upscale_logits(
    low_res: torch.Tensor,
    *,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    image_size: int,
) -> torch.Tensor:
    """Low-resolution mask logits ``(N, K, 4h, 4w)`` → ``(N, K, H, W)`` at the original image size.

    Same arithmetic as the official post-processing (bilinear to the padded input, crop the padding,
    bilinear to the original size), but the second resize is skipped when it is the identity.

    Every mask is resized as a one-channel image: on the CPU, torch resizes a multi-channel image
    through a channels-last copy and back, which costs several times the interpolation itself.
    """
    n, k, h, w = low_res.shape
    x = F.interpolate(
        low_res.reshape(n * k, 1, h, w), (image_size, image_size), mode="bilinear", align_corners=False
    )
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(input_size) != tuple(original_size):
        x = F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)
    return x.reshape(n, k, *x.shape[-2:])


def mask_to_prompt_logits(
    mask: np.ndarray,
    *,
    image_size: int,
    mask_input_size: tuple[int, int],
    input_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """A binary mask at the original image size ``(H, W)`` → ``(1, 1, 4h, 4w)`` mask-prompt logits.

    The mask is resized like the image (to ``input_size``, the embedding's; default: the longer side
    to ``image_size``), padded, averaged down to the prompt resolution, and mapped to logits
    ``±MASK_PROMPT_LOGIT``.
    """
    mask = np.asarray(mask)
    rows, cols = input_size or preprocess_shape(mask.shape[0], mask.shape[1], image_size)
    resized = resize_image(mask.astype(np.float32)[..., None], (rows, cols))[..., 0]
    canvas = np.zeros((image_size, image_size), dtype=np.float32)
    canvas[:rows, :cols] = resized
    t = torch.from_numpy(canvas)[None, None]
    small = F.adaptive_avg_pool2d(t, mask_input_size)
    return (small * 2.0 - 1.0) * MASK_PROMPT_LOGIT
