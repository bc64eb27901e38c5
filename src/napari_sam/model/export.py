"""Write a model in micro-sam's checkpoint format (or ours), so that fine-tuned models travel back.

micro-sam reads a model file with ``torch.load`` and takes ``state["model_state"]`` when the file has
that key (dropping a ``sam.`` prefix), else the whole file, as the Segment Anything state dict; its
instance decoder is ``state["decoder_state"]`` (micro-sam's ``get_predictor_and_decoder``), or a
``<name>_decoder.pt`` file holding the bare decoder state dict (its model zoo). Nothing else in the
file is read: the architecture comes from ``model_type`` and is checked against the tensors' shapes.

What :func:`export_model` writes for ``format="micro_sam"``:

- a model with an instance decoder, ``decoder="inside"`` (default): ``{"model_state": <SAM keys>,
  "decoder_state": <decoder keys>}`` — what micro-sam's ``export_custom_sam_model(...,
  with_segmentation_decoder=True)`` writes;
- ``decoder="beside"``: the bare SAM state dict at ``path`` and the decoder's at
  ``<stem>_decoder.pt`` beside it, as micro-sam's model zoo ships them;
- a model without one: the bare SAM state dict (what the official files and micro-sam's exports
  without a decoder hold).

Every floating-point tensor is written as float32 (micro-sam's models are float32); keys are the
official Segment Anything ones. micro-sam builds ``vit_b`` / ``vit_l`` / ``vit_h`` (and ``vit_t``
with MobileSAM installed) only, and its decoder with 64 initial features and 3 output maps; a model
of another size is written all the same (napari-sam reads it; micro-sam refuses it). The nano model is
refused: it has no counterpart in micro-sam (its encoder's keys are not SAM's), and a file in
micro-sam's format that micro-sam cannot read would only mislead — ``format="napari_sam"`` writes it
in our safetensors format.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import save_safetensors
from .instance_checkpoint import split_instance_decoder
from .sam import Sam

__all__ = ["EXPORT_FORMATS", "ExportedModel", "export_model"]

#: The formats :func:`export_model` writes.
EXPORT_FORMATS = ("micro_sam", "napari_sam")
#: Where the instance decoder goes in micro-sam's format.
DECODER_PLACES = ("inside", "beside", "none")
#: The decoder layout micro-sam's ``get_unetr`` builds (it passes no other sizes to torch_em's UNETR).
_MICRO_SAM_DECODER = {"initial_features": 64, "out_channels": 3, "full_resolution": True}


@dataclass(frozen=True)
class ExportedModel:
    """The files :func:`export_model` wrote: the model and, with ``decoder="beside"``, its decoder."""

    weights: Path
    decoder: Path | None = None


def _float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        key: (value.float() if value.is_floating_point() else value).detach().cpu().contiguous().clone()
        for key, value in state.items()
    }


def _save(obj: object, path: Path) -> None:
    """``torch.save`` through a temporary file, so a file at ``path`` is always whole."""
    partial = path.with_name(f".{path.name}.partial")
    torch.save(obj, partial)
    partial.replace(path)


def _micro_sam_differences(sam: Sam) -> list[str]:
    """How micro-sam would not read ``sam``'s file as napari-sam does (empty: it reads it the same)."""
    from .configs import CONFIGS, config_name

    found = []
    name = config_name(sam.config)
    if name not in CONFIGS or name == "nano":
        found.append(
            f"the architecture ({sam.config.encoder_type}, embed dim {sam.config.encoder_embed_dim}, depth "
            f"{sam.config.encoder_depth}) is none of micro-sam's vit_t / vit_b / vit_l / vit_h: micro-sam "
            "will refuse the file"
        )
    decoder = sam.instance_decoder
    if decoder is None:
        return found
    layout = {key: getattr(decoder.config, key) for key in _MICRO_SAM_DECODER}
    if layout != _MICRO_SAM_DECODER:
        found.append(
            f"the instance decoder's layout {layout} is not the one micro-sam builds {_MICRO_SAM_DECODER}: "
            "micro-sam's get_predictor_and_decoder will refuse it"
        )
    if not decoder.config.batch_statistics:
        found.append(
            "the instance decoder normalises with its running statistics (trained by napari-sam), but "
            "micro-sam runs every decoder with each image's own batch statistics, and so does napari-sam "
            "reading a micro-sam file: its maps will differ from this model's (keep the .safetensors file "
            "for napari-sam)"
        )
    return found


def export_model(
    sam: Sam,
    path: str | Path,
    *,
    format: str = "micro_sam",
    decoder: str = "inside",
) -> ExportedModel:
    """Write ``sam`` (weights and instance decoder) to ``path`` in micro-sam's format or ours.

    Parameters
    ----------
    sam
        The model: loaded, fine-tuned (``napari_sam.train``) or built; on any device, in any
        floating-point precision.
    path
        The file to write (``.pt`` for micro-sam's format, ``.safetensors`` for ours); its folder must
        exist. An existing file is replaced.
    format
        ``"micro_sam"`` (default: a ``torch.save`` file micro-sam's ``get_sam_model`` /
        ``get_predictor_and_decoder`` load, and so does :func:`~napari_sam.model.build_sam`) or
        ``"napari_sam"`` (our safetensors with the architecture in its metadata, float32; the only
        format for the nano model).
    decoder
        micro-sam's format only: ``"inside"`` (default: ``decoder_state`` in the same file),
        ``"beside"`` (``<stem>_decoder.pt`` next to ``path``, as micro-sam's zoo ships its models) or
        ``"none"`` (the Segment Anything weights alone). Ignored without an instance decoder.

    Returns
    -------
    ExportedModel
        The paths written.

    Raises
    ------
    ValueError
        An unknown ``format`` or ``decoder``; the nano model in micro-sam's format (see the module
        docstring); ``path`` is a folder.
    FileNotFoundError
        ``path``'s folder does not exist.

    Warns
    -----
    UserWarning
        An architecture or decoder layout micro-sam does not build, or a decoder that micro-sam would
        run differently (see :func:`_micro_sam_differences`; the file is written all the same).

    Examples
    --------
    >>> from napari_sam.model import SamConfig, build_sam
    >>> from napari_sam.model.export import export_model
    >>> tiny = SamConfig(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2,
    ...                  encoder_global_attn_indexes=(1,), image_size=64, prompt_embed_dim=32,
    ...                  decoder_mlp_dim=64, iou_head_hidden_dim=32)
    >>> import tempfile, warnings, pathlib, torch
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")  # not a size micro-sam builds
    ...     written = export_model(build_sam(tiny), folder / "tiny.pt")
    >>> state = torch.load(written.weights, weights_only=True)
    >>> "image_encoder.patch_embed.proj.weight" in state, written.decoder
    (True, None)
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if decoder not in DECODER_PLACES:
        raise ValueError(f"decoder must be one of {DECODER_PLACES}, got {decoder!r}")
    if not isinstance(sam, Sam):
        raise TypeError(f"sam must be a napari_sam Sam model, got {type(sam).__name__}")
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"path {path} is a folder; give the file to write (e.g. {path / 'model.pt'})")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of {path} does not exist")
    if format == "napari_sam":
        save_safetensors(sam, path, config=sam.config, dtype=torch.float32)
        return ExportedModel(path)
    if sam.config.encoder_type == "nano":
        raise ValueError(
            "the nano model has no counterpart in micro-sam (its encoder is ours, its keys are not "
            "Segment Anything's), so micro-sam could not read it: export it with format='napari_sam' "
            "(a .safetensors file napari-sam and build_sam read), or fine-tune a vit_b / vit_l / vit_h "
            "model for micro-sam"
        )
    for difference in _micro_sam_differences(sam):
        warnings.warn(difference, UserWarning, stacklevel=2)
    model_state, decoder_state = split_instance_decoder(sam.state_dict())
    model_state = _float32(model_state)
    if decoder_state is None or decoder == "none":
        _save(model_state, path)
        return ExportedModel(path)
    decoder_state = _float32(decoder_state)
    if decoder == "beside":
        beside = path.with_name(f"{path.stem}_decoder.pt")
        _save(decoder_state, beside)
        _save(model_state, path)
        return ExportedModel(path, beside)
    _save({"model_state": model_state, "decoder_state": decoder_state}, path)
    return ExportedModel(path)
