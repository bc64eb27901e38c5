"""An instance decoder's weights: found beside a SAM file or inside it, read, checked and built.

Three places hold them, in the order they are looked at:

1. an explicit decoder file (``build_sam(..., instance_decoder=path)``);
2. the SAM file itself: micro-sam's ``{"model_state": …, "decoder_state": …}``, or our safetensors with
   ``instance_decoder.*`` keys;
3. a file beside the SAM file named ``<stem>_decoder.pt`` (``.pth``, ``.safetensors``), as micro-sam's
   model zoo ships them (``vit_b.pt`` + ``vit_b_decoder.pt``).

A decoder file holds micro-sam's bare ``decoder_state`` (keys ``base.…``, ``decoder.…``, ``deconv1.…``,
``out_conv.…``), the same keys under ``instance_decoder.``, or a whole micro-sam checkpoint whose
``decoder_state`` is taken.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from ..errors import CheckpointError
from .checkpoint import DECODER_METADATA_KEY, INSTANCE_DECODER_PREFIX, fit_problems, read_checkpoint
from .instance_decoder import InstanceDecoder, InstanceDecoderConfig

__all__ = [
    "DECODER_FILE_SUFFIXES",
    "build_instance_decoder",
    "decoder_beside",
    "read_instance_decoder",
    "split_instance_decoder",
]

#: Extensions a decoder file beside a SAM file may have, in the order they are looked for.
DECODER_FILE_SUFFIXES = (".pt", ".pth", ".safetensors")


def split_instance_decoder(
    state_dict: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """``state_dict`` → (the SAM keys, the instance decoder's keys without their prefix, or None)."""
    sam = {k: v for k, v in state_dict.items() if not k.startswith(INSTANCE_DECODER_PREFIX)}
    decoder = {
        k[len(INSTANCE_DECODER_PREFIX) :]: v
        for k, v in state_dict.items()
        if k.startswith(INSTANCE_DECODER_PREFIX)
    }
    return sam, (decoder or None)


def decoder_beside(path: Path) -> Path | None:
    """The decoder file beside the SAM file ``path`` (``<stem>_decoder.pt`` …), or None."""
    for suffix in DECODER_FILE_SUFFIXES:
        candidate = path.with_name(f"{path.stem}_decoder{suffix}")
        if candidate.is_file() and candidate != path:
            return candidate
    return None


def read_instance_decoder(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The instance decoder state dict held by the file ``path``, and the file's metadata.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CheckpointError
        The file cannot be read, or holds no instance decoder.
    """
    state, metadata = read_checkpoint(path)
    _, prefixed = split_instance_decoder(state)
    decoder = prefixed if prefixed is not None else state
    if "base.block.1.weight" not in decoder or "out_conv.weight" not in decoder:
        raise CheckpointError(
            f"{path} holds no instance decoder: expected micro-sam's decoder_state keys "
            "(base.block.1.weight, out_conv.weight, …)"
        )
    return decoder, metadata


def build_instance_decoder(
    state: Mapping[str, torch.Tensor],
    *,
    image_size: int,
    embed_dim: int,
    source: str,
    metadata: Mapping[str, str] | None = None,
) -> InstanceDecoder:
    """An :class:`InstanceDecoder` holding ``state``, in eval mode, on the CPU.

    The architecture comes from the metadata when our own file recorded it, else from the tensor
    shapes (micro-sam's files record nothing); a decoder from micro-sam's files normalises its batch norms
    with each image's own statistics (``batch_statistics``), because micro-sam never puts its decoder in
    eval mode — so its maps are micro-sam's.

    Raises
    ------
    CheckpointError
        ``state`` does not fit a decoder of that architecture, or does not read the SAM model's
        ``embed_dim``-channel embeddings at its ``image_size``.
    """
    raw = (metadata or {}).get(DECODER_METADATA_KEY)
    try:
        if raw is not None:
            config = InstanceDecoderConfig.from_dict(json.loads(raw))
            decoder = InstanceDecoder(**{**config.to_dict(), "image_size": image_size})
        else:  # micro-sam's file: run as micro-sam runs it (batch norms on each image's own statistics)
            shaped = InstanceDecoder.from_state_dict_shapes(state, image_size=image_size).config
            decoder = InstanceDecoder(**{**shaped.to_dict(), "batch_statistics": True})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source} holds no usable instance decoder: {exc}") from exc
    if decoder.config.embed_dim != embed_dim:
        raise CheckpointError(
            f"the instance decoder in {source} reads {decoder.config.embed_dim}-channel embeddings, but the "
            f"model's image encoder makes {embed_dim}-channel ones"
        )
    shapes = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    problems = fit_problems(shapes, state)
    if problems:
        raise CheckpointError(
            f"the instance decoder in {source} does not fit micro-sam's decoder layout "
            f"({decoder.config}): " + "; ".join(problems)
        )
    decoder.load_state_dict(dict(state), strict=True)
    return decoder.eval()
