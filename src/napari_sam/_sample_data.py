"""Sample data for napari (File > Open Sample > napari-sam): synthetic nuclei from our generator.

The images are made on the fly by :mod:`napari_sam.data.synthetic` (fixed seeds, so always the same);
their exact labels come along as a hidden "ground truth" layer to compare with.
"""

from __future__ import annotations

from typing import Any

from .data.synthetic import nuclei_2d, nuclei_3d

#: the sample images' shapes and seeds: keywords of nuclei_2d / nuclei_3d (tests regenerate the truth
#: from these)
NUCLEI_2D: dict[str, Any] = {"shape": (512, 512), "n_objects": 30, "seed": 0}
NUCLEI_3D: dict[str, Any] = {"shape": (24, 512, 512), "n_objects": 60, "diameter": (24.0, 60.0), "seed": 0}


def _layers(image: Any, truth: Any, name: str) -> list[tuple[Any, dict[str, Any], str]]:
    return [
        (image, {"name": name}, "image"),
        (truth, {"name": f"{name} ground truth", "visible": False, "opacity": 0.4}, "labels"),
    ]


def nuclei_2d_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """A 512 × 512 uint16 fluorescence-like image of 30 nuclei, and its true labels (hidden)."""
    image, truth = nuclei_2d(**NUCLEI_2D)
    return _layers(image, truth, "nuclei")


def nuclei_3d_sample() -> list[tuple[Any, dict[str, Any], str]]:
    """A 24 × 512 × 512 uint16 stack of 60 nuclei (Z, Y, X), and its true labels (hidden)."""
    image, truth = nuclei_3d(**NUCLEI_3D)
    return _layers(image, truth, "nuclei 3D")
