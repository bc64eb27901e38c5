"""Reading, checking and writing model weights.

Official ``.pth`` files are read with ``torch.load(..., weights_only=True)`` (no arbitrary code
runs); our own ``.safetensors`` files carry the architecture as JSON metadata. The architecture of
an official file is inferred from the tensor shapes. Loading is strict: a mismatch lists what is
missing, unexpected or of the wrong shape.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .configs import CONFIGS, SamConfig, config_name, tiny_vit_stride

#: Keys under which training frameworks commonly nest a model's state dict.
_CONTAINER_KEYS = ("model", "state_dict", "model_state", "model_state_dict")
_CONFIG_METADATA_KEY = "napari_sam_config"
#: Metadata key of our safetensors files that holds an instance decoder's architecture (JSON).
DECODER_METADATA_KEY = "napari_sam_instance_decoder"
#: Where a model's instance decoder keys live in its state dict (``Sam.instance_decoder``).
INSTANCE_DECODER_PREFIX = "instance_decoder."
_MAX_LISTED = 8
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def sha256_file(path: str | Path, *, chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def weights_fingerprint(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hex sha256 over the names, shapes, dtypes and bytes of a state dict (key order free)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        # reshape(-1): a 0-d tensor cannot be viewed as bytes of another element size
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _tensors_of(obj: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint object, by key.

    Containers of training frameworks are opened (``model_state`` …); micro-sam's
    ``{"model_state": {"sam.<key>": …}, "decoder_state": {…}}`` gives the SAM keys without the ``sam.``
    prefix and the decoder's keys under :data:`INSTANCE_DECODER_PREFIX`.
    """
    decoder: dict[str, torch.Tensor] = {}
    if isinstance(obj, Mapping):
        inner_decoder = obj.get("decoder_state")
        if isinstance(inner_decoder, Mapping):
            decoder = _tensors_of(inner_decoder)
        for key in _CONTAINER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(k, str) for k in inner):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path} holds no state dict (found {type(obj).__name__})")
    tensors = _tensors_of(obj)
    if not tensors and not decoder:
        raise CheckpointError(f"{path} holds no tensors")
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    if any(k.startswith("sam.image_encoder.") for k in tensors):  # micro-sam's training wrapper
        tensors = {k.removeprefix("sam."): v for k, v in tensors.items()}
    tensors.update({INSTANCE_DECODER_PREFIX + k: v for k, v in decoder.items()})
    return tensors


def _is_safetensors(path: Path) -> bool:
    """By suffix (any case), or by content: an 8-byte little-endian header length, then ``{``."""
    if path.suffix.lower() == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    header_len = int.from_bytes(head[:8], "little")
    return 0 < header_len <= path.stat().st_size - 8


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read a weights file into CPU tensors.

    Parameters
    ----------
    path
        An official ``.pth``/``.pt`` file, or a ``.safetensors`` file written by
        :func:`save_safetensors` (recognised by suffix or content).

    Returns
    -------
    state_dict, metadata
        Tensors by official key name, and the file's string metadata (empty for ``.pth``).

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    CheckpointError
        The file is truncated, corrupt, or not a tensor checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    hint = "the file may be truncated or corrupt; delete it and download it again"
    if _is_safetensors(path):
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                metadata = dict(fh.metadata() or {})
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        except Exception as exc:
            raise CheckpointError(f"cannot read safetensors file {path}: {exc} ({hint})") from exc
        return _unwrap(tensors, path), metadata
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = _ANSI_ESCAPE.sub("", str(exc)).strip()
        message = text.splitlines()[0].strip() if text else type(exc).__name__
        # torch's own first line ("Weights only load failed. … you have two options") says
        # nothing about *what* failed; the unpickler's words do (wording varies across versions)
        unpickler = re.search(r"Unpickler error:\s*(\S[^\n]*)", text)
        blocked = re.search(r"Unsupported (?:global|class)[^\n]*", text, re.IGNORECASE)
        if blocked:
            message = blocked.group(0).split(" Please use")[0].strip()
            hint = (
                "it stores Python objects besides tensors; napari-sam only loads plain "
                "tensors (torch.load weights_only=True) — save just the model's state_dict()"
            )
        elif "weights only" in text.lower() or "weights_only" in text:
            message = unpickler.group(1).strip() if unpickler else message
            hint = (
                "the file is truncated or corrupt, or stores Python objects besides tensors "
                "(napari-sam only loads plain tensors with torch.load weights_only=True)"
            )
        raise CheckpointError(f"cannot read checkpoint {path}: {message} ({hint})") from exc
    return _unwrap(obj, path), {}


def _require(state_dict: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise CheckpointError(f"this does not look like a Segment Anything checkpoint: missing {key!r}")
    return state_dict[key]


def _indices(state_dict: Mapping[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in state_dict if (m := pattern.match(k))}
    return sorted(found)


#: A key only TinyViT (MobileSAM, ``vit_t``) state dicts have.
TINY_VIT_KEY = "image_encoder.patch_embed.seq.0.c.weight"


def infer_config(state_dict: Mapping[str, torch.Tensor], *, decoder_num_heads: int = 8) -> SamConfig:
    """Infer the architecture of a SAM state dict (ViT or MobileSAM's TinyViT) from its tensor shapes.

    The decoder's number of attention heads leaves no trace in the shapes; it defaults to the
    official 8. Nor does a TinyViT's canvas: it is MobileSAM's 1024.
    """
    encoder = _tiny_vit_fields(state_dict) if TINY_VIT_KEY in state_dict else _vit_fields(state_dict)
    prompt_dim = _require(state_dict, "image_encoder.neck.0.weight").shape[0]
    mask_in = _require(state_dict, "prompt_encoder.mask_downscaling.3.weight").shape[0]
    dec_layers = _indices(state_dict, "mask_decoder.transformer.layers.")
    dec_mlp = _require(state_dict, "mask_decoder.transformer.layers.0.mlp.lin1.weight").shape[0]
    cross_q = _require(
        state_dict, "mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight"
    )
    iou_layers = _indices(state_dict, "mask_decoder.iou_prediction_head.layers.")
    iou_hidden = _require(state_dict, "mask_decoder.iou_prediction_head.layers.0.weight").shape[0]
    mask_tokens = _require(state_dict, "mask_decoder.mask_tokens.weight").shape[0]
    try:
        return SamConfig(
            **encoder,
            prompt_embed_dim=int(prompt_dim),
            mask_in_chans=int(mask_in),
            decoder_depth=len(dec_layers),
            decoder_num_heads=decoder_num_heads,
            decoder_mlp_dim=int(dec_mlp),
            decoder_attention_downsample_rate=int(prompt_dim // cross_q.shape[0]),
            iou_head_depth=len(iou_layers),
            iou_head_hidden_dim=int(iou_hidden),
            num_multimask_outputs=int(mask_tokens - 1),
        )
    except ValueError as exc:
        raise CheckpointError(f"inconsistent checkpoint shapes: {exc}") from exc


def _vit_fields(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The :class:`SamConfig` fields of a ViT image encoder's state dict."""
    proj = _require(state_dict, "image_encoder.patch_embed.proj.weight")  # (D, 3, p, p)
    pos = _require(state_dict, "image_encoder.pos_embed")  # (1, g, g, D)
    embed_dim, patch = proj.shape[0], proj.shape[-1]
    grid = pos.shape[1]
    blocks = _indices(state_dict, "image_encoder.blocks.")
    if not blocks:
        raise CheckpointError("this does not look like a Segment Anything checkpoint: no encoder blocks")
    global_blocks, window = [], 14
    head_dim = _require(state_dict, "image_encoder.blocks.0.attn.rel_pos_h").shape[1]
    for i in blocks:
        length = _require(state_dict, f"image_encoder.blocks.{i}.attn.rel_pos_h").shape[0]
        if length == 2 * grid - 1:
            global_blocks.append(i)
        else:
            window = (length + 1) // 2
    lin1 = _require(state_dict, "image_encoder.blocks.0.mlp.lin1.weight")
    return {
        "encoder_embed_dim": int(embed_dim),
        "encoder_depth": len(blocks),
        "encoder_num_heads": int(embed_dim // head_dim),
        "encoder_global_attn_indexes": tuple(global_blocks),
        "image_size": int(grid * patch),
        "patch_size": int(patch),
        "window_size": int(window),
        "mlp_ratio": lin1.shape[0] / embed_dim,
    }


def _tiny_vit_fields(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The :class:`SamConfig` fields of a TinyViT image encoder's state dict (MobileSAM's layout)."""
    stages = _indices(state_dict, "image_encoder.layers.")
    if len(stages) < 2 or stages != list(range(len(stages))):
        raise CheckpointError(
            f"this does not look like a TinyViT (vit_t) checkpoint: encoder stages {stages}, expected 0, 1, …"
        )
    widths = [int(_require(state_dict, "image_encoder.patch_embed.seq.2.c.weight").shape[0])]
    for i in stages[:-1]:
        widths.append(
            int(_require(state_dict, f"image_encoder.layers.{i}.downsample.conv1.c.weight").shape[0])
        )
    depths = [len(_indices(state_dict, f"image_encoder.layers.{i}.blocks.")) for i in stages]
    heads, windows = [], []
    for i in stages[1:]:
        biases = _require(state_dict, f"image_encoder.layers.{i}.blocks.0.attn.attention_biases")
        window = math.isqrt(biases.shape[1])
        if window * window != biases.shape[1]:
            raise CheckpointError(
                f"this does not look like a TinyViT (vit_t) checkpoint: stage {i}'s attention_biases "
                f"{tuple(biases.shape)} are not one per head and offset of a square window"
            )
        heads.append(int(biases.shape[0]))
        windows.append(window)
    fc1 = _require(state_dict, "image_encoder.layers.1.blocks.0.mlp.fc1.weight")
    head = state_dict.get("image_encoder.head.weight")
    return {
        "encoder_type": "tiny_vit",
        "encoder_embed_dim": widths[-1],
        "encoder_depth": sum(depths),
        "encoder_num_heads": heads[-1],
        "encoder_global_attn_indexes": (),
        "encoder_widths": tuple(widths),
        "encoder_stage_depths": tuple(depths),
        "encoder_stage_heads": tuple(heads),
        "encoder_stage_windows": tuple(windows),
        "encoder_num_classes": 0 if head is None else int(head.shape[0]),
        "patch_size": tiny_vit_stride(len(stages)),
        "mlp_ratio": fc1.shape[0] / widths[1],
    }


def config_from_metadata(metadata: Mapping[str, str]) -> SamConfig | None:
    """The :class:`SamConfig` stored in a safetensors file's metadata, if any."""
    raw = metadata.get(_CONFIG_METADATA_KEY)
    if raw is None:
        return None
    try:
        return SamConfig.from_dict(json.loads(raw))
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"invalid model config in file metadata: {exc}") from exc


def describe_architecture(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A short human description: the registered name if it matches, else the main sizes."""
    try:
        config = infer_config(state_dict)
    except CheckpointError as exc:
        return f"not a ViT Segment Anything state dict, nor a TinyViT one ({exc})"
    name = config_name(config)
    if name is not None:
        return name
    if config.encoder_type == "tiny_vit":
        return (
            f"a custom TinyViT (stage widths {list(config.encoder_widths)}, depths "
            f"{list(config.encoder_stage_depths)})"
        )
    return (
        f"a custom ViT (embed dim {config.encoder_embed_dim}, depth {config.encoder_depth}, "
        f"image size {config.image_size})"
    )


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = len(keys) - _MAX_LISTED
    return shown + (f" … and {more} more" if more > 0 else "")


def fit_problems(
    shapes: Mapping[str, tuple[int, ...]],
    state_dict: Mapping[str, torch.Tensor],
    *,
    theirs: str = "checkpoint",
    ours: str = "model",
) -> list[str]:
    """What keeps ``state_dict`` from fitting a model whose tensors have ``shapes`` (empty: it fits).

    Parameters
    ----------
    shapes
        The model's state-dict keys and tensor shapes.
    state_dict
        The weights (only their keys and shapes are looked at).
    theirs, ours
        How the weights and the model are called in the listing of mismatched shapes.

    Returns
    -------
    list of str
        Up to three phrases: missing keys, unexpected keys, shape mismatches.
    """
    missing = sorted(set(shapes) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(shapes))
    mismatched = sorted(
        f"{k} ({theirs} {tuple(state_dict[k].shape)}, {ours} {shapes[k]})"
        for k in set(shapes) & set(state_dict)
        if shapes[k] != tuple(state_dict[k].shape)
    )
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listing(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listing(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches ({len(mismatched)}): {_listing(mismatched)}")
    return parts


def _misfit_error(
    wanted: str, state_dict: Mapping[str, torch.Tensor], parts: list[str], source: str
) -> CheckpointError:
    found = describe_architecture(state_dict)
    suggestion = (
        f"; the weights look like {found!r} — use model={found!r}"
        if found in CONFIGS
        else f"; the weights look like {found}"
    )
    return CheckpointError(f"{source} does not fit {wanted!r}: " + "; ".join(parts) + suggestion)


def check_fits(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Raise unless every key of ``state_dict`` exists in ``model`` with the same shape, and back.

    ``model`` may live on the ``meta`` device (shapes only, nothing allocated).

    Raises
    ------
    CheckpointError
        Listing missing, unexpected and shape-mismatched keys, and naming the architecture the
        weights belong to.
    """
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    parts = fit_problems(shapes, state_dict)
    if parts:
        raise _misfit_error(getattr(model, "name", "the requested model"), state_dict, parts, source)


def load_state_dict_strict(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Copy ``state_dict`` into ``model``; every key must exist on both sides with the same shape.

    Raises
    ------
    CheckpointError
        Listing missing, unexpected and shape-mismatched keys, and naming the architecture the
        weights belong to.
    """
    check_fits(model, state_dict, source=source)
    model.load_state_dict(dict(state_dict), strict=True)


def save_safetensors(
    model: torch.nn.Module,
    path: str | Path,
    *,
    config: SamConfig,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model``'s state dict as safetensors with the architecture in the metadata.

    A model with an instance decoder keeps it (keys ``instance_decoder.*``, its architecture under
    :data:`DECODER_METADATA_KEY`).

    ``dtype`` (e.g. ``torch.float16``) converts floating-point tensors to shrink the file.
    """
    from safetensors.torch import save_file

    tensors = {}
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu()
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[key] = tensor.contiguous()
    meta = {_CONFIG_METADATA_KEY: json.dumps(config.to_dict())}
    decoder = getattr(model, "instance_decoder", None)
    if decoder is not None:
        meta[DECODER_METADATA_KEY] = json.dumps(decoder.config.to_dict())
    name = getattr(model, "name", None)
    if isinstance(name, str) and name:
        meta["napari_sam_name"] = name
    meta.update(metadata or {})
    path = Path(path)
    save_file(tensors, str(path), metadata=meta)
    return path


# ----------------------------------------------------------------------------------------------------------
# SAM 2

#: A key every SAM 2 state dict has (and no SAM 1 one).
SAM2_KEY = "image_encoder.trunk.patch_embed.proj.weight"


def is_sam2_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether ``state_dict`` holds a SAM 2 model (a Hiera trunk and memory modules)."""
    return SAM2_KEY in state_dict and "memory_attention.norm.weight" in state_dict


def _sam2_shape_fields(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The :class:`~napari_sam.model.sam2.configs.Sam2Config` fields that the tensor shapes show."""
    trunk = "image_encoder.trunk."
    blocks = _indices(state_dict, trunk + "blocks.")
    if not blocks or blocks != list(range(len(blocks))):
        raise CheckpointError(f"this does not look like a SAM 2 checkpoint: trunk blocks {blocks}")
    # the first block of every stage after the first changes the width (it has a projection)
    starts = [0] + [i for i in blocks if f"{trunk}blocks.{i}.proj.weight" in state_dict]
    stages = tuple(b - a for a, b in zip(starts, [*starts[1:], len(blocks)], strict=True))
    pos = _require(state_dict, trunk + "pos_embed")  # (1, C, bh, bw)
    window = _require(state_dict, trunk + "pos_embed_window")  # (1, C, w, w)
    attn_layers = _indices(state_dict, "memory_attention.layers.")
    return {
        "hiera_embed_dim": int(_require(state_dict, SAM2_KEY).shape[0]),
        "hiera_stages": stages,
        "hiera_window_pos_embed_bkg_spatial_size": (int(pos.shape[2]), int(pos.shape[3])),
        "window_0": int(window.shape[2]),
        "d_model": int(_require(state_dict, "no_mem_embed").shape[-1]),
        "mem_dim": int(_require(state_dict, "maskmem_tpos_enc").shape[-1]),
        "num_maskmem": int(state_dict["maskmem_tpos_enc"].shape[0]),
        "mem_attn_num_layers": len(attn_layers),
        "mem_attn_dim_feedforward": int(
            _require(state_dict, "memory_attention.layers.0.linear1.weight").shape[0]
        ),
        "mem_enc_num_layers": len(_indices(state_dict, "memory_encoder.fuser.layers.")),
    }


def infer_sam2_config(state_dict: Mapping[str, torch.Tensor]) -> tuple[str, Any]:
    """The registered SAM 2 size whose shapes ``state_dict`` has: ``(name, Sam2Config)``.

    Heads, global-attention blocks and window sizes leave no trace in the shapes, so only the
    registered sizes (the official sam2.1 ones) are recognised; other SAM 2 weights need their
    :class:`~napari_sam.model.sam2.configs.Sam2Config` passed to ``build_sam``.

    Raises
    ------
    CheckpointError
        Not a SAM 2 state dict, or one of no registered size (the message gives its shapes).
    """
    from .sam2.configs import SAM2_CONFIGS

    found = _sam2_shape_fields(state_dict)
    for name, config in SAM2_CONFIGS.items():
        known = {key: getattr(config, key) for key in found if key != "window_0"}
        known["window_0"] = config.hiera_window_spec[0]
        if known == found:
            return name, config
    shown = ", ".join(f"{k}={v!r}" for k, v in found.items())
    raise CheckpointError(
        f"SAM 2 weights of no registered size ({shown}); registered: {', '.join(SAM2_CONFIGS)}. "
        "Pass the architecture: build_sam(Sam2Config(...), checkpoint=path)"
    )
