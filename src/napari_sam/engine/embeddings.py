"""Image embeddings: the value object and computing it for one 2D image."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..model import Sam
from .device import DeviceLike
from .loading import ModelLike, load_model, model_weights_id
from .preprocess import DEFAULT_PERCENTILES, NormalizeMode, PreprocessParams, prepare_image

Precision = Literal["auto", "fp32", "bf16", "fp16"]

_PRECISION_ALIASES = {
    "auto": "auto",
    "fp32": "fp32",
    "float32": "fp32",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp16": "fp16",
    "float16": "fp16",
    "half": "fp16",
}
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``precision`` on ``device``.

    ``"auto"`` is bf16 on CUDA devices that support it (fp16 on older ones) and fp32 elsewhere: on
    CPUs reduced precision is rarely faster and changes results.

    Raises
    ------
    ValueError
        An unknown name, or fp16 / bf16 where this torch build cannot autocast to it.
    """
    name = _PRECISION_ALIASES.get(str(precision).strip().lower()) if isinstance(precision, str) else None
    if name is None:
        raise ValueError(f"precision must be 'auto', 'fp32', 'bf16' or 'fp16', got {precision!r}")
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if name != "fp32" and not torch.amp.is_autocast_available(device.type):
        raise ValueError(
            f"precision={precision!r} is not supported on device {device} by torch {torch.__version__}"
        )
    return name


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Run the enclosed forward passes in ``precision`` (a resolved name) on ``device``."""
    if precision == "fp32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision]):
        yield


def encode_images(sam: Sam, model_inputs: torch.Tensor, *, precision: str = "auto") -> torch.Tensor:
    """Run the image encoder on a batch of prepared model inputs.

    Parameters
    ----------
    sam
        The model (its device is used).
    model_inputs
        ``(B, 3, S, S)`` float32, normalised and padded (see
        :func:`napari_sam.engine.preprocess.prepare_image`); moved to the model's device.
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :func:`resolve_precision`).

    Returns
    -------
    torch.Tensor
        ``(B, 256, S / 16, S / 16)`` float32 features on the model's device.
    """
    device = sam.device
    resolved = resolve_precision(precision, device)
    inputs = model_inputs.to(device, non_blocking=True)
    with torch.inference_mode(), autocast(device, resolved):
        features = sam.image_encoder(inputs)
    return features.float()


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


def compute_embeddings(
    image: Any,
    model: ModelLike = "nano",
    *,
    device: DeviceLike = "auto",
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    precision: Precision = "auto",
    cache: Any = None,
) -> Embeddings:
    """Embed one 2D image.

    Parameters
    ----------
    image
        ``(Y, X)`` or ``(Y, X, C)`` numpy / dask / zarr array of any integer or float dtype.
    model
        A model name, weights path or :class:`Sam` (see :func:`napari_sam.load_model`).
    device
        Where to run (``"auto"``: CUDA → MPS → CPU).
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing; see :func:`napari_sam.engine.preprocess.prepare_image`.
    precision
        Encoder arithmetic: ``"auto"`` (bf16 on CUDA, fp32 elsewhere), ``"fp32"``, ``"bf16"``, ``"fp16"``.
    cache
        Folder of an on-disk embedding cache — not available in this version.

    Returns
    -------
    Embeddings
    """
    if cache is not None:
        raise NotImplementedError(
            "the on-disk embedding cache (cache=) is not available in this version yet; "
            "keep the returned Embeddings object to reuse it"
        )
    sam = load_model(model, device)
    model_input, input_size, original_size, params = prepare_image(
        image,
        image_size=sam.image_size,
        pixel_mean=sam.pixel_mean,
        pixel_std=sam.pixel_std,
        normalize=normalize,
        percentiles=percentiles,
        contrast_limits=contrast_limits,
        channel=channel,
        channel_axis=channel_axis,
        device=sam.device,
    )
    features = encode_images(sam, model_input, precision=precision)
    return Embeddings(
        features=features,
        input_size=input_size,
        original_size=original_size,
        image_size=sam.image_size,
        model_name=sam.name,
        weights_sha256=model_weights_id(sam),
        preprocessing=params,
        model=sam,
    )
