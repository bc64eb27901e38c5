"""The generators' output is pinned bit for bit: tests and benchmark figures depend on their seeds.

The digests were computed from the generator before it was split into modules; a change to any of them
means a changed image for the same seed (a change of numpy's random streams also shows here).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pytest

from napari_sam.data.synthetic import cells_2d, generate, nuclei_2d, nuclei_3d, preset


def _digest(*arrays: np.ndarray) -> str:
    """The first 16 hex digits of the sha256 of each array's dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _sample(name: str, seed: int, **overrides: object) -> tuple[np.ndarray, ...]:
    sample = generate(preset(name, **overrides), seed=seed)
    arrays = (sample.image, sample.labels)
    return arrays if sample.cells is None else (*arrays, sample.cells)


CASES: dict[str, tuple[Callable[[], tuple[np.ndarray, ...]], str]] = {
    "nuclei_2d": (lambda: nuclei_2d((96, 128), n_objects=8, seed=1), "1d7aa537f08251ab"),
    "nuclei_2d_uint8_radius": (
        lambda: nuclei_2d((64, 64), n_objects=4, radius=(4, 9), dtype="uint8", seed=2),
        "43ada50bfddb4f4a",
    ),
    "nuclei_3d": (lambda: nuclei_3d((8, 48, 48), n_objects=5, seed=3), "abe6e0105e4d00b9"),
    "cells_2d_cytoplasm": (lambda: cells_2d((80, 80), n_objects=5, seed=4), "3ec02b38b6f436f5"),
    "cells_2d_membrane_float32": (
        lambda: cells_2d((80, 80), n_objects=5, second_channel="membrane", dtype=np.float32, seed=5),
        "413a2654a6ca9882",
    ),
    "nuclei_dense": (lambda: _sample("nuclei_dense", 6, shape=(96, 96)), "f1a84d6ba00e36f1"),
    "wide_3d": (lambda: _sample("wide", 7, shape=(8, 64, 64), count=(3, 6)), "7be9352d0e9497cf"),
    "wide_2ch_membrane": (
        lambda: _sample("wide", 9, shape=(128, 128), channels=2, second_channel="membrane"),
        "e4d1385dd9f52c0f",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_generated_arrays_are_unchanged(name: str) -> None:
    make, expected = CASES[name]
    arrays = make()
    assert int(arrays[1].max()) > 0, "a pinned case should contain objects"
    assert _digest(*arrays) == expected
