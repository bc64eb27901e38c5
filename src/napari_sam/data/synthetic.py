"""Synthetic fluorescence-microscopy images with exact instance labels.

The generator draws nuclei-like objects — ellipses / ellipsoids with a smoothly perturbed boundary — places
them sparsely, densely or in touching clusters, and images them like a widefield or confocal microscope:
textured interiors (chromatin speckle, nucleoli), an uneven background and illumination, out-of-focus
haze, a Gaussian point-spread function, then Poisson (photon) and Gaussian (read) noise, and a detector
scale for ``uint8``, ``uint16`` or ``float32`` output. An optional second channel shows a cytoplasm- or
membrane-like signal of a cell grown around each nucleus, with its own label image.

Everything one image needs comes from one :class:`SyntheticConfig` (ranges that each image samples from)
and one integer seed: the same config and seed give identical arrays.

Axis order is numpy's / napari's: 2D images are ``(rows, cols)`` = ``(Y, X)``, 3D stacks ``(Z, Y, X)``; a
second channel is a trailing axis: ``(Y, X, 2)`` / ``(Z, Y, X, 2)``.

Labels are exact: every pixel belongs to at most one object; ids are consecutive ``1..N`` (0 is
background); each object is one 4-connected (6-connected in 3D) region, and no object smaller than
``min_area`` pixels survives. Where two objects overlap, the pixel goes to the object it lies deeper
inside (smaller normalised radius), which gives natural-looking contact lines between touching nuclei;
the image is rendered from the final labels, so no labelled object is invisible and nothing bright is
unlabelled.

Examples
--------
>>> from napari_sam.data.synthetic import preset
>>> sample = preset("nuclei_dense", shape=(256, 256)).sample(seed=3)
>>> sample.image.shape, sample.image.dtype.name, sample.labels.dtype.name
((256, 256), 'uint16', 'uint32')
>>> int(sample.labels.max()) == sample.n_objects
True
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

__all__ = [
    "PRESETS",
    "SyntheticConfig",
    "SyntheticSample",
    "cells_2d",
    "generate",
    "nuclei_2d",
    "nuclei_3d",
    "preset",
]

Range = tuple[float, float]

_DTYPES = ("uint8", "uint16", "float32")
_SECOND_CHANNELS = ("cytoplasm", "membrane")
#: the boundary harmonics k = 2 .. 6 (k = 1 would only move the object)
_HARMONICS = np.arange(2, 7, dtype=np.float32)


# ------------------------------------------------------------------------------------------------ config


def _as_range(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> Range:
    """``value`` (a number or a pair) → ``(lo, hi)`` floats, checked; errors name ``name``."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(f"{name}: expected a number or a (min, max) pair, got {value!r}") from None
        if len(items) != 2:
            raise ValueError(f"{name}: expected a (min, max) pair, got {value!r}")
        try:
            pair = (float(items[0]), float(items[1]))
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numbers, got {value!r}") from None
    lo, hi = pair
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: values must be finite, got {value!r}")
    if lo > hi:
        raise ValueError(f"{name}: min {lo:g} is larger than max {hi:g}")
    if low is not None and lo < low:
        raise ValueError(f"{name}: values must be >= {low:g}, got {value!r}")
    if high is not None and hi > high:
        raise ValueError(f"{name}: values must be <= {high:g}, got {value!r}")
    return pair


def _as_dtype_name(value: Any) -> str:
    try:
        name = np.dtype(value).name
    except TypeError:
        raise ValueError(f"dtype: unknown dtype {value!r}; use one of {', '.join(_DTYPES)}") from None
    if name not in _DTYPES:
        raise ValueError(f"dtype: unsupported dtype {name!r}; use one of {', '.join(_DTYPES)}")
    return name


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a family of synthetic images; each image samples its own values.

    Most fields are ``(min, max)`` ranges (a single number means a fixed value). Each image first draws
    its own values from them (e.g. one mean diameter, one blur sigma), then every object draws around the
    image's values — so a batch of images from one config varies widely while each image is coherent.
    Lengths are in pixels of the ``Y`` / ``X`` axes; in 3D, ``z_spacing`` converts slices to pixels.

    Parameters
    ----------
    shape
        Image shape: ``(rows, cols)`` for 2D or ``(planes, rows, cols)`` for 3D; every side >= 1.
    diameter
        Range of object diameters in pixels (equivalent-circle diameter of the object's cross-section in the
        ``YX`` plane). Each image draws a mean diameter log-uniformly from the range, objects scatter
        around it by ``size_spread`` and are clipped to the range.
    size_spread
        Range of the per-image spread of object diameters (standard deviation of their logarithm).
    count
        Range of the number of objects to place per image. Overrides ``density`` when given.
    density
        Range of objects per 10,000 pixels (2D) or per 1,000,000 voxels (3D), drawn log-uniformly; used when
        ``count`` is ``None``. Objects that find no room are not placed, so a very dense request with large
        objects yields fewer objects (``SyntheticSample.params["requested"]`` keeps the request).
    aspect
        Range of the ratio of an object's long to short axis (1 = round).
    irregularity
        Range of the per-image amplitude of smooth boundary perturbations (radial harmonics 2..6); 0 gives
        perfect ellipses, 0.3 kidney- and lobe-shaped nuclei.
    cluster_probability
        Range of the per-image probability that a new object is placed against an existing one, which
        builds touching chains and clumps.
    overlap
        Range of how far neighbours interpenetrate, as a fraction of the sum of their radii (negative: a
        gap). Cluster members are placed at such distances; no two objects come closer than the maximum.
    overlap_brightness
        Range of how much an object also shines in the part of it that its neighbour owns (0: touching
        nuclei separated by a dim seam; 1: additive, overlaps look brighter like overlapping nuclei).
    intensity
        Range of object brightness (relative; 1 is bright). Each image draws a sub-range, objects draw
        uniformly from it.
    edge_falloff
        Range of how much dimmer an object is at its edge than in its centre (0: flat, 0.7: dome).
    texture
        Range of the chromatin-like speckle contrast inside objects.
    nucleoli
        Range of the number of nucleoli (small spots) per object (only objects >= 12 px get them).
    nucleolus_contrast
        Range of the nucleolus contrast relative to the object (-0.6: dark holes like DAPI, +: bright spots).
    background
        Range of the background level (relative to object brightness).
    background_variation
        Range of the relative amplitude of the smooth, low-frequency background field.
    illumination_variation
        Range of the relative amplitude of uneven illumination (multiplies background and signal).
    haze
        Range of out-of-focus glow: a strongly blurred copy of the objects, relative to them.
    blur
        Range of the Gaussian point-spread-function sigma in pixels (``Y`` / ``X``).
    photons
        Range of the expected photon count of a pixel of brightness 1 (log-uniform); smaller is noisier.
    read_noise
        Range of the Gaussian (camera read) noise standard deviation, relative to brightness 1.
    dtype
        Output image dtype: ``"uint8"`` (0..255), ``"uint16"`` (a 12-, 14- or 16-bit range with a small
        camera offset) or ``"float32"`` (0..1). A few of the brightest pixels may saturate.
    channels
        1 (nuclei) or 2 (nuclei + a second channel showing the cells grown around them).
    second_channel
        ``"cytoplasm"`` (filled cell bodies, dimmer over the nucleus) or ``"membrane"`` (cell outlines).
    cell_extent
        Range of how far a cell reaches beyond its nucleus, as a fraction of the nucleus diameter.
    cell_intensity
        Range of second-channel brightness of cells.
    z_spacing
        3D only: slice distance in pixel units (``2.0``: slices are twice as far apart as pixels); objects
        are round in physical space, so they span ``diameter / z_spacing`` slices.
    z_aspect
        3D only: range of an object's axial semi-axis relative to its lateral radius (physical units).
    axial_blur
        3D only: range of the ratio of the axial to the lateral PSF sigma (physical units).
    depth_attenuation
        3D only: range of the signal loss from the first to the last plane (0.3: the deepest plane is
        ``exp(-0.3)`` as bright).
    min_area
        Smallest object kept, in pixels (voxels); smaller ones — fragments, slivers at the image border,
        objects mostly hidden by neighbours — are removed from labels and image alike.

    Examples
    --------
    >>> from napari_sam.data.synthetic import SyntheticConfig
    >>> config = SyntheticConfig(shape=(96, 96), diameter=(10.0, 20.0))
    >>> config.replace(blur=1.0).blur  # a single number means a fixed value
    (1.0, 1.0)
    >>> SyntheticConfig.from_dict(config.to_dict()) == config  # JSON-friendly round trip
    True
    >>> config.sample(seed=0).image.shape
    (96, 96)
    """

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

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            shape = tuple(int(s) for s in self.shape)
        except (TypeError, ValueError):
            raise ValueError(f"shape: expected a tuple of 2 or 3 integers, got {self.shape!r}") from None
        if len(shape) not in (2, 3):
            raise ValueError(f"shape: expected (rows, cols) or (planes, rows, cols), got {self.shape!r}")
        if min(shape) < 1:
            raise ValueError(f"shape: every side must be >= 1, got {self.shape!r}")
        set_(self, "shape", shape)
        ranges: dict[str, tuple[float | None, float | None]] = {
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
        }
        for name, (low, high) in ranges.items():
            set_(self, name, _as_range(name, getattr(self, name), low=low, high=high))
        if self.intensity[1] <= 0:
            raise ValueError(f"intensity: max must be > 0, got {self.intensity!r}")
        for name in ("count", "density"):
            if getattr(self, name) is not None:
                set_(self, name, _as_range(name, getattr(self, name), low=0.0))
        if self.count is None and self.density is None:
            raise ValueError("count / density: give at least one of them")
        set_(self, "dtype", _as_dtype_name(self.dtype))
        if self.channels not in (1, 2) or isinstance(self.channels, bool):
            raise ValueError(f"channels: must be 1 or 2, got {self.channels!r}")
        if self.second_channel not in _SECOND_CHANNELS:
            raise ValueError(
                f"second_channel: must be one of {', '.join(_SECOND_CHANNELS)}, got {self.second_channel!r}"
            )
        try:
            z_spacing = float(self.z_spacing)
        except (TypeError, ValueError):
            raise ValueError(f"z_spacing: expected a positive number, got {self.z_spacing!r}") from None
        if not (math.isfinite(z_spacing) and z_spacing > 0):
            raise ValueError(f"z_spacing: must be a positive number, got {self.z_spacing!r}")
        set_(self, "z_spacing", z_spacing)
        if int(self.min_area) != self.min_area or self.min_area < 1:
            raise ValueError(f"min_area: must be an integer >= 1, got {self.min_area!r}")
        set_(self, "min_area", int(self.min_area))

    @property
    def ndim(self) -> int:
        """2 or 3: the number of spatial axes."""
        return len(self.shape)

    def replace(self, **changes: Any) -> SyntheticConfig:
        """A copy with some fields changed (checked like the constructor)."""
        return dataclasses.replace(self, **changes)

    def sample(self, seed: int) -> SyntheticSample:
        """One image with its labels; the same ``seed`` always gives the same arrays. See :func:`generate`."""
        return generate(self, seed)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of all fields (for recording how training data was made)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SyntheticConfig fields: {', '.join(sorted(unknown))}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass(frozen=True)
class SyntheticSample:
    """One generated image and its ground truth.

    Attributes
    ----------
    image
        ``config.shape`` (one channel) or ``config.shape + (2,)`` (channel last: nuclei, cells), of the
        config's dtype.
    labels
        ``config.shape`` uint32 nuclei: 0 background, ``1..n_objects`` objects, each one connected region.
    cells
        ``config.shape`` uint32 cells (two-channel configs only, else ``None``): cell ``k`` contains nucleus
        ``k`` and is one connected region.
    params
        The values this image drew (mean diameter, blur, photons, ...) and ``requested`` / ``placed``
        object counts, for inspection.

    Examples
    --------
    >>> from napari_sam.data.synthetic import generate, preset
    >>> sample = generate(preset("nuclei", shape=(96, 96)), seed=0)
    >>> sample.image.shape, sample.labels.dtype, sample.cells is None
    ((96, 96), dtype('uint32'), True)
    >>> sample.n_objects == int(sample.labels.max())
    True
    """

    image: np.ndarray
    labels: np.ndarray
    cells: np.ndarray | None
    params: dict[str, float]

    @property
    def n_objects(self) -> int:
        """Number of labelled objects."""
        return int(self.labels.max()) if self.labels.size else 0


# ------------------------------------------------------------------------------------------------ presets

_NUCLEI = SyntheticConfig()

PRESETS: Mapping[str, SyntheticConfig] = MappingProxyType(
    {
        # varied, medium density: the default family
        "nuclei": _NUCLEI,
        # a few large nuclei per field
        "nuclei_sparse": _NUCLEI.replace(
            diameter=(18.0, 70.0),
            density=(0.08, 0.6),
            cluster_probability=(0.0, 0.3),
            irregularity=(0.0, 0.15),
        ),
        # many small nuclei, often touching
        "nuclei_dense": _NUCLEI.replace(
            diameter=(6.0, 22.0),
            density=(3.0, 14.0),
            cluster_probability=(0.2, 0.7),
            overlap=(-0.02, 0.25),
            size_spread=(0.05, 0.2),
        ),
        # 3D stacks of ellipsoidal nuclei, anisotropic sampling
        "nuclei_3d": _NUCLEI.replace(
            shape=(32, 256, 256), diameter=(10.0, 32.0), density=(8.0, 40.0), cluster_probability=(0.0, 0.3)
        ),
        # nuclei + cytoplasm / membrane channel with cell labels
        "cells_2ch": _NUCLEI.replace(
            diameter=(10.0, 30.0), density=(0.3, 2.0), channels=2, cell_extent=(0.3, 1.2), overlap=(-0.1, 0.1)
        ),
        # held out for evaluation: every range wider than the training presets'; evaluate on other seeds too
        "wide": _NUCLEI.replace(
            diameter=(5.0, 80.0),
            size_spread=(0.0, 0.35),
            density=(0.05, 20.0),
            aspect=(1.0, 2.2),
            irregularity=(0.0, 0.3),
            cluster_probability=(0.0, 0.8),
            overlap=(-0.15, 0.3),
            overlap_brightness=(0.0, 1.0),
            intensity=(0.1, 1.0),
            edge_falloff=(0.0, 0.7),
            texture=(0.0, 0.5),
            nucleoli=(0, 5),
            nucleolus_contrast=(-0.7, 0.6),
            background=(0.0, 0.3),
            background_variation=(0.0, 0.8),
            illumination_variation=(0.0, 0.5),
            haze=(0.0, 0.3),
            blur=(0.3, 3.0),
            photons=(10.0, 5000.0),
            read_noise=(0.0, 0.05),
            cell_extent=(0.2, 1.5),
            cell_intensity=(0.1, 1.0),
            z_aspect=(0.4, 1.2),
            axial_blur=(1.5, 3.5),
            depth_attenuation=(0.0, 0.7),
        ),
    }
)


def preset(name: str, **overrides: Any) -> SyntheticConfig:
    """The preset config ``name`` (one of :data:`PRESETS`), with optional field overrides.

    Presets: ``"nuclei"`` (varied, medium density), ``"nuclei_sparse"``, ``"nuclei_dense"``, ``"nuclei_3d"``
    (``(32, 256, 256)`` stacks), ``"cells_2ch"`` (two channels + cell labels) and ``"wide"`` — wider ranges
    than all others, held out for evaluation.

    Parameters
    ----------
    name
        A key of :data:`PRESETS`.
    **overrides
        :class:`SyntheticConfig` fields to change (validated like the constructor's).

    Returns
    -------
    SyntheticConfig
        The preset, or a copy with the overrides.

    Raises
    ------
    ValueError
        An unknown name or an invalid override.

    Examples
    --------
    >>> from napari_sam.data.synthetic import preset
    >>> config = preset("nuclei_dense", shape=(96, 96))
    >>> config.shape, config.diameter
    ((96, 96), (6.0, 22.0))
    """
    try:
        config = PRESETS[name]
    except KeyError:
        raise ValueError(f"preset: unknown name {name!r}; known: {', '.join(PRESETS)}") from None
    return config.replace(**overrides) if overrides else config


# ------------------------------------------------------------------------------------------------ drawing


def _draw(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def _draw_log(rng: np.random.Generator, r: Range) -> float:
    lo, hi = max(r[0], 1e-6), max(r[1], 1e-6)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    return int(seed)


def _rotations(rng: np.random.Generator, n: int, ndim: int) -> np.ndarray:
    """``(n, ndim, ndim)``: column k is object axis k (long, short[, axial]) in array coordinates."""
    theta = rng.uniform(0.0, np.pi, n)
    s, c = np.sin(theta), np.cos(theta)
    if ndim == 2:
        rot = np.empty((n, 2, 2))
        rot[:, :, 0] = np.stack([s, c], 1)
        rot[:, :, 1] = np.stack([c, -s], 1)
        return rot
    tilt = rng.normal(0.0, 0.25, n)
    u = np.stack([np.zeros(n), s, c], 1)
    v = np.stack([np.zeros(n), c, -s], 1)
    w = np.stack([np.ones(n), np.zeros(n), np.zeros(n)], 1)
    ct, st = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    return np.stack([u, v * ct + w * st, w * ct - v * st], 2)


def _place(
    rng: np.random.Generator,
    radii: np.ndarray,
    extent: np.ndarray,
    cluster_p: float,
    overlap: Range,
) -> np.ndarray:
    """Centres (physical units) for objects of ``radii``; ``nan`` rows for objects that found no room.

    No two centres come closer than ``(r_i + r_j) * (1 - overlap[1])``; a cluster member sits at
    ``(r_i + r_j) * (1 - o)`` from a placed object, ``o`` drawn from ``overlap``. A grid of buckets as wide
    as the largest such distance keeps the neighbour search local (linear in the number of objects).
    """
    n, ndim = len(radii), len(extent)
    centres = np.full((n, ndim), np.nan)
    if n == 0:
        return centres
    placed = np.zeros(n, dtype=np.intp)  # indices of placed objects, first n_placed valid
    n_placed = 0
    closest = 1.0 - overlap[1]
    bucket = max(2.0 * float(radii.max()) * closest, 1e-3)
    grid: dict[tuple[int, ...], list[int]] = {}
    around = [tuple(o) for o in np.ndindex(*(3,) * ndim)]
    tries = 24
    failures = 0

    def free(c: np.ndarray, r: float) -> bool:
        key = (c // bucket).astype(int) - 1
        near: list[int] = []
        for o in around:
            near.extend(grid.get(tuple(int(a + b) for a, b in zip(key, o, strict=True)), ()))
        if not near:
            return True
        idx = np.asarray(near)
        dist = np.sqrt(((centres[idx] - c) ** 2).sum(axis=1))
        return bool(np.all(dist >= (radii[idx] + r) * closest - 1e-6))

    for k in range(n):
        r = float(radii[k])
        candidates = []
        if n_placed and rng.random() < cluster_p:
            parents = placed[rng.integers(0, n_placed, tries)]
            direction = rng.normal(size=(tries, ndim))
            direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
            gap = (r + radii[parents]) * (1.0 - rng.uniform(overlap[0], overlap[1], tries))
            cand = centres[parents] + direction * gap[:, None]
            candidates.extend(cand[np.all((cand >= 0) & (cand < extent), axis=1)])
        candidates.extend(rng.uniform(0.0, 1.0, (tries, ndim)) * extent)
        for c in candidates:
            if free(c, r):
                centres[k] = c
                placed[n_placed] = k
                n_placed += 1
                grid.setdefault(tuple(int(a) for a in c // bucket), []).append(k)
                failures = 0
                break
        else:
            failures += 1
            if failures >= 8:  # the image is full for objects of this size
                break
    return centres


# ------------------------------------------------------------------------------------------------ shapes


class _Objects:
    """Per-object geometry and appearance (physical units; array coordinates are ``index * spacing``)."""

    def __init__(self, **arrays: np.ndarray) -> None:
        self.centre: np.ndarray = arrays["centre"]  # (n, ndim)
        self.semi: np.ndarray = arrays["semi"]  # (n, ndim) semi-axes along the rotation's columns
        self.rot: np.ndarray = arrays["rot"]  # (n, ndim, ndim)
        self.amp: np.ndarray = arrays["amp"]  # (n, 5) harmonic amplitudes
        self.phase: np.ndarray = arrays["phase"]  # (n, 5)
        self.polar: np.ndarray = arrays["polar"]  # (n, 2) 3D only: axial shape terms
        self.diameter: np.ndarray = arrays["diameter"]  # (n,)
        self.intensity: np.ndarray = arrays["intensity"]  # (n,)


def _field(
    obj: _Objects, i: int, shape: tuple[int, ...], spacing: np.ndarray
) -> tuple[tuple[slice, ...], np.ndarray] | None:
    """Object ``i``'s normalised radius ``f`` (< 1 inside) over its bounding box, or ``None`` if outside."""
    ndim = len(shape)
    reach = float(obj.semi[i].max()) * (1.0 + float(np.abs(obj.amp[i]).sum() + np.abs(obj.polar[i]).sum()))
    lo = np.maximum(np.floor((obj.centre[i] - reach) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((obj.centre[i] + reach) / spacing).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    axes = []
    for d in range(ndim):
        coord = np.arange(lo[d], hi[d], dtype=np.float32) * np.float32(spacing[d]) - np.float32(
            obj.centre[i, d]
        )
        axes.append(coord.reshape([-1 if e == d else 1 for e in range(ndim)]))
    rot = obj.rot[i].astype(np.float32)
    local = []
    for k in range(ndim):
        acc = axes[0] * rot[0, k]
        for d in range(1, ndim):
            acc = acc + axes[d] * rot[d, k]
        local.append(acc / np.float32(obj.semi[i, k]))
    rho2 = local[0] * local[0] + local[1] * local[1]
    phi = np.arctan2(local[1], local[0])
    bumps = np.zeros(phi.shape, dtype=np.float32)
    for k, a, p in zip(_HARMONICS, obj.amp[i], obj.phase[i], strict=True):
        if a != 0.0:
            bumps += np.float32(a) * np.cos(k * phi + np.float32(p))
    if ndim == 3:
        rho2 = rho2 + local[2] * local[2]
        nz = local[2] / np.sqrt(np.maximum(rho2, 1e-12))
        radius = 1.0 + bumps * (1.0 - nz * nz) + obj.polar[i, 0] * nz + obj.polar[i, 1] * (nz * nz - 1 / 3)
    else:
        radius = 1.0 + bumps
    f = np.sqrt(rho2) / np.maximum(radius, 0.3)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), f.astype(np.float32, copy=False)


def _one_region_each(labels: np.ndarray, keep_where: np.ndarray | None = None) -> np.ndarray:
    """Clear all but one connected piece of every label (the largest, or the one touching ``keep_where``)."""
    from skimage.measure import label as connected

    pieces, n_pieces = connected(labels, background=0, connectivity=1, return_num=True)
    n_ids = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
    if n_pieces == n_ids:
        return labels
    flat = pieces.ravel()
    owner = np.zeros(n_pieces + 1, dtype=labels.dtype)
    owner[flat] = labels.ravel()
    if keep_where is not None:
        keep = np.zeros(n_pieces + 1, dtype=bool)
        keep[np.unique(pieces[keep_where])] = True
    else:
        size = np.bincount(flat, minlength=n_pieces + 1)
        order = np.lexsort((-size[1:], owner[1:])) + 1  # by owner, largest first
        _, first = np.unique(owner[order], return_index=True)
        keep = np.zeros(n_pieces + 1, dtype=bool)
        keep[order[first]] = True
    keep[0] = False
    out = labels.copy()
    out[~keep[pieces]] = 0
    return out


# ------------------------------------------------------------------------------------------------ fields


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: np.ndarray) -> np.ndarray:
    """Gaussian-correlated noise with unit standard deviation; ``sigma`` per axis in pixels."""
    from scipy import ndimage

    sigma = np.asarray(sigma, dtype=float)
    step = np.maximum(np.floor(sigma / 2.0), 1).astype(int)
    small = tuple(math.ceil(n / s) + (1 if s > 1 else 0) for n, s in zip(shape, step, strict=True))
    noise = rng.standard_normal(small, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma / step, mode="wrap")
    if np.any(step > 1):
        noise = ndimage.zoom(noise, [n / m for n, m in zip(shape, small, strict=True)], order=1)
    noise -= noise.mean()
    noise /= max(float(noise.std()), 1e-6)
    return noise


def _low_frequency(rng: np.random.Generator, shape: tuple[int, ...], terms: int = 3) -> np.ndarray:
    """A smooth field in [-1, 1] varying over the whole image (sum of separable cosines)."""
    total = np.zeros(shape, dtype=np.float32)
    for _ in range(terms):
        term = np.ones((1,) * len(shape), dtype=np.float32)
        for d, n in enumerate(shape):
            freq = rng.uniform(0.2, 1.3) * np.pi / max(n, 1)
            wave = np.cos(freq * np.arange(n, dtype=np.float32) + rng.uniform(0, 2 * np.pi)).astype(
                np.float32
            )
            term = term * wave.reshape([-1 if e == d else 1 for e in range(len(shape))])
        total += np.float32(rng.uniform(0.3, 1.0)) * term
    peak = float(np.abs(total).max())
    return total / peak if peak > 0 else total


def _blurred(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian blur, cheap for large sigma (downsample, blur, upsample)."""
    from scipy import ndimage

    sigma = np.asarray(sigma, dtype=float)
    step = np.maximum(np.floor(sigma / 3.0), 1).astype(int)
    if np.all(step == 1):
        return ndimage.gaussian_filter(image, sigma, truncate=3.0)
    small = image[tuple(slice(None, None, s) for s in step)]
    small = ndimage.gaussian_filter(small, sigma / step, truncate=3.0)
    return ndimage.zoom(small, [n / m for n, m in zip(image.shape, small.shape, strict=True)], order=1)


def _acquire(
    rng: np.random.Generator, signal: np.ndarray, cfg: SyntheticConfig, spacing: np.ndarray, params: dict
) -> np.ndarray:
    """Objects' emission → one noisy channel in the output dtype (background, haze, PSF, noise, detector)."""
    shape = signal.shape
    ndim = len(shape)
    sigma = np.full(ndim, _draw(rng, cfg.blur))
    if ndim == 3:
        sigma[0] = sigma[0] * _draw(rng, cfg.axial_blur) / spacing[0]
        depth = np.exp(-_draw(rng, cfg.depth_attenuation) * np.linspace(0.0, 1.0, shape[0], dtype=np.float32))
        signal = signal * depth[:, None, None]
    haze_amount = _draw(rng, cfg.haze)
    mean_d = params["mean_diameter"]
    clean = _blurred(signal, sigma) if sigma.max() > 0 else signal.copy()
    if haze_amount > 0:
        clean += np.float32(haze_amount) * _blurred(signal, np.maximum(1.5 * mean_d / spacing, 1.0))
    level = _draw(rng, cfg.background)
    variation = _draw(rng, cfg.background_variation)
    clean += np.float32(level) * (1.0 + np.float32(variation) * _low_frequency(rng, shape))
    illumination = _draw(rng, cfg.illumination_variation)
    if illumination > 0:
        clean *= 1.0 + np.float32(illumination) * _low_frequency(rng, shape)
    np.maximum(clean, 0.0, out=clean)
    photons = _draw_log(rng, cfg.photons)
    noisy = rng.poisson(clean * np.float32(photons)).astype(np.float32)
    noisy *= np.float32(1.0 / photons)
    read = _draw(rng, cfg.read_noise)
    if read > 0:
        noisy += rng.normal(0.0, read, shape).astype(np.float32)
    white = float(clean.max()) * rng.uniform(1.0, 1.4) + 1e-6
    scaled = np.clip(noisy * np.float32(1.0 / white), 0.0, 1.0)
    params.update(blur=float(sigma[-1]), photons=photons, read_noise=read, background=level)
    if cfg.dtype == "float32":
        return scaled
    if cfg.dtype == "uint8":
        return (scaled * 255.0 + 0.5).astype(np.uint8)
    full = float(2 ** int(rng.choice([12, 14, 16])) - 1)
    offset = rng.uniform(0.0, 0.03) * full
    return (scaled * np.float32(full - offset) + np.float32(offset + 0.5)).astype(np.uint16)


# ------------------------------------------------------------------------------------------------ generator


def generate(config: SyntheticConfig, seed: int) -> SyntheticSample:
    """Draw one synthetic image with exact labels.

    Parameters
    ----------
    config
        The family of images (:class:`SyntheticConfig`, e.g. from :func:`preset`).
    seed
        Integer >= 0. The same config and seed give identical arrays on every run and machine with the same
        numpy; different seeds give independent images. Keep training and evaluation seeds apart.

    Returns
    -------
    SyntheticSample
        ``image`` (``shape`` or ``shape + (2,)``, config dtype), ``labels`` (``shape`` uint32, ids
        ``1..N`` consecutive), ``cells`` (two-channel configs) and the drawn ``params``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_sam.data.synthetic import generate, preset
    >>> config = preset("nuclei_dense", shape=(96, 96))
    >>> sample = generate(config, seed=3)
    >>> sample.image.shape, sample.image.dtype, sample.labels.dtype
    ((96, 96), dtype('uint16'), dtype('uint32'))
    >>> np.array_equal(generate(config, seed=3).image, sample.image)  # reproducible
    True
    """
    if not isinstance(config, SyntheticConfig):
        raise ValueError(f"config: expected a SyntheticConfig, got {type(config).__name__}")
    rng = np.random.default_rng(_check_seed(seed))
    shape = config.shape
    ndim = config.ndim
    spacing = np.ones(ndim)
    if ndim == 3:
        spacing[0] = config.z_spacing
    extent = np.asarray(shape, dtype=float) * spacing

    # --- how many objects, how big
    if config.count is not None:
        requested = int(rng.integers(round(config.count[0]), round(config.count[1]) + 1))
    else:
        unit = 1e4 if ndim == 2 else 1e6
        requested = round(_draw_log(rng, config.density) * math.prod(shape) / unit)
    mean_d = _draw_log(rng, config.diameter)
    spread = _draw(rng, config.size_spread)
    n = requested
    diameter = np.clip(mean_d * np.exp(rng.normal(0.0, spread, n)), *config.diameter)
    aspect = rng.uniform(config.aspect[0], config.aspect[1], n)
    semi = np.empty((n, ndim))
    semi[:, 0] = diameter / 2 * np.sqrt(aspect)
    semi[:, 1] = diameter / 2 / np.sqrt(aspect)
    if ndim == 3:
        semi[:, 2] = diameter / 2 * rng.uniform(config.z_aspect[0], config.z_aspect[1], n)
    irregular = _draw(rng, config.irregularity)
    amp = irregular * rng.uniform(-1.0, 1.0, (n, 5)) / (_HARMONICS - 1.0)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 5))
    polar = irregular * rng.uniform(-0.5, 0.5, (n, 2)) if ndim == 3 else np.zeros((n, 2))
    i_lo, i_hi = np.sort(rng.uniform(config.intensity[0], config.intensity[1], 2))
    intensity = rng.uniform(i_lo, i_hi, n)
    rot = _rotations(rng, n, ndim)

    # --- where: in 3D the bounding radius of flat nuclei is their lateral one, in 2D the mean radius
    radii = diameter / 2
    centre = _place(rng, radii, extent, _draw(rng, config.cluster_probability), config.overlap)
    ok = ~np.isnan(centre[:, 0])
    objects = _Objects(
        centre=centre[ok],
        semi=semi[ok],
        rot=rot[ok],
        amp=amp[ok],
        phase=phase[ok],
        polar=polar[ok],
        diameter=diameter[ok],
        intensity=intensity[ok],
    )
    n = int(ok.sum())

    # --- rasterise: each pixel goes to the object it is deepest inside
    labels = np.zeros(shape, dtype=np.uint32)
    depth = np.ones(shape, dtype=np.float32)
    fields: list[tuple[tuple[slice, ...], np.ndarray] | None] = []
    nominal = np.zeros(n + 1)
    for i in range(n):
        got = _field(objects, i, shape, spacing)
        fields.append(got)
        if got is None:
            continue
        box, f = got
        view_d, view_l = depth[box], labels[box]
        inside = f < view_d
        view_d[inside] = f[inside]
        view_l[inside] = i + 1
        nominal[i + 1] = np.count_nonzero(f < 1.0)

    # --- exact labels: one region per object, no small or mostly hidden objects, ids 1..N
    labels = _one_region_each(labels)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = (area >= config.min_area) & (area >= 0.4 * nominal)
    keep[0] = False
    new_id = np.zeros(n + 1, dtype=np.uint32)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    labels = new_id[labels]
    kept = np.flatnonzero(keep[1:])  # old object index for new id k + 1

    # --- render the nuclei channel from the final labels
    params: dict[str, float] = {
        "requested": float(requested),
        "placed": float(n),
        "objects": float(len(kept)),
        "mean_diameter": float(mean_d),
        "size_spread": spread,
        "irregularity": irregular,
    }
    falloff = np.float32(_draw(rng, config.edge_falloff))
    power = np.float32(rng.uniform(2.0, 8.0))
    bright = np.zeros(len(kept) + 1, dtype=np.float32)
    bright[1:] = objects.intensity[kept]
    signal = bright[labels] * (1.0 - falloff * depth**power)
    shine = np.float32(_draw(rng, config.overlap_brightness))
    if shine > 0:
        owner_area = np.bincount(labels.ravel(), minlength=len(kept) + 1)
        for k, i in enumerate(kept, start=1):
            got = fields[i]
            if got is None or nominal[i + 1] <= owner_area[k]:
                continue
            box, f = got
            view_l = labels[box]
            under = (f < 1.0) & (view_l > 0) & (view_l != k)
            if under.any():
                signal[box][under] += shine * bright[k] * (1.0 - falloff * f[under] ** power)
    signal *= _texture(rng, config, objects, kept, labels, spacing, mean_d)
    params.update(edge_falloff=float(falloff), overlap_brightness=float(shine))
    image = _acquire(rng, signal, config, spacing, params)

    # --- second channel: cells grown from the nuclei
    cells = None
    if config.channels == 2:
        cells, second = _cells(rng, config, labels, objects.diameter[kept], spacing, mean_d)
        channel_params: dict[str, float] = {"mean_diameter": mean_d}
        image = np.stack([image, _acquire(rng, second, config, spacing, channel_params)], axis=-1)
        params.update({f"cells_{k}": v for k, v in channel_params.items() if k != "mean_diameter"})
    return SyntheticSample(image=image, labels=labels, cells=cells, params=params)


def _texture(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    objects: _Objects,
    kept: np.ndarray,
    labels: np.ndarray,
    spacing: np.ndarray,
    mean_d: float,
) -> np.ndarray:
    """Multiplicative interior texture: fine + coarse chromatin speckle and nucleoli."""
    from scipy import ndimage

    shape = labels.shape
    amount = np.float32(_draw(rng, cfg.texture))
    fine = _smooth_noise(rng, shape, rng.uniform(0.6, 1.3) / spacing)
    coarse = _smooth_noise(rng, shape, max(mean_d / 8.0, 1.0) / spacing)
    mix = np.float32(rng.uniform(0.3, 0.8))
    tex = 1.0 + amount * (mix * fine + (1.0 - mix) * coarse)
    contrast = _draw(rng, cfg.nucleolus_contrast)
    spots = np.zeros(shape, dtype=np.float32)
    counts = rng.integers(int(cfg.nucleoli[0]), int(cfg.nucleoli[1]) + 1, len(kept))
    big = objects.diameter[kept] >= 12.0
    ndim = len(shape)
    for k, (i, m) in enumerate(zip(kept, counts, strict=True), start=1):
        if not big[k - 1] or m == 0:
            continue
        offsets = rng.uniform(-0.5, 0.5, (m, ndim)) * objects.semi[i]
        where = objects.centre[i] + offsets @ objects.rot[i].T
        index = np.round(where / spacing).astype(int)
        inside = np.all((index >= 0) & (index < shape), axis=1)
        for idx in index[inside]:
            if labels[tuple(idx)] == k:
                spots[tuple(idx)] += np.float32(rng.uniform(0.6, 1.0))
    if contrast != 0 and spots.any():
        size = max(mean_d * rng.uniform(0.05, 0.09), 0.8) / spacing
        spots = ndimage.gaussian_filter(spots, size, truncate=3.0)
        peak = float(np.prod(1.0 / (np.sqrt(2 * np.pi) * size)))
        tex *= np.maximum(1.0 + np.float32(contrast / peak) * spots, 0.05)
    np.maximum(tex, 0.1, out=tex)
    return tex


def _cells(
    rng: np.random.Generator,
    cfg: SyntheticConfig,
    nuclei: np.ndarray,
    diameter: np.ndarray,
    spacing: np.ndarray,
    mean_d: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Cell labels grown from the nuclei (distance-limited, irregular) and the second channel's emission."""
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    shape = nuclei.shape
    if not nuclei.any():
        return np.zeros(shape, dtype=np.uint32), np.zeros(shape, dtype=np.float32)
    distance, nearest = ndimage.distance_transform_edt(nuclei == 0, sampling=spacing, return_indices=True)
    owner = nuclei[tuple(nearest)]
    del nearest
    reach = np.zeros(len(diameter) + 1, dtype=np.float32)
    reach[1:] = diameter * rng.uniform(cfg.cell_extent[0], cfg.cell_extent[1], len(diameter))
    wobble = 1.0 + 0.25 * _smooth_noise(rng, shape, max(mean_d / 3.0, 1.0) / spacing)
    limit = reach[owner] * wobble
    cells = np.where(distance <= limit, owner, 0).astype(np.uint32)
    cells = _one_region_each(cells, keep_where=nuclei > 0)
    i_lo, i_hi = np.sort(rng.uniform(cfg.cell_intensity[0], cfg.cell_intensity[1], 2))
    bright = np.zeros(len(diameter) + 1, dtype=np.float32)
    bright[1:] = rng.uniform(i_lo, i_hi, len(diameter))
    tex = 1.0 + np.float32(rng.uniform(0.05, 0.3)) * _smooth_noise(
        rng, shape, rng.uniform(0.7, 2.0) / spacing
    )
    if cfg.second_channel == "cytoplasm":
        # brightest around the nucleus, fading to the cell edge; the nucleus itself partly excluded
        fade = 1.0 - 0.5 * np.minimum(distance / np.maximum(limit, 1e-3), 1.0)
        nucleus_level = np.float32(rng.uniform(0.2, 0.9))
        emission = bright[cells] * fade.astype(np.float32) * np.where(nuclei > 0, nucleus_level, 1.0)
    else:
        outline = find_boundaries(cells, mode="inner")
        faint = np.float32(rng.uniform(0.05, 0.25))
        emission = bright[cells] * np.where(outline, np.float32(1.0), faint)
    return cells, (emission * tex).astype(np.float32)


# ------------------------------------------------------------------------------------------------ shortcuts


def nuclei_2d(
    shape: tuple[int, int] = (512, 512),
    *,
    n_objects: int | None = 30,
    diameter: Range = (16.0, 50.0),
    radius: Range | None = None,
    seed: int = 0,
    dtype: DTypeLike = np.uint16,
    preset_name: str = "nuclei",
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like 2D image of nuclei and its labels.

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    n_objects
        Nuclei to place; fewer come out when they do not fit or end up mostly hidden by neighbours.
        ``None``: the preset's density.
    diameter
        ``(min, max)`` nucleus diameter in pixels.
    radius
        ``(min, max)`` nucleus radius in pixels; when given, replaces ``diameter`` (twice these values).
        Kept for callers of the first version of this function.
    seed
        Integer >= 0; equal seeds give equal arrays.
    dtype
        ``np.uint16``, ``np.uint8`` or ``np.float32`` (or their names).
    preset_name
        The :data:`PRESETS` entry the rest of the parameters come from.
    **overrides
        Any other :class:`SyntheticConfig` field.

    Returns
    -------
    image
        ``(rows, cols)`` of ``dtype``.
    labels
        ``(rows, cols)`` uint32, 0 background, ``1..N`` nuclei.

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, labels = nuclei_2d((128, 128), n_objects=6, seed=0)
    >>> image.shape, image.dtype, labels.dtype, int(labels.max())
    ((128, 128), dtype('uint16'), dtype('uint32'), 6)
    >>> nuclei_2d((64, 64), n_objects=3, dtype="uint8")[0].dtype
    dtype('uint8')
    """
    if len(tuple(shape)) != 2:
        raise ValueError(f"shape: nuclei_2d needs (rows, cols), got {shape!r}")
    if radius is not None:
        lo, hi = _as_range("radius", radius, low=0.5)
        diameter = (2.0 * lo, 2.0 * hi)
    if n_objects is not None:
        if n_objects < 0:
            raise ValueError(f"n_objects: must be >= 0, got {n_objects!r}")
        overrides["count"] = (n_objects, n_objects)
    config = preset(preset_name, shape=tuple(shape), diameter=diameter, dtype=dtype, channels=1, **overrides)
    sample = config.sample(seed)
    return sample.image, sample.labels


def nuclei_3d(
    shape: tuple[int, int, int] = (32, 256, 256),
    *,
    n_objects: int | None = 40,
    diameter: Range = (12.0, 32.0),
    z_spacing: float = 2.0,
    seed: int = 0,
    dtype: DTypeLike = np.uint16,
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like 3D stack of ellipsoidal nuclei and its labels.

    Parameters
    ----------
    shape
        ``(planes, rows, cols)``.
    n_objects
        Nuclei to place (fewer when they do not fit); ``None``: the ``"nuclei_3d"`` preset's density.
    diameter
        ``(min, max)`` lateral nucleus diameter in pixels.
    z_spacing
        Plane distance in pixel units: a nucleus of diameter ``d`` spans about ``d / z_spacing`` planes.
    seed
        Integer >= 0; equal seeds give equal arrays.
    dtype
        ``np.uint16``, ``np.uint8`` or ``np.float32``.
    **overrides
        Any other :class:`SyntheticConfig` field.

    Returns
    -------
    image
        ``(planes, rows, cols)`` of ``dtype``.
    labels
        ``(planes, rows, cols)`` uint32, 0 background, ``1..N`` nuclei, each one 6-connected region.

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_3d
    >>> stack, labels = nuclei_3d((8, 64, 64), n_objects=4, seed=0)
    >>> stack.shape, stack.dtype, labels.shape, int(labels.max())
    ((8, 64, 64), dtype('uint16'), (8, 64, 64), 4)
    """
    if len(tuple(shape)) != 3:
        raise ValueError(f"shape: nuclei_3d needs (planes, rows, cols), got {shape!r}")
    if n_objects is not None:
        if n_objects < 0:
            raise ValueError(f"n_objects: must be >= 0, got {n_objects!r}")
        overrides["count"] = (n_objects, n_objects)
    config = preset(
        "nuclei_3d", shape=tuple(shape), diameter=diameter, z_spacing=z_spacing, dtype=dtype, **overrides
    )
    sample = config.sample(seed)
    return sample.image, sample.labels


def cells_2d(
    shape: tuple[int, int] = (512, 512),
    *,
    n_objects: int | None = 40,
    second_channel: str = "cytoplasm",
    seed: int = 0,
    dtype: DTypeLike = np.uint16,
    **overrides: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A two-channel 2D image (nuclei, cells) with nucleus and cell labels (the ``"cells_2ch"`` preset).

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    n_objects
        Cells to place; ``None``: the preset's density.
    second_channel
        ``"cytoplasm"`` or ``"membrane"``.
    seed, dtype, **overrides
        As in :func:`nuclei_2d`.

    Returns
    -------
    image
        ``(rows, cols, 2)`` of ``dtype``: channel 0 nuclei, channel 1 cytoplasm / membrane.
    nuclei
        ``(rows, cols)`` uint32 nucleus labels ``1..N``.
    cells
        ``(rows, cols)`` uint32 cell labels; cell ``k`` contains nucleus ``k``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_sam.data.synthetic import cells_2d
    >>> image, nuclei, cells = cells_2d((128, 128), n_objects=5, seed=0)
    >>> image.shape, int(nuclei.max()), int(cells.max())
    ((128, 128, 2), 5, 5)
    >>> bool(np.all(cells[nuclei == 1] == 1))  # cell 1 contains nucleus 1
    True
    """
    if len(tuple(shape)) != 2:
        raise ValueError(f"shape: cells_2d needs (rows, cols), got {shape!r}")
    if n_objects is not None:
        if n_objects < 0:
            raise ValueError(f"n_objects: must be >= 0, got {n_objects!r}")
        overrides["count"] = (n_objects, n_objects)
    config = preset("cells_2ch", shape=tuple(shape), second_channel=second_channel, dtype=dtype, **overrides)
    sample = config.sample(seed)
    cells = sample.cells if sample.cells is not None else np.zeros_like(sample.labels)
    return sample.image, sample.labels, cells
