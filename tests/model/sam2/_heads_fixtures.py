"""The heads fixtures shared by test_heads.py and test_memory.py: ``tests/fixtures/sam2/heads`` and the
seeded generators of ``scripts/make_sam2_heads_fixtures.py`` (which imports no reference code)."""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "sam2" / "heads"
SCRIPT = ROOT / "scripts" / "make_sam2_heads_fixtures.py"


@cache
def script() -> ModuleType:
    """The fixture script as a module (its seeded generators)."""
    spec = importlib.util.spec_from_file_location("make_sam2_heads_fixtures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def meta() -> dict[str, Any]:
    """The fixtures' record: configurations, seeds, key listings, input checksums."""
    return json.loads((FIXTURES / "keys.json").read_text())


@cache
def inputs() -> dict[str, torch.Tensor]:
    """The script's inputs, checked against the checksums recorded with the fixtures."""
    made = script().make_inputs()
    checksums = script().input_checksums(made)
    for name, value in meta()["input_checksums"].items():
        assert checksums[name] == pytest.approx(value, rel=1e-12, abs=1e-9), name
    return {k: torch.from_numpy(v) for k, v in made.items()}


def outputs(stem: str) -> dict[str, np.ndarray]:
    """The reference's outputs of one fixture file."""
    return dict(np.load(FIXTURES / f"{stem}.npz"))


def max_abs(ours: torch.Tensor, reference: np.ndarray) -> float:
    """Largest absolute difference of ``ours`` from the reference (shapes must agree)."""
    a = ours.detach().double().numpy()
    assert a.shape == reference.shape, (a.shape, reference.shape)
    return float(np.abs(a - reference.astype(np.float64)).max()) if a.size else 0.0
