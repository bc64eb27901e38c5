"""Microscopy images (any dtype, gray or multi-channel) → Segment Anything model input, and back.

:class:`Preprocessor` is the one way there, built once from the preprocessing options: pick channels →
normalise intensities to the model's 0–255 scale (percentiles or given contrast limits; the exact
arithmetic for every dtype is in :mod:`napari_sam.engine.intensity`) → RGB → resize the longest side to
the model's ``image_size`` (Pillow bilinear, antialiased) → subtract the pixel mean, divide by the pixel
std → zero-pad bottom/right to a square; and back: mask logits → the image's size. The functions here are
its steps (:func:`prepare_image` runs them for a model given by its geometry).

A uint8 RGB image with ``normalize=None`` (or the default ``"auto"``) goes through exactly the
official ``segment_anything`` path (Pillow resize of the uint8 image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from .intensity import (
    exact_percentile_limits,
    has_no_contrast,
    normalize_exact,
    normalize_intensity,
    percentile_limits,
    rescale,
    warn_no_contrast,
)
from .types import (
    DEFAULT_PERCENTILES,
    EmbedOptions,
    Limits,
    NormalizeMode,
    PreprocessParams,
    check_contrast_limits,
    check_normalize,
    check_object_size,
    check_percentiles,
)

if TYPE_CHECKING:
    from ..model import Sam

__all__ = [
    "AUTO_CHANNELS",
    "DEFAULT_PERCENTILES",
    "MASK_PROMPT_LOGIT",
    "MAX_INFERRED_CHANNELS",
    "NormalizeMode",
    "Preprocessor",
    "as_channels_last_2d",
    "exact_percentile_limits",
    "fit_to_canvas",
    "has_no_contrast",
    "mask_to_prompt_logits",
    "may_hold_channels",
    "normalize_exact",
    "normalize_intensity",
    "percentile_limits",
    "prepare_image",
    "preprocess_shape",
    "resize_image",
    "select_channels",
    "to_model_input",
    "upscale_logits",
    "warn_no_contrast",
]

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


def preprocess_shape(
    height: int, width: int, long_side: int, max_upscale: float | None = None, scale: float | None = None
) -> tuple[int, int]:
    """``(rows, cols)`` after resizing so the longer side equals ``long_side`` (official rounding).

    With ``max_upscale``, a small image is enlarged by at most that factor (its resized longer side
    is then shorter than ``long_side``; the rest of the canvas is padding). With ``scale`` (chosen from
    the objects' size, :mod:`napari_sam.engine.object_scale`) the image is scaled by exactly that,
    enlarged or shrunk, and ``max_upscale`` does not apply. Images larger than the canvas are always
    shrunk to fit.
    """
    fit = long_side / max(height, width)
    if scale is not None:
        scale = min(float(scale), fit)
    elif max_upscale is not None and fit > max_upscale:
        scale = float(max_upscale)
    else:
        scale = fit
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


def fit_to_canvas(
    scaled: np.ndarray,
    *,
    image_size: int,
    pixel_mean: torch.Tensor,
    pixel_std: torch.Tensor,
    max_upscale: float | None = None,
    scale: float | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``(H, W, 1|3)`` image on the 0–255 scale → ``(1, 3, image_size, image_size)`` model input.

    Resizes the longer side to ``image_size`` (a small image enlarged by at most ``max_upscale``; with
    ``scale``, by that; see :func:`preprocess_shape`), then :func:`to_model_input`.

    Returns
    -------
    model_input, input_size
        ``(1, 3, S, S)`` float32 on ``device``, and ``(rows, cols)`` of the resized image inside it.
    """
    input_size = preprocess_shape(int(scaled.shape[0]), int(scaled.shape[1]), image_size, max_upscale, scale)
    resized = resize_image(scaled, input_size)
    model_input = to_model_input(
        resized, image_size=image_size, pixel_mean=pixel_mean, pixel_std=pixel_std, device=device
    )
    return model_input, input_size


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
    """Any 2D image → model input (:class:`Preprocessor` for a model given by its geometry).

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
    preprocessor = Preprocessor(normalize, percentiles, contrast_limits, channel, channel_axis)
    scaled, params = preprocessor.normalized(image)
    model_input, input_size = fit_to_canvas(
        scaled,
        image_size=image_size,
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
        max_upscale=max_upscale,
        device=device,
    )
    return model_input, input_size, (int(scaled.shape[0]), int(scaled.shape[1])), params


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


@dataclass(frozen=True)
class Preprocessor:
    """The one way from a 2D image to the model's input, and back for masks.

    Built once from the preprocessing options (checked here), then applied to any number of images,
    slices, tiles or windows:

    1. :meth:`channels`: ``(H, W[, C])`` → ``(H, W, 1|3)``: gray, RGB (uint8 RGBA loses alpha), or
       the ``channel`` picks (one index → gray, two or three → red, green, blue).
    2. :meth:`normalized`: intensities → the model's 0–255 scale, by percentiles per channel, by given
       contrast limits, or as they are; exact for any dtype (see :mod:`napari_sam.engine.intensity`).
       Returns the :class:`~napari_sam.engine.types.PreprocessParams` that record it;
       :meth:`normalized_as` repeats a recorded normalisation on a tile or window of the image.
    3. :meth:`canvas`: → ``(1, 3, S, S)`` model input: gray → RGB, the longer side resized to the
       model's ``image_size`` (Pillow bilinear; a small image enlarged by at most the model's
       ``max_upscale``; or scaled by :attr:`scale`), minus the pixel mean, over the pixel std,
       zero-padded bottom / right.
       :meth:`prepare` runs steps 1 to 3.
    4. :meth:`upscale_logits`: the inverse for masks: low-resolution logits → the image's size.

    A uint8 RGB image with ``normalize="auto"`` (or ``"none"``) takes exactly the official
    ``segment_anything`` path (Pillow resize of the uint8 image).

    Attributes
    ----------
    normalize
        ``"auto"`` (uint8 RGB as is, everything else by percentiles), ``"percentile"`` or ``"none"``
        (intensities already 0–255); None is kept as ``"none"``.
    percentiles
        ``(low, high)`` percentiles mapped to 0 and 255, ``0 <= low < high <= 100``.
    contrast_limits
        ``(low, high)`` intensities mapped to 0 and 255 in every channel; they override ``normalize``.
    channel
        None, a channel index, or up to three indices (→ red, green, blue).
    channel_axis
        Axis of a 2D image that holds channels, when not the last.
    volume_limits, volume_residuals
        Percentile limits (and their residuals) fixed for a whole stack: every slice is normalised
        with them (see :meth:`with_volume_limits`); None: each image gets its own.
    scale
        How much images go onto the canvas enlarged (or shrunk), chosen from the objects' size
        (:mod:`napari_sam.engine.object_scale`); None: the model's rule (the longer side to the
        canvas, nano enlarging at most ``max_upscale``). A tile or image larger than the canvas at
        this scale is shrunk to fit.
    object_size
        What the scale of an embedding run is chosen from: the objects' diameter in pixels,
        ``"auto"`` or None (see ``compute_embeddings(object_size=)``); runs that embed through this
        preprocessing pass it on, and the run sets :attr:`scale` from it.

    Raises
    ------
    ValueError
        ``normalize``, ``percentiles`` or ``contrast_limits`` out of range.

    Examples
    --------
    >>> import numpy as np
    >>> pre = Preprocessor(percentiles=(0.0, 100.0))
    >>> scaled, params = pre.normalized(np.array([[0, 100], [200, 400]], dtype=np.uint16))
    >>> scaled[..., 0].tolist(), params.normalize, params.contrast_limits
    ([[0.0, 63.75], [127.5, 255.0]], 'percentile', ((0.0, 400.0),))
    """

    normalize: NormalizeMode = "auto"
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES
    contrast_limits: tuple[float, float] | None = None
    channel: int | Sequence[int] | None = None
    channel_axis: int | None = None
    volume_limits: Limits | None = None
    volume_residuals: Limits | None = None
    scale: float | None = None
    object_size: float | str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "object_size", check_object_size(self.object_size))
        if self.scale is not None and not (isinstance(self.scale, (int, float)) and self.scale > 0):
            raise ValueError(f"scale must be a positive number or None, got {self.scale!r}")
        object.__setattr__(self, "normalize", check_normalize(self.normalize))
        check_percentiles(self.percentiles)
        object.__setattr__(self, "percentiles", tuple(self.percentiles))
        check_contrast_limits(self.contrast_limits)

    @classmethod
    def from_options(cls, options: EmbedOptions, channel_axis: int | None = None) -> Preprocessor:
        """The preprocessing ``options`` ask for; ``channel_axis`` is the channel axis of one 2D slice."""
        return cls(
            options.normalize,
            options.percentiles,
            options.contrast_limits,
            options.channel,
            channel_axis,
            object_size=options.object_size,
        )

    def with_volume_limits(self, limits: Limits, residuals: Limits | None) -> Preprocessor:
        """This preprocessing with percentile limits fixed for a whole stack (one row per channel)."""
        return replace(self, volume_limits=limits, volume_residuals=residuals)

    def channels(self, image: Any) -> tuple[np.ndarray, tuple[int, ...] | None]:
        """``image`` as ``(H, W, 1|3)`` in its own dtype, and the channel picks (None: as given).

        Raises
        ------
        ValueError
            Not a 2D image of a supported dtype, or channels ``channel`` does not name.
        """
        arr = as_channels_last_2d(image, channel_axis=self.channel_axis)
        return select_channels(arr, self.channel)

    def mode_for(self, dtype: np.dtype, n_channels: int) -> str:
        """How an image of ``dtype`` with ``n_channels`` selected channels is normalised:
        ``"contrast_limits"``, ``"percentile"`` or ``"none"``."""
        if self.contrast_limits is not None:
            return "contrast_limits"
        if self.normalize == "auto":
            return "none" if dtype == np.uint8 and n_channels == 3 else "percentile"
        return str(self.normalize)

    def normalized(self, image: Any, where: str | None = None) -> tuple[np.ndarray, PreprocessParams]:
        """``image`` → ``(H, W, 1|3)`` on the 0–255 scale (uint8 on the official path, else float32).

        ``where`` names the image in a :class:`~napari_sam.errors.NoContrastWarning` (``"slice 3"``).

        Returns
        -------
        scaled, params
            The normalised image and what was done (its limits, for a percentile normalisation).
        """
        arr, picks = self.channels(image)
        if self.volume_limits is not None:
            volume, rest = self.volume_limits, self.volume_residuals
            if has_no_contrast(volume):
                warn_no_contrast(arr, "the stack (percentiles over the volume)")
            params = PreprocessParams("percentile", self.percentiles, volume, picks, rest)
            return rescale(arr, volume, rest), params
        scaled, mode, used, limits, residuals = normalize_exact(
            arr,
            normalize=self.normalize,
            percentiles=self.percentiles,
            contrast_limits=self.contrast_limits,
            where=where,
        )
        return scaled, PreprocessParams(mode, used, limits, picks, residuals)

    def normalized_as(self, image: Any, params: PreprocessParams) -> np.ndarray:
        """``image`` (a tile, a window) normalised exactly as an image recorded with ``params`` was."""
        arr, _ = self.channels(image)
        if params.contrast_limits is None:
            return normalize_intensity(arr, normalize=None)[0]
        return rescale(arr, params.contrast_limits, params.limit_residuals)

    def canvas(
        self, scaled: np.ndarray, model: Sam, *, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """A normalised ``(H, W, 1|3)`` image → ``model``'s ``(1, 3, S, S)`` input and its ``input_size``.

        ``device``: where the input is made (default: the model's).
        """
        return fit_to_canvas(
            scaled,
            image_size=model.image_size,
            pixel_mean=model.pixel_mean,
            pixel_std=model.pixel_std,
            max_upscale=model.max_upscale,
            scale=self.scale,
            device=model.device if device is None else device,
        )

    def prepare(
        self, image: Any, model: Sam, *, device: torch.device | str | None = None
    ) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int], PreprocessParams]:
        """Any 2D image → ``(model_input, input_size, original_size, params)`` as :func:`prepare_image`."""
        scaled, params = self.normalized(image)
        model_input, input_size = self.canvas(scaled, model, device=device)
        return model_input, input_size, (int(scaled.shape[0]), int(scaled.shape[1])), params

    @staticmethod
    def upscale_logits(
        low_res: torch.Tensor, *, input_size: tuple[int, int], original_size: tuple[int, int], image_size: int
    ) -> torch.Tensor:
        """The inverse for masks: ``(N, K, 4h, 4w)`` logits → ``(N, K, H, W)``; see :func:`upscale_logits`."""
        return upscale_logits(
            low_res, input_size=input_size, original_size=original_size, image_size=image_size
        )
