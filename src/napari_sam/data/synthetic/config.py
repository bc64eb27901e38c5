"""The fields of a synthetic-image family and their checks: :class:`ConfigFields`, the base of
:class:`~napari_sam.data.synthetic.SyntheticConfig` (which adds sampling and documents every field).

A range field is a ``(min, max)`` pair (a single number means a fixed value); bad values raise
``ValueError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ranges import Range, as_range

DTYPES = ("uint8", "uint16", "float32")
#: what a fluorescence cell stain shows: filled cell bodies, cell outlines, or either (drawn per image)
SECOND_CHANNELS = ("cytoplasm", "membrane", "mixed")
#: how an object's label boundary is drawn: its shape, or the half maximum of its blurred profile
LABEL_BOUNDARIES = ("shape", "half_max")
#: the contrast mechanism: emitted light, or transmitted light (phase contrast / brightfield)
MODALITIES = ("fluorescence", "labelfree")
#: what a one-channel fluorescence image shows and its labels outline
STAINS = ("nuclei", "cells")

#: ``(low, high)`` limits of each range field (None: unbounded).
RANGE_LIMITS: dict[str, tuple[float | None, float | None]] = {
    "diameter": (1.0, None),
    "size_spread": (0.0, 2.0),
    "aspect": (1.0, 10.0),
    "irregularity": (0.0, 0.5),
    "cluster_probability": (0.0, 1.0),
    "overlap": (-1.0, 0.6),
    "overlap_brightness": (0.0, 1.0),
    "intensity": (0.0, None),
    "edge_falloff": (0.0, 0.95),
    "texture": (0.0, 2.0),
    "nucleoli": (0.0, 20.0),
    "nucleolus_contrast": (-1.0, 5.0),
    "background": (0.0, None),
    "background_variation": (0.0, 1.0),
    "illumination_variation": (0.0, 0.9),
    "haze": (0.0, None),
    "blur": (0.0, 20.0),
    "photons": (0.01, None),
    "read_noise": (0.0, None),
    "cell_extent": (0.0, 10.0),
    "cell_intensity": (0.0, None),
    "z_aspect": (0.05, 10.0),
    "axial_blur": (0.0, 20.0),
    "depth_attenuation": (0.0, 20.0),
    "camera_offset": (0.0, None),
    "vignetting": (0.0, 0.9),
    "saturated": (0.0, 1.0),
    "defocused": (0.0, 20.0),
    "defocused_brightness": (0.0, None),
    "seam": (0.0, 0.9),
    "debris": (0.0, None),
    "labelfree_contrast": (0.0, 2.0),
}


def _as_dtype_name(value: Any) -> str:
    try:
        name = np.dtype(value).name
    except TypeError:
        raise ValueError(f"dtype: unknown dtype {value!r}; use one of {', '.join(DTYPES)}") from None
    if name not in DTYPES:
        raise ValueError(f"dtype: unsupported dtype {name!r}; use one of {', '.join(DTYPES)}")
    return name


def _checked_shape(value: Any) -> tuple[int, ...]:
    """``value`` as ``(rows, cols)`` or ``(planes, rows, cols)`` of positive integers."""
    try:
        shape = tuple(int(s) for s in value)
    except (TypeError, ValueError):
        raise ValueError(f"shape: expected a tuple of 2 or 3 integers, got {value!r}") from None
    if len(shape) not in (2, 3):
        raise ValueError(f"shape: expected (rows, cols) or (planes, rows, cols), got {value!r}")
    if min(shape) < 1:
        raise ValueError(f"shape: every side must be >= 1, got {value!r}")
    return shape


def _checked_z_spacing(value: Any) -> float:
    """``value`` as a positive finite float."""
    try:
        z_spacing = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"z_spacing: expected a positive number, got {value!r}") from None
    if not (math.isfinite(z_spacing) and z_spacing > 0):
        raise ValueError(f"z_spacing: must be a positive number, got {value!r}")
    return z_spacing


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: must be one of {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class ConfigFields:
    """The fields of :class:`~napari_sam.data.synthetic.SyntheticConfig` (documented there), checked."""

    shape: tuple[int, ...] = (512, 512)
    diameter: Range = (10.0, 40.0)
    size_spread: Range = (0.05, 0.25)
    count: Range | None = None
    density: Range | None = (0.4, 3.0)
    aspect: Range = (1.0, 1.6)
    irregularity: Range = (0.0, 0.12)
    cluster_probability: Range = (0.0, 0.4)
    overlap: Range = (-0.05, 0.2)
    overlap_brightness: Range = (0.0, 0.6)
    intensity: Range = (0.25, 1.0)
    edge_falloff: Range = (0.1, 0.5)
    texture: Range = (0.05, 0.3)
    nucleoli: Range = (0, 3)
    nucleolus_contrast: Range = (-0.5, 0.3)
    background: Range = (0.01, 0.12)
    background_variation: Range = (0.0, 0.5)
    illumination_variation: Range = (0.0, 0.3)
    haze: Range = (0.0, 0.15)
    blur: Range = (0.6, 1.8)
    photons: Range = (40.0, 2000.0)
    read_noise: Range = (0.002, 0.02)
    dtype: str = "uint16"
    channels: int = 1
    second_channel: str = "cytoplasm"
    cell_extent: Range = (0.3, 1.0)
    cell_intensity: Range = (0.2, 0.8)
    z_spacing: float = 2.0
    z_aspect: Range = (0.6, 1.0)
    axial_blur: Range = (2.0, 3.0)
    depth_attenuation: Range = (0.0, 0.4)
    min_area: int = 10
    # realism (issue 19): every default switches its feature off, so older configs give the same images
    camera_offset: Range = (0.0, 0.0)
    vignetting: Range = (0.0, 0.0)
    saturated: Range = (0.0, 0.0)
    defocused: Range = (0.0, 0.0)
    defocused_brightness: Range = (0.1, 0.4)
    seam: Range = (0.0, 0.0)
    debris: Range = (0.0, 0.0)
    label_boundary: str = "shape"
    stain: str = "nuclei"
    modality: str = "fluorescence"
    labelfree_contrast: Range = (0.15, 0.4)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "shape", _checked_shape(self.shape))
        for name, (low, high) in RANGE_LIMITS.items():
            set_(self, name, as_range(name, getattr(self, name), low=low, high=high))
        if self.intensity[1] <= 0:
            raise ValueError(f"intensity: max must be > 0, got {self.intensity!r}")
        for name in ("count", "density"):
            if getattr(self, name) is not None:
                set_(self, name, as_range(name, getattr(self, name), low=0.0))
        if self.count is None and self.density is None:
            raise ValueError("count / density: give at least one of them")
        set_(self, "dtype", _as_dtype_name(self.dtype))
        if self.channels not in (1, 2) or isinstance(self.channels, bool):
            raise ValueError(f"channels: must be 1 or 2, got {self.channels!r}")
        _check_choice("second_channel", self.second_channel, SECOND_CHANNELS)
        set_(self, "z_spacing", _checked_z_spacing(self.z_spacing))
        if int(self.min_area) != self.min_area or self.min_area < 1:
            raise ValueError(f"min_area: must be an integer >= 1, got {self.min_area!r}")
        set_(self, "min_area", int(self.min_area))
        _check_choice("label_boundary", self.label_boundary, LABEL_BOUNDARIES)
        _check_choice("stain", self.stain, STAINS)
        _check_choice("modality", self.modality, MODALITIES)
        if self.channels == 2 and (self.stain != "nuclei" or self.modality != "fluorescence"):
            raise ValueError(
                "channels: 2 channels (nuclei + cells) need stain='nuclei' and modality='fluorescence', "
                f"got stain={self.stain!r}, modality={self.modality!r}"
            )

    @property
    def ndim(self) -> int:
        """2 or 3: the number of spatial axes."""
        return len(self.shape)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of all fields (for recording how training data was made)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def check_keys(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """``data`` (from :meth:`to_dict`) as constructor keywords; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SyntheticConfig fields: {', '.join(sorted(unknown))}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
