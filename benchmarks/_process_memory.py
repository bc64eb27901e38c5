"""This process's memory, for the benchmarks that compare peak RSS: /proc readings (Linux), the peak
reset, heap trimming, and the bytes of the tensors an object holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def rss_now_kb() -> dict[str, int]:
    """VmRSS and VmHWM (peak) of this process in KiB, from /proc (empty where there is none)."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0; writing 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def trim_heap() -> None:
    """Give freed heap memory back to the system (glibc), so that what tracking allocates later shows
    as growth instead of reusing pages the set-up freed."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def tensor_bytes(obj: Any, seen: set[int] | None = None) -> int:
    """Bytes of the distinct tensor storages reachable through dicts, sequences and object fields."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        storage = obj.untyped_storage()
        if storage.data_ptr() in seen:
            return 0
        seen.add(storage.data_ptr())
        return int(storage.nbytes())
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple, set)):
        return sum(tensor_bytes(v, seen) for v in obj)
    if hasattr(obj, "__dict__") and not isinstance(obj, (torch.nn.Module, type)):
        return tensor_bytes(vars(obj), seen)
    return 0
