"""``load_model``: a ready-to-use :class:`~napari_sam.model.Sam` from a name, a path or a model.

SAM 2 models (:class:`~napari_sam.model.Sam2`) run in one engine path only, memory propagation through a
stack (:mod:`napari_sam.engine.volume.memory_propagation`): :func:`load_any_model` loads either kind,
:func:`load_model` (every SAM 1 path) refuses SAM 2 with a message that says where it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..model import CONFIGS, OFFICIAL_WEIGHTS, Sam, Sam2, build_sam, fetch_sam2_weights, fetch_weights
from ..model.checkpoint import weights_fingerprint
from ..model.identity import state_tensors
from ..model.instance_checkpoint import decoder_beside
from ..model.zoo import ZOO_MODELS, fetch_zoo_model, model_names
from .device import DeviceLike, resolve_device
from .lru import LRU

ModelLike = str | Path | Sam

#: key → (model, the id of its weights when loaded): the last two models loaded
_CACHE: LRU[tuple[Any, ...], tuple[Sam | Sam2, str | None]] = LRU(2)


def _cache_key(model: str | Path, device: torch.device) -> tuple[Any, ...]:
    from ..model.sam2.configs import SAM2_CONFIGS

    if isinstance(model, str) and (model in CONFIGS or model in ZOO_MODELS or model in SAM2_CONFIGS):
        return ("name", model, str(device))
    path = Path(model).expanduser()
    if not path.is_file():
        return ("missing", str(path), str(device))
    stat = path.stat()
    beside = decoder_beside(path)  # a decoder file put beside the SAM file later counts
    decoder = (str(beside), beside.stat().st_size, beside.stat().st_mtime_ns) if beside else None
    return ("path", str(path.resolve()), stat.st_size, stat.st_mtime_ns, decoder, str(device))


#: what the SAM 1 paths of the engine say of a SAM 2 model
SAM2_NOT_YET = (
    "is a SAM 2 model: in this version SAM 2 runs on stacks with prompts — segment(stack, points= / "
    "boxes=, propagate=True) and napari_sam.engine.volume.memory_propagation.propagate_memory() "
    "(memory propagation); 2D segment(), compute_embeddings(), automatic segmentation, refining masks= "
    "and the napari widgets run SAM 1 models only (nano, vit_b/l/h, vit_t, micro-sam's models)"
)


def is_sam2(model: Any) -> bool:
    """Whether ``model`` is a loaded SAM 2 model or names a SAM 2.1 size (a file is not opened here:
    :func:`load_any_model` tells from its weights)."""
    from ..model.sam2.configs import SAM2_CONFIGS

    return isinstance(model, Sam2) or (isinstance(model, str) and model in SAM2_CONFIGS)


def open_model(model: str | Path) -> Sam:
    """A new (uncached) SAM 1 model instance from a name or a weights path, on the CPU.

    Raises
    ------
    NotImplementedError
        ``model`` is a SAM 2 model (see :data:`SAM2_NOT_YET`; :func:`open_any_model` opens it).
    """
    if is_sam2(model):  # refused before anything is fetched
        raise NotImplementedError(f"{model!r} {SAM2_NOT_YET}")
    built = open_any_model(model)
    if not isinstance(built, Sam):
        raise NotImplementedError(f"{str(model)!r} {SAM2_NOT_YET}")
    return built


def open_any_model(model: str | Path) -> Sam | Sam2:
    """A new (uncached) SAM 1 or SAM 2 model instance from a name or a weights path, on the CPU."""
    from ..model.sam2.configs import SAM2_CONFIGS

    if isinstance(model, str) and model in SAM2_CONFIGS:
        sam2 = build_sam(model, checkpoint=fetch_sam2_weights(model))
        sam2.name = model
        return sam2
    if isinstance(model, str) and model == "nano":
        return _load_nano()
    if isinstance(model, str) and model in OFFICIAL_WEIGHTS:
        return build_sam(model, checkpoint=fetch_weights(model))
    if isinstance(model, str) and model in ZOO_MODELS:
        return _load_zoo_model(model)
    if isinstance(model, str) and not _may_be_a_file(model):
        raise ValueError(
            f"unknown model {model!r}: expected one of {', '.join(model_names())}, "
            f"{', '.join(SAM2_CONFIGS)}, or the path of a weights file (.pth / .pt / .safetensors)"
        )
    return build_sam(model)


def _may_be_a_file(text: str) -> bool:
    """Whether ``text`` (not a model name) reads as a file path: it exists, has a folder or a suffix."""
    return Path(text).expanduser().exists() or "/" in text or "\\" in text or bool(Path(text).suffix)


def _load_zoo_model(name: str) -> Sam:
    """One of micro-sam's models (see :mod:`napari_sam.model.zoo`): its files found or downloaded and
    checked, built on its base architecture with its instance decoder attached."""
    entry = ZOO_MODELS[name]
    if entry.architecture not in CONFIGS:
        raise NotImplementedError(
            f"{name!r} is built on the {entry.architecture} architecture, which this version of "
            f"napari-sam does not have yet (it has {', '.join(CONFIGS)})"
        )
    files = fetch_zoo_model(entry)
    # no published decoder: a decoder_state inside the weights file is still attached (None)
    decoder: Path | None = files.decoder
    model = build_sam(entry.architecture, checkpoint=files.weights, instance_decoder=decoder)
    model.name = name
    return model


def _load_nano() -> Sam:
    """The nano model shipped in the package, checked against its registered sha256."""
    from ..errors import WeightsUnavailableError
    from ..model.registry import (
        NANO_DECODER_SHA256,
        NANO_SHA256,
        shipped_nano_decoder_path,
        shipped_nano_path,
        verify_sha256,
    )

    def checked(path: Path, sha256: str, what: str, other: str = "") -> Path:
        if not path.is_file():
            raise WeightsUnavailableError(
                f"the shipped {what} file is missing from this installation ({path}); reinstall "
                f"napari-sam-pipeline{other}"
            )
        verify_sha256(path, sha256)
        return path

    other_model = ", or pass model='vit_b' / a weights path"
    path = checked(shipped_nano_path(), NANO_SHA256, "nano weights", other_model)
    decoder: Path | bool = False  # only a registered, checked decoder is attached
    if NANO_DECODER_SHA256 is not None:
        decoder = checked(shipped_nano_decoder_path(), NANO_DECODER_SHA256, "nano instance decoder")
    model = build_sam(path, instance_decoder=decoder)
    model.name = "nano"
    return model


def load_model(model: ModelLike = "nano", device: DeviceLike = "auto") -> Sam:
    """Load a model for inference, in eval mode, on ``device``.

    Parameters
    ----------
    model
        ``"nano"`` (shipped with the package, works offline), ``"vit_b"``, ``"vit_l"``, ``"vit_h"``
        (official weights, found locally or downloaded and sha256-checked), one of micro-sam's
        models (``"vit_b_lm"``, ``"vit_t_em_organelles"`` … — see
        :data:`napari_sam.model.zoo.ZOO_MODELS`; found locally or downloaded and xxh128-checked, with
        micro-sam's instance decoder attached where it publishes one), the path of a weights file
        (``.pth`` / ``.pt`` / ``.safetensors``; architecture inferred), or a :class:`Sam` (returned as
        is, moved to ``device`` unless it is ``"auto"``).
    device
        ``"auto"`` (CUDA → MPS → CPU), ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.

    Returns
    -------
    Sam
        The last two models loaded are kept in memory, so repeated calls are cheap and return the
        same object — unless that object was changed since (its weights, e.g. by an optimizer step
        or through ``parameter.data``; its device; training mode): then the file is loaded again
        and the changed object is left to its owner. Changes through the tensors themselves are
        always seen; changes through ``.data`` are seen by the content digest
        (:func:`~napari_sam.model.identity.content_digest`: one changed value, values swapped or a
        pair of opposite changes within a block all count), which misses only a change that keeps
        both exact sums of every 4 KiB block (three or more values changed in a balanced pattern).

    Examples
    --------
    >>> import napari_sam as ns
    >>> sam = ns.load_model("nano", device="cpu")
    >>> sam.config.encoder_type, sam.image_size
    ('nano', 1024)
    >>> ns.load_model("nano", device="cpu") is sam  # kept in memory
    True
    """
    if is_sam2(model):  # refused before anything is fetched
        raise NotImplementedError(f"{getattr(model, 'name', model)!r} {SAM2_NOT_YET}")
    loaded = load_any_model(model, device)
    if not isinstance(loaded, Sam):
        raise NotImplementedError(f"{getattr(loaded, 'name', str(model))!r} {SAM2_NOT_YET}")
    return loaded


def load_any_model(model: ModelLike | Sam2 = "nano", device: DeviceLike = "auto") -> Sam | Sam2:
    """:func:`load_model` for SAM 1 and SAM 2 models alike (names, paths, or a loaded model).

    A SAM 2 model kept in memory is reused while it keeps its device, eval mode and recorded weights
    sha256; changes made to its parameters in place are not detected (unlike a SAM 1 model's).

    Examples
    --------
    >>> from napari_sam.model import build_sam
    >>> from napari_sam.model.sam2.configs import tiny_test_config
    >>> sam2 = load_any_model(build_sam(tiny_test_config()), device="cpu")
    >>> type(sam2).__name__, sam2.training
    ('Sam2', False)
    """
    if isinstance(model, (Sam, Sam2)):
        if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
            return model.eval()
        return model.to(resolve_device(device)).eval()
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a name, a path, a Sam or a Sam2, got {type(model).__name__}")
    dev = resolve_device(device)
    key = _cache_key(model, dev)
    entry = _CACHE.get(key)
    if entry is not None and _as_loaded(*entry, dev):
        return entry[0]
    loaded = open_any_model(model).to(dev).eval()
    _CACHE.put(key, (loaded, loaded.weights_sha256))
    return loaded


def _as_loaded(model: Sam | Sam2, weights_id: str | None, device: torch.device) -> bool:
    """Whether a kept model is still as :func:`load_model` made it: same weights, device and mode."""
    if isinstance(model, Sam2):
        here = next(model.parameters()).device
        same = here.type == device.type and (device.index is None or here.index in (None, device.index))
        return same and not model.training and weights_id is not None and model.weights_sha256 == weights_id
    here = model.device
    same_device = here.type == device.type and (device.index is None or here.index in (None, device.index))
    if model.training or not same_device or weights_id is None:
        return False
    return model.weights_id(check_content=True) == weights_id


def model_weights_id(model: Sam, *, check_content: bool = True) -> str:
    """The sha256 identifying the weights ``model`` holds now.

    The sha256 of the file the model was loaded from while the model still holds that file's
    weights; once they changed (an optimizer step, ``load_state_dict``, ``parameter.data.add_()``
    …), a fingerprint of the tensors (:func:`~napari_sam.model.checkpoint.weights_fingerprint` of
    :func:`~napari_sam.model.identity.state_tensors`: every parameter and buffer, persistent or not,
    so ``pixel_mean`` / ``pixel_std`` count too), computed once per change. Embedding caches record
    this id, and embeddings are only decoded by a model with the same id.

    Parameters
    ----------
    model
        The model.
    check_content
        True (default): also read every tensor once to catch changes made through
        ``parameter.data``, whose version counter PyTorch does not share with the parameter (on one
        CPU thread about 20 ms for nano, 110 ms for vit_b, 0.7 s for vit_h). False: the cheap check
        only (about a millisecond); for hot paths such as ``predict``. See
        :mod:`napari_sam.model.identity` for what each check sees.

    Returns
    -------
    str
        64 hex digits.
    """
    weights_id = model.weights_id(check_content=check_content)
    if weights_id is None:
        weights_id = weights_fingerprint(state_tensors(model))
        model.weights_sha256 = weights_id
    return weights_id
