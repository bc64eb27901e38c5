"""Running the image encoder: precision (fp32 / bf16 / fp16 autocast) and opt-in ``torch.compile``.

:func:`encode_images` runs the encoder on a batch of prepared model inputs. Compiling the encoder takes
from tens of seconds (GPU) to minutes (CPU) the first time. The inductor's kernel and graph caches are
pointed at a folder of the napari-sam cache (``<cache>/inductor``, ``NAPARI_SAM_CACHE`` overrides the
cache), so later processes with the same model, input shape, batch size and precision start in seconds.
:func:`warm_up` runs that first compilation up front, e.g. before a batch job's progress bar starts.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from ...model import Sam
from ..types import Precision, check_precision

__all__ = [
    "COMPILE_MODES",
    "Precision",
    "autocast",
    "check_precision",
    "compiled_encoder",
    "encode_images",
    "inductor_cache_dir",
    "resolve_precision",
    "warm_up",
]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"``, ``"bf16"`` or ``"fp16"`` for ``precision`` on ``device``.

    ``"auto"`` is bf16 on CUDA devices that support it (fp16 on older ones) and fp32 elsewhere: on
    CPUs reduced precision is rarely faster and changes results. Names are checked by
    :func:`check_precision` (any case; aliases such as ``"bfloat16"`` and ``"half"``).

    Raises
    ------
    ValueError
        An unknown name, or fp16 / bf16 where this torch build cannot autocast to it.
    """
    name = check_precision(precision)
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


def encode_images(
    sam: Sam,
    model_inputs: torch.Tensor,
    *,
    precision: str = "auto",
    compile: bool = False,
    compile_mode: str = "default",
) -> torch.Tensor:
    """Run the image encoder on a batch of prepared model inputs.

    Parameters
    ----------
    sam
        The model (its device is used).
    model_inputs
        ``(B, 3, S, S)`` float32, normalised and padded (see
        :func:`napari_sam.engine.preprocess.prepare_image`); moved to the model's device (through
        pinned memory for CUDA, so the copy overlaps other work).
    precision
        ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (see :func:`resolve_precision`).
    compile, compile_mode
        Use the ``torch.compile``-d encoder (opt-in; see :mod:`napari_sam.engine.embed.encoder`).

    Returns
    -------
    torch.Tensor
        ``(B, 256, S / 16, S / 16)`` float32 features on the model's device.
    """
    device = sam.device
    resolved = resolve_precision(precision, device)
    if device.type == "cuda" and model_inputs.device.type == "cpu":
        model_inputs = model_inputs.pin_memory()
    inputs = model_inputs.to(device, non_blocking=True)
    encoder: Any = sam.image_encoder
    if compile:
        encoder = compiled_encoder(sam, mode=compile_mode)
    with torch.inference_mode(), autocast(device, resolved):
        features = encoder(inputs)
    return features.float()


_COMPILED_ATTR = "_napari_sam_compiled_encoder"
_LOCK = threading.Lock()

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def inductor_cache_dir() -> Path:
    """Where compiled kernels are kept: ``TORCHINDUCTOR_CACHE_DIR`` if set, else ``<cache>/inductor``."""
    explicit = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if explicit:
        return Path(explicit)
    from ...model.registry import cache_dir

    return cache_dir() / "inductor"


def compiled_encoder(sam: Sam, *, mode: str = "default") -> Callable[[torch.Tensor], torch.Tensor]:
    """``sam.image_encoder`` compiled with ``torch.compile`` (once per model, then reused).

    Parameters
    ----------
    sam
        The model; the compiled function is remembered on it (the weights are shared, not copied).
    mode
        A ``torch.compile`` mode, one of :data:`COMPILE_MODES`.

    Returns
    -------
    Callable
        ``(B, 3, S, S)`` float32 → ``(B, 256, S/16, S/16)``; same results as the plain encoder up to
        floating-point rounding.

    Raises
    ------
    ValueError
        An unknown ``mode``.
    RuntimeError
        This torch build cannot compile here (e.g. no C++ compiler for the CPU backend); the
        message says to run without ``compile``.
    """
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    with _LOCK:
        existing = getattr(sam, _COMPILED_ATTR, None)
        if existing is not None and existing[0] == mode:
            return existing[1]
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache_dir()))
        try:
            compiled = torch.compile(sam.image_encoder, mode=mode, dynamic=False)
        except Exception as exc:  # torch raises several types here, depending on the backend
            raise RuntimeError(
                f"torch.compile is not usable here ({type(exc).__name__}: {exc}); run without compile"
            ) from exc
        object.__setattr__(sam, _COMPILED_ATTR, (mode, compiled))
        return compiled


def warm_up(
    sam: Sam,
    *,
    batch_size: int = 1,
    precision: str = "auto",
    compile: bool = True,
    mode: str = "default",
) -> float:
    """Run the encoder once on a zero batch so that compilation (and cuDNN / oneDNN autotuning) is
    done before real work starts; return the seconds it took.

    Parameters
    ----------
    sam
        The model (its device is used).
    batch_size
        The batch size later calls will use (compiled graphs are specialised to it).
    precision
        As in :func:`encode_images`.
    compile, mode
        Compile the encoder first (see :func:`compiled_encoder`).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    start = time.perf_counter()
    dummy = torch.zeros(batch_size, 3, sam.image_size, sam.image_size)
    encode_images(sam, dummy, precision=precision, compile=compile, compile_mode=mode)
    if sam.device.type == "cuda":
        torch.cuda.synchronize(sam.device)
    return time.perf_counter() - start
