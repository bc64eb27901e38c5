"""``build_sam``: a :class:`Sam` from a registered name, a config, or a weights file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, overload

import torch

from ..errors import CheckpointError
from .checkpoint import (
    check_fits,
    config_from_metadata,
    describe_architecture,
    fit_problems,
    infer_config,
    infer_sam2_config,
    is_sam2_state_dict,
    load_state_dict_strict,
    read_checkpoint,
)
from .configs import CONFIGS, SamConfig, config_name
from .instance_checkpoint import (
    build_instance_decoder,
    decoder_beside,
    read_instance_decoder,
    split_instance_decoder,
)
from .instance_decoder import InstanceDecoder
from .registry import file_sha256
from .sam import Sam, build_from_config
from .sam2.configs import SAM2_CONFIGS, Sam2Config, sam2_config_name
from .sam2.sam2 import Sam2

#: Names accepted by :func:`build_sam` besides file paths (SAM 1 architectures, then SAM 2.1 sizes).
MODEL_NAMES = (*CONFIGS, *SAM2_CONFIGS)


def _looks_like_path(value: str) -> bool:
    return (
        any(sep in value for sep in ("/", "\\"))
        or value.endswith((".pth", ".pt", ".safetensors", ".bin"))
        or Path(value).expanduser().exists()
    )


#: What ``instance_decoder=`` of :func:`build_sam` accepts: a decoder file, None (look for one), False (none).
DecoderChoice = str | Path | bool | None


def _load_sam2(
    path: Path, state_dict: dict[str, torch.Tensor], *, expected: Sam2Config | None, name: str | None
) -> Sam2:
    """A :class:`Sam2` with the weights of ``path`` (already read into ``state_dict``), strictly."""
    if expected is None:
        name_found, config = infer_sam2_config(state_dict)
        name = name or name_found
    else:
        config = expected
    model_name = name or sam2_config_name(config) or path.stem
    with torch.device("meta"):  # shapes first, before any real tensor is allocated
        skeleton = Sam2(config, name=model_name)
    parts = fit_problems({k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, state_dict)
    if parts:
        raise CheckpointError(
            f"{path} does not fit the SAM 2 architecture {model_name!r}: " + "; ".join(parts)
        )
    model = Sam2(config, name=model_name)
    model.load_state_dict(state_dict, strict=True)
    model.weights_sha256 = file_sha256(path)
    return model.eval()


def _load_file(
    path: Path, *, expected: SamConfig | None, name: str | None, decoder: DecoderChoice
) -> Sam | Sam2:
    everything, metadata = read_checkpoint(path)
    if expected is None and is_sam2_state_dict(everything):
        if decoder not in (None, False):
            raise CheckpointError("SAM 2 models have no instance decoder: leave instance_decoder= unset")
        return _load_sam2(path, everything, expected=None, name=name)
    state_dict, decoder_state = split_instance_decoder(everything)
    declared = config_from_metadata(metadata) if expected is None else None
    config = expected or declared or infer_config(state_dict)
    model_name = name or metadata.get("napari_sam_name") or config_name(config) or path.stem
    _check_shapes_first(config, state_dict, path, name=model_name, declared=declared is not None)
    model = build_from_config(config, name=model_name)
    load_state_dict_strict(model, state_dict, source=str(path))
    model.instance_decoder = _instance_decoder(path, config, decoder, decoder_state, metadata)
    # the id of the SAM file: the instance decoder reads embeddings and does not change them
    model.weights_sha256 = file_sha256(path)
    return model.eval()


def _instance_decoder(
    path: Path,
    config: SamConfig,
    choice: DecoderChoice,
    inside: dict[str, torch.Tensor] | None,
    metadata: dict[str, str],
) -> InstanceDecoder | None:
    """The instance decoder for the SAM file ``path``: the file ``choice``, else the one ``inside`` the
    SAM file, else one beside it (see :mod:`.instance_checkpoint`); None with ``choice=False``."""
    if choice is False:
        return None
    source = str(path)
    if choice is not None and choice is not True:
        decoder_path = Path(choice).expanduser()
        if not decoder_path.is_file():
            raise FileNotFoundError(f"instance decoder file not found: {decoder_path}")
        inside, metadata, source = *read_instance_decoder(decoder_path), str(decoder_path)
    elif inside is None:
        beside = decoder_beside(path)
        if beside is None:
            if choice is True:
                raise CheckpointError(
                    f"{path} holds no instance decoder and none lies beside it "
                    f"({path.stem}_decoder.pt / .pth / .safetensors)"
                )
            return None
        inside, metadata, source = *read_instance_decoder(beside), str(beside)
    return build_instance_decoder(
        inside,
        image_size=config.image_size,
        embed_dim=config.prompt_embed_dim,
        source=source,
        metadata=metadata,
    )


def _describe(config: SamConfig) -> str:
    fields = ["encoder_type", "encoder_embed_dim", "encoder_depth", "encoder_num_heads", "image_size"]
    if config.encoder_type in ("nano", "tiny_vit"):
        fields.append("encoder_widths")
    if config.encoder_type == "tiny_vit":
        fields.append("encoder_stage_depths")
    return ", ".join(f"{field}={getattr(config, field)!r}" for field in fields)


def _check_shapes_first(
    config: SamConfig, state_dict: dict[str, torch.Tensor], path: Path, *, name: str, declared: bool
) -> None:
    """Refuse weights that do not fit ``config`` before any real tensor of the model is allocated.

    The model is built on the ``meta`` device (shapes without memory) and its shapes compared with
    the file's; a declared architecture asking for more blocks than the file has tensors is refused
    before even that. Once the shapes match, the model needs no more memory than the file's tensors.

    Raises
    ------
    CheckpointError
        Naming the file, the declared architecture (from the file's metadata) when there is one,
        and the keys and shapes that differ.
    """
    what = f"the architecture in {path}'s metadata ({_describe(config)})" if declared else None
    counts = {
        "encoder_depth": config.encoder_depth,
        "decoder_depth": config.decoder_depth,
        "iou_head_depth": config.iou_head_depth,
        "num_multimask_outputs": config.num_multimask_outputs,
    }
    for field, count in counts.items():
        if count > len(state_dict):
            held = f"{len(state_dict)} tensor" + ("s" if len(state_dict) != 1 else "")
            raise CheckpointError(
                f"{what or f'the requested architecture {name!r}'} asks for {field}={count}, but "
                f"{path} holds only {held}: the file is not a model of that architecture"
            )
    with torch.device("meta"):
        skeleton = build_from_config(config, name=name)
    if not declared:
        check_fits(skeleton, state_dict, source=str(path))
        return
    shapes = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    parts = fit_problems(shapes, state_dict, theirs="file", ours="metadata")
    if parts:
        raise CheckpointError(
            f"{what} does not match the file's tensors: "
            + "; ".join(parts)
            + f"; the tensors look like {describe_architecture(state_dict)}"
        )


@overload
def build_sam(
    name_or_path: SamConfig, checkpoint: str | Path | None = None, *, instance_decoder: DecoderChoice = None
) -> Sam: ...


@overload
def build_sam(
    name_or_path: Sam2Config, checkpoint: str | Path | None = None, *, instance_decoder: DecoderChoice = None
) -> Sam2: ...


@overload
def build_sam(
    name_or_path: str | Path, checkpoint: str | Path | None = None, *, instance_decoder: DecoderChoice = None
) -> Any: ...


def build_sam(
    name_or_path: str | Path | SamConfig | Sam2Config,
    checkpoint: str | Path | None = None,
    *,
    instance_decoder: DecoderChoice = None,
) -> Sam | Sam2:
    """Build a Segment Anything model (SAM 1 or SAM 2.1).

    Parameters
    ----------
    name_or_path
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"vit_t"`` (MobileSAM's TinyViT encoder), ``"nano"``,
        a SAM 2.1 size (``"sam2.1_hiera_tiny"``, ``"_small"``, ``"_base_plus"``, ``"_large"``), a
        :class:`SamConfig` or :class:`~napari_sam.model.sam2.configs.Sam2Config`, or the path of a
        weights file (official ``.pth`` / SAM 2's ``.pt``, MobileSAM's ``mobile_sam.pt``, a micro-sam
        ``.pt`` or our ``.safetensors``), whose architecture (SAM 1 or SAM 2, and its size) is then
        inferred.
    checkpoint
        With a name or config: a weights file to load strictly into that architecture. Without one,
        a name or config gives PyTorch's default random initialisation (nothing is downloaded; use
        :func:`napari_sam.load_model` for the official weights).
    instance_decoder
        With a weights file: None (default) attaches the instance decoder the file holds (micro-sam's
        ``decoder_state``, our ``instance_decoder.*`` keys), else one beside it
        (``<stem>_decoder.pt`` / ``.pth`` / ``.safetensors``), else none; a path attaches that decoder
        file; True requires a decoder (error when there is none); False attaches none.

    Returns
    -------
    Sam or Sam2
        In eval mode, on the CPU; ``sam.instance_decoder`` is the attached decoder or None (always
        None for a :class:`~napari_sam.model.sam2.sam2.Sam2`).

    Raises
    ------
    ValueError
        Unknown name.
    FileNotFoundError
        A path that does not exist.
    CheckpointError
        Unreadable weights, or weights of another architecture (the message names the right one).

    Examples
    --------
    >>> from napari_sam.model import build_sam
    >>> from napari_sam.model.registry import shipped_nano_path
    >>> sam = build_sam(shipped_nano_path())  # architecture read from the file
    >>> type(sam).__name__, sam.config.encoder_type, sam.image_size, sam.training
    ('Sam', 'nano', 1024, False)
    >>> sorted({key.split(".")[0] for key in sam.state_dict()})  # nano_decoder.safetensors lies beside it
    ['image_encoder', 'instance_decoder', 'mask_decoder', 'prompt_encoder']
    >>> build_sam(shipped_nano_path(), instance_decoder=False).instance_decoder is None
    True

    ``build_sam("vit_b")`` gives the official architecture with random weights and the official
    state-dict keys; ``build_sam("vit_b", "sam_vit_b_01ec64.pth")`` loads the official file strictly.
    """
    if isinstance(name_or_path, Sam2Config) or (
        isinstance(name_or_path, str) and name_or_path in SAM2_CONFIGS
    ):
        return _build_sam2(name_or_path, checkpoint, instance_decoder)
    if isinstance(name_or_path, SamConfig):
        config, name = name_or_path, config_name(name_or_path) or "custom"
    elif isinstance(name_or_path, str) and name_or_path in CONFIGS:
        config, name = CONFIGS[name_or_path], name_or_path
    elif isinstance(name_or_path, Path) or (isinstance(name_or_path, str) and _looks_like_path(name_or_path)):
        if checkpoint is not None:
            raise ValueError("pass either a weights path or checkpoint=, not both")
        path = Path(name_or_path).expanduser()
        if path.is_dir():
            raise FileNotFoundError(f"model weights file not found: {path} is a folder, not a weights file")
        if not path.is_file():
            raise FileNotFoundError(f"model weights file not found: {path}")
        return _load_file(path, expected=None, name=None, decoder=instance_decoder)
    else:
        raise ValueError(
            f"unknown model {name_or_path!r}: expected one of {list(MODEL_NAMES)}, a SamConfig / Sam2Config, "
            "or the path of a weights file (.pth / .safetensors)"
        )
    if checkpoint is None:
        if instance_decoder not in (None, False):
            raise ValueError("instance_decoder= needs weights: pass a weights path or checkpoint=")
        return build_from_config(config, name=name).eval()
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    return _load_file(path, expected=config, name=name, decoder=instance_decoder)


def _build_sam2(
    name_or_config: str | Sam2Config, checkpoint: str | Path | None, decoder: DecoderChoice
) -> Sam2:
    """A :class:`Sam2` of a registered size or a config: random weights, or ``checkpoint``'s (strictly)."""
    if decoder not in (None, False):
        raise ValueError("SAM 2 models have no instance decoder: leave instance_decoder= unset")
    if isinstance(name_or_config, Sam2Config):
        config, name = name_or_config, sam2_config_name(name_or_config) or "sam2-custom"
    else:
        config, name = SAM2_CONFIGS[name_or_config], name_or_config
    if checkpoint is None:
        return Sam2(config, name=name).eval()
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    state_dict, _ = read_checkpoint(path)
    return _load_sam2(path, state_dict, expected=config, name=name)
