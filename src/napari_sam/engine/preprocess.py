"""Microscopy images (any dtype, gray or multi-channel) → Segment Anything model input, and back.

Steps: pick channels → normalise intensities to [0, 1] (percentiles or given contrast limits) → RGB on
a 0–255 scale → resize the longest side to the model's ``image_size`` (Pillow bilinear, antialiased)
→ subtract the pixel mean, divide by the pixel std → zero-pad bottom/right to a square.

A uint8 RGB image with ``normalize=None`` (or the default ``"auto"``) goes through exactly the
official ``segment_anything`` path (Pillow resize of the uint8 image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.nn import functional as F

NormalizeMode = Literal["auto", "percentile", "none"] | None

#: Percentiles used by default for intensity normalisation (low, high).
DEFAULT_PERCENTILES = (1.0, 99.8)
#: Above this many pixels, percentiles are estimated on a regular subsample.
_PERCENTILE_SAMPLE = 1 << 22
#: Magnitude of the logits a binary mask prompt is turned into.
MASK_PROMPT_LOGIT = 10.0


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
    """

    normalize: str
    percentiles: tuple[float, float] | None
    contrast_limits: tuple[tuple[float, float], ...] | None
    channel: tuple[int, ...] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_dtype(image: np.ndarray) -> None:
    if image.dtype == bool or not (
        np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)
    ):
        raise ValueError(
            f"image has unsupported dtype {image.dtype}; expected an integer or floating-point "
            "array (uint8, uint16, int32, float32 …)"
        )


def as_channels_last_2d(image: Any, *, channel_axis: int | None = None) -> np.ndarray:
    """Validate a 2D image and return it as ``(H, W, C)`` (``C = 1`` for gray).

    Parameters
    ----------
    image
        ``(H, W)`` or ``(H, W, C)`` array-like (numpy, dask, zarr); ``C <= 4`` is taken as channels.
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
    elif arr.ndim != 3 or (channel_axis is None and arr.shape[-1] > 4):
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


def percentile_limits(
    image: np.ndarray, percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> tuple[tuple[float, float], ...]:
    """Per-channel ``(low, high)`` intensity percentiles of an ``(H, W, C)`` image (NaN/inf ignored).

    Raises
    ------
    ValueError
        Bad percentiles, or a channel without any finite value.
    """
    lo_p, hi_p = (float(p) for p in percentiles)
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    limits = []
    for c in range(image.shape[-1]):
        sample = _finite_sample(image[..., c])
        if sample.size == 0:
            raise ValueError("image has no finite values (all NaN or inf)")
        lo, hi = np.percentile(sample, [lo_p, hi_p])
        limits.append((float(lo), float(hi)))
    return tuple(limits)


def _rescale(image: np.ndarray, limits: Sequence[tuple[float, float]]) -> np.ndarray:
    """Map each channel's ``(low, high)`` to ``(0, 255)``, clip, NaN → 0; float32 output."""
    out = np.empty(image.shape, dtype=np.float32)
    for c, (lo, hi) in enumerate(limits):
        channel = image[..., c].astype(np.float32)
        span = hi - lo
        if span > 0:
            channel = (channel - np.float32(lo)) * np.float32(255.0 / span)
        else:  # constant image: everything at or above the level is "on"
            channel = np.where(channel > lo, 255.0, 0.0).astype(np.float32)
        np.clip(channel, 0.0, 255.0, out=out[..., c])
    np.nan_to_num(out, copy=False, nan=0.0)
    return out


def normalize_intensity(
    image: np.ndarray,
    *,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
) -> tuple[np.ndarray, str, tuple[float, float] | None, tuple[tuple[float, float], ...] | None]:
    """Bring an ``(H, W, C)`` image (C = 1 or 3) to the model's 0–255 intensity scale.

    Parameters
    ----------
    normalize
        ``"auto"``: uint8 RGB as is (the official path), everything else by percentiles.
        ``"percentile"``: per-channel ``percentiles`` → 0 and 255. ``None`` / ``"none"``: values are
        already 0–255 intensities (uint8 stays uint8).
    contrast_limits
        ``(low, high)`` intensities mapped to 0 and 255 for every channel (e.g. a napari layer's
        contrast limits); overrides ``normalize``.

    Returns
    -------
    image, mode, percentiles, limits
        ``(H, W, C)`` uint8 (official path) or float32 in [0, 255], and what was done.
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
        return _rescale(image, limits), "contrast_limits", None, limits
    mode = "none" if normalize is None else normalize
    if mode not in ("auto", "percentile", "none"):
        raise ValueError(f"normalize must be 'auto', 'percentile' or None, got {normalize!r}")
    if mode == "auto":
        mode = "none" if image.dtype == np.uint8 and image.shape[-1] == 3 else "percentile"
    if mode == "percentile":
        limits = percentile_limits(image, percentiles)
        return _rescale(image, limits), "percentile", tuple(percentiles), limits
    if image.dtype == np.uint8:
        return image, "none", None, None
    finite = _finite_sample(image)
    if finite.size == 0:
        raise ValueError("image has no finite values (all NaN or inf)")
    if finite.min() < 0 or finite.max() > 255:
        raise ValueError(
            f"normalize=None expects intensities in 0–255 (uint8-like), but the image spans "
            f"{finite.min()}…{finite.max()}; use normalize='percentile' or contrast_limits="
        )
    out = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    return out, "none", None, None


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
    scaled, mode, used_percentiles, limits = normalize_intensity(
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
