"""Image embeddings: the value object and computing it for one 2D image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..model import Sam
from .device import DeviceLike
from .loading import ModelLike, load_model, model_weights_id
from .preprocess import DEFAULT_PERCENTILES, NormalizeMode, PreprocessParams, prepare_image


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
    with torch.inference_mode():
        features = sam.image_encoder(model_input)
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
