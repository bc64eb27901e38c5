"""Choosing the torch device: ``"auto"`` picks CUDA, then Apple MPS, then the CPU."""

from __future__ import annotations

import torch

DeviceLike = str | torch.device | None


def available_devices() -> list[str]:
    """Device names usable on this machine, best first (e.g. ``["cuda:0", "cpu"]``)."""
    names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        names.append("mps")
    names.append("cpu")
    return names


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """Turn ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a torch.device into one
    this machine has.

    Raises
    ------
    ValueError
        An unknown name, or a device this machine does not have (the message lists those it has).
    """
    if device is None or (isinstance(device, str) and device.strip().lower() == "auto"):
        return torch.device(available_devices()[0])
    try:
        dev = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from exc
    if dev.type == "cpu":
        return torch.device("cpu")  # "cpu:1" is the same CPU; keep one spelling so devices compare
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = 0 if dev.index is None else dev.index
        if index >= count:
            raise ValueError(
                f"device={device!r} is not available: this machine has {count} CUDA device(s) "
                f"(torch {torch.__version__}); available: {available_devices()}"
            )
        return torch.device("cuda", index)
    if dev.type == "mps":
        if "mps" not in available_devices():
            raise ValueError(
                f"device={device!r} is not available: this machine has no Apple MPS device; "
                f"available: {available_devices()}"
            )
        return dev
    raise ValueError(f"unsupported device {device!r}; available: {available_devices()}")
