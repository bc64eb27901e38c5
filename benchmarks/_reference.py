"""Set-up shared by the side-by-side benchmarks (run with the reference environment's python).

Importing this module makes the working tree's ``napari_sam`` importable when it is not installed,
imports the official ``segment_anything`` (exiting with instructions when it is missing) and gives
the two implementations the same seeded random weights, so nothing is downloaded.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]

try:
    import napari_sam
except ImportError:  # not installed in this environment: use the working tree
    sys.path.insert(0, str(ROOT / "src"))
    import napari_sam

try:
    import segment_anything
except ImportError as exc:
    raise SystemExit(
        f"this benchmark needs the official segment-anything package ({exc}); run it with the "
        "reference environment's python: scripts/setup_reference_env.sh, then "
        f".venv-ref/bin/python benchmarks/{Path(sys.argv[0]).name}"
    ) from exc

sys.path.insert(0, str(ROOT / "scripts"))
from make_golden import randomize  # noqa: E402  (the fixtures' seeded weights)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

from napari_sam.model import build_sam  # noqa: E402

__all__ = ["ROOT", "device_name", "napari_sam", "random_pair", "segment_anything"]


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def random_pair(name: str, seed: int, device: torch.device) -> tuple[Any, Any]:
    """The official model ``name`` with seeded random weights, and ours loaded from its state dict."""
    torch.manual_seed(seed)
    official = segment_anything.sam_model_registry[name]().eval()
    randomize(official, seed=seed + 1)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / f"{name}_random.pth"
        torch.save(official.state_dict(), weights)
        ours = build_sam(name, checkpoint=weights)
    return official.to(device), ours.to(device).eval()
