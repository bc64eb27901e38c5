"""The training folder: ``checkpoint.pt`` (to resume) and ``history.json`` (to read), written atomically.

A checkpoint holds the trainer's record (weights, optimiser, step, config), the history and the random
generators' states, so a run killed at any point and resumed ends with the same weights as an
uninterrupted run (same seed, device and thread count).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["Checkpoint", "restore_random_state"]


class Checkpoint:
    """``checkpoint.pt`` and ``history.json`` in ``folder`` (made when missing).

    Parameters
    ----------
    folder
        The training output folder.
    device
        Where the training runs (checkpoints are loaded there; CUDA random states are saved from it).
    """

    def __init__(self, folder: str | Path, device: torch.device) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / "checkpoint.pt"
        self.history_path = self.folder / "history.json"
        self.device = device

    def load(self) -> dict[str, Any]:
        """The saved record, or ``{}`` when there is none."""
        if not self.path.is_file():
            return {}
        return torch.load(self.path, map_location=self.device, weights_only=True)

    def history(self, saved: dict[str, Any]) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
        """The logged history and validations of a loaded record (or, for a checkpoint of an older
        version, of ``history.json``)."""
        if "history" in saved:
            loaded = json.loads(saved["history"])
        else:
            loaded = json.loads(self.history_path.read_text()) if self.history_path.is_file() else {}
        return loaded.get("history", []), loaded.get("validations", [])

    def save(
        self,
        trainer_record: dict[str, Any],
        history: list[dict[str, float]],
        validations: list[dict[str, float]],
        recent: list[dict[str, float]],
        rng: np.random.Generator,
    ) -> None:
        """Write the checkpoint (``trainer_record`` plus the history, the figures not logged yet and the
        random states) and ``history.json``, each through a temporary file."""
        payload = {"history": history, "validations": validations}
        record = {
            **trainer_record,
            "history": json.dumps({**payload, "recent": recent}),
            "numpy_rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            record["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        tmp = self.path.with_suffix(".tmp")
        torch.save(record, tmp)
        tmp.replace(self.path)
        tmp = self.folder / "history.json.tmp"
        tmp.write_text(json.dumps(payload, indent=1))
        tmp.replace(self.history_path)


def restore_random_state(
    saved: dict[str, Any], rng: np.random.Generator, device: torch.device
) -> list[dict[str, float]]:
    """Put ``rng`` and torch's generators where a saved run left them; returns the figures it had not
    logged yet (``[]`` for a record without random states)."""
    if "numpy_rng" not in saved:
        return []
    rng.bit_generator.state = json.loads(saved["numpy_rng"])
    torch.set_rng_state(saved["torch_rng"].cpu())
    if device.type == "cuda" and "cuda_rng" in saved:
        torch.cuda.set_rng_state(saved["cuda_rng"].cpu(), device)
    return json.loads(saved["history"]).get("recent", [])
