"""What every automatic mode starts from: the image or its embeddings, and the model that decodes them."""

from __future__ import annotations

from typing import Any

from ...model import Sam
from ..device import DeviceLike
from ..loading import ModelLike, load_model, model_weights_id
from ..types import Embeddings, TiledEmbeddings

__all__ = ["image_or_embeddings", "model_for", "require_decoder"]


def image_or_embeddings(
    image: Any, embeddings: Any, *, tiled: bool = True
) -> tuple[Any, Embeddings | TiledEmbeddings | None]:
    """``(image, embeddings)`` with embeddings given as the image moved to their place; checked.

    ``tiled``: whether :class:`TiledEmbeddings` are accepted (the decoder modes read them; the prompt
    grid does not).
    """
    kinds: tuple[type, ...] = (Embeddings, TiledEmbeddings) if tiled else (Embeddings,)
    if isinstance(image, kinds):
        if embeddings is not None and embeddings is not image:
            raise ValueError("pass the embeddings once: as the first argument or as embeddings=")
        embeddings, image = image, None
    if embeddings is not None and not isinstance(embeddings, kinds):
        what = "an Embeddings or TiledEmbeddings object" if tiled else "an Embeddings object"
        raise TypeError(f"embeddings must be {what}, got {type(embeddings).__name__}")
    if image is None and embeddings is None:
        raise ValueError("automatic() needs an image or Embeddings")
    checked = embeddings if isinstance(embeddings, (Embeddings, TiledEmbeddings)) else None
    return image, checked


def require_decoder(sam: Sam, mode: str) -> None:
    """ValueError unless ``sam`` carries the instance decoder that ``mode`` (``"ais"``/``"apg"``) needs."""
    if getattr(sam, "instance_decoder", None) is None:
        raise ValueError(
            f"mode={mode!r} needs a model with an instance decoder, and model {sam.name!r} has none: use "
            "mode='amg' (or 'auto'), or a model that carries one (micro-sam's checkpoints with a "
            "decoder_state, or <weights>_decoder.pt beside the weights file)"
        )


def model_for(
    embeddings: Embeddings | TiledEmbeddings | None,
    model: ModelLike,
    device: DeviceLike,
    *,
    needs_decoder: str | None = None,
) -> Sam:
    """The model to decode with: the embeddings' own, else ``model`` — which must have made them.

    ``needs_decoder``: the mode (``"ais"``/``"apg"``) that needs an instance decoder, checked here.
    """
    if embeddings is None:
        sam = load_model(model, device)
    else:
        sam = embeddings.model if embeddings.model is not None else load_model(model, device)
        if model_weights_id(sam) != embeddings.weights_sha256:
            raise ValueError(
                f"model {sam.name!r} is not the model these embeddings were computed with "
                f"({embeddings.model_name!r})"
            )
    if needs_decoder is not None:
        require_decoder(sam, needs_decoder)
    return sam
