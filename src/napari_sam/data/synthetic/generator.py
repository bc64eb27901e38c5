"""The generator: :class:`SyntheticConfig` (a family of images), :func:`generate` (one image from a config
and a seed) and :class:`SyntheticSample` (what it returns).

One image is drawn in this order, every step from the one random generator seeded by ``seed``: how many
objects and how big (:func:`_draw_objects`), where (:mod:`.placement`), their shapes and exact labels
(:mod:`.shapes`), their emission (:func:`_nuclei_emission`, :mod:`.appearance`), then the microscope and
camera (:mod:`.imaging`); a second channel draws the cells around the nuclei last.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .appearance import cells, texture
from .imaging import acquire
from .placement import place, rotations
from .ranges import Range, as_range, draw, draw_log
from .shapes import HARMONICS, Objects, Raster, exact_labels, rasterise

_DTYPES = ("uint8", "uint16", "float32")
_SECOND_CHANNELS = ("cytoplasm", "membrane")


def _as_dtype_name(value: Any) -> str:
    try:
        name = np.dtype(value).name
    except TypeError:
        raise ValueError(f"dtype: unknown dtype {value!r}; use one of {', '.join(_DTYPES)}") from None
    if name not in _DTYPES:
        raise ValueError(f"dtype: unsupported dtype {name!r}; use one of {', '.join(_DTYPES)}")
    return name


#: ``(low, high)`` limits of each range field of :class:`SyntheticConfig` (None: unbounded).
_RANGE_LIMITS: dict[str, tuple[float | None, float | None]] = {
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
        set_(self, "shape", _checked_shape(self.shape))
        for name, (low, high) in _RANGE_LIMITS.items():
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
        if self.second_channel not in _SECOND_CHANNELS:
            raise ValueError(
                f"second_channel: must be one of {', '.join(_SECOND_CHANNELS)}, got {self.second_channel!r}"
            )
        set_(self, "z_spacing", _checked_z_spacing(self.z_spacing))
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
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**fields)


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


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected an integer >= 0, got {seed!r}")
    return int(seed)


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
    spacing = np.ones(config.ndim)
    if config.ndim == 3:
        spacing[0] = config.z_spacing
    drawn = _draw_objects(rng, config, spacing)
    raster = rasterise(drawn.objects, config.shape, spacing)
    labels, kept = exact_labels(raster, config.min_area)
    params: dict[str, float] = {
        "requested": float(drawn.requested),
        "placed": float(len(drawn.objects.centre)),
        "objects": float(len(kept)),
        "mean_diameter": float(drawn.mean_diameter),
        "size_spread": drawn.size_spread,
        "irregularity": drawn.irregularity,
    }
    signal = _nuclei_emission(rng, config, drawn, raster, labels, kept, spacing, params)
    image = acquire(rng, signal, config, spacing, params)

    cell_labels = None
    if config.channels == 2:
        cell_labels, second = cells(
            rng,
            labels,
            drawn.objects.diameter[kept],
            spacing,
            drawn.mean_diameter,
            extent=config.cell_extent,
            intensity=config.cell_intensity,
            kind=config.second_channel,
        )
        channel_params: dict[str, float] = {"mean_diameter": drawn.mean_diameter}
        image = np.stack([image, acquire(rng, second, config, spacing, channel_params)], axis=-1)
        params.update({f"cells_{k}": v for k, v in channel_params.items() if k != "mean_diameter"})
    return SyntheticSample(image=image, labels=labels, cells=cell_labels, params=params)


@dataclass(frozen=True, eq=False)
class _Drawn:
    """The objects one image asked for, and the per-image values their sizes and shapes came from."""

    #: the objects that found room, in placement order
    objects: Objects
    #: how many objects were asked for (before any failed to find room)
    requested: int
    #: the image's mean object diameter, pixels
    mean_diameter: float
    #: the spread of the log diameters around it
    size_spread: float
    #: the amplitude of the boundary perturbations
    irregularity: float


def _draw_objects(rng: np.random.Generator, config: SyntheticConfig, spacing: np.ndarray) -> _Drawn:
    """How many objects, how big, what shape, how bright, and where (``spacing`` per axis)."""
    shape, ndim = config.shape, config.ndim
    if config.count is not None:
        requested = int(rng.integers(round(config.count[0]), round(config.count[1]) + 1))
    else:
        assert config.density is not None  # __post_init__: count or density is given
        unit = 1e4 if ndim == 2 else 1e6
        requested = round(draw_log(rng, config.density) * math.prod(shape) / unit)
    mean_d = draw_log(rng, config.diameter)
    spread = draw(rng, config.size_spread)
    n = requested
    diameter = np.clip(mean_d * np.exp(rng.normal(0.0, spread, n)), *config.diameter)
    aspect = rng.uniform(config.aspect[0], config.aspect[1], n)
    semi = np.empty((n, ndim))
    semi[:, 0] = diameter / 2 * np.sqrt(aspect)
    semi[:, 1] = diameter / 2 / np.sqrt(aspect)
    if ndim == 3:
        semi[:, 2] = diameter / 2 * rng.uniform(config.z_aspect[0], config.z_aspect[1], n)
    irregular = draw(rng, config.irregularity)
    amp = irregular * rng.uniform(-1.0, 1.0, (n, 5)) / (HARMONICS - 1.0)
    phase = rng.uniform(0.0, 2 * np.pi, (n, 5))
    polar = irregular * rng.uniform(-0.5, 0.5, (n, 2)) if ndim == 3 else np.zeros((n, 2))
    i_lo, i_hi = np.sort(rng.uniform(config.intensity[0], config.intensity[1], 2))
    intensity = rng.uniform(i_lo, i_hi, n)
    rot = rotations(rng, n, ndim)

    # where: in 3D the bounding radius of flat nuclei is their lateral one, in 2D the mean radius
    radii = diameter / 2
    extent = np.asarray(shape, dtype=float) * spacing
    centre = place(rng, radii, extent, draw(rng, config.cluster_probability), config.overlap)
    ok = ~np.isnan(centre[:, 0])
    objects = Objects(
        centre=centre[ok],
        semi=semi[ok],
        rot=rot[ok],
        amp=amp[ok],
        phase=phase[ok],
        polar=polar[ok],
        diameter=diameter[ok],
        intensity=intensity[ok],
    )
    return _Drawn(objects, requested, mean_d, spread, irregular)


def _nuclei_emission(
    rng: np.random.Generator,
    config: SyntheticConfig,
    drawn: _Drawn,
    raster: Raster,
    labels: np.ndarray,
    kept: np.ndarray,
    spacing: np.ndarray,
    params: dict[str, float],
) -> np.ndarray:
    """The nuclei channel's emission, rendered from the final ``labels`` (float32, ``labels.shape``).

    Each nucleus is brightest at its centre (``edge_falloff``), may shine through where a neighbour owns
    part of it (``overlap_brightness``) and is textured; the drawn falloff and shine go into ``params``.
    """
    falloff = np.float32(draw(rng, config.edge_falloff))
    power = np.float32(rng.uniform(2.0, 8.0))
    bright = np.zeros(len(kept) + 1, dtype=np.float32)
    bright[1:] = drawn.objects.intensity[kept]
    signal = bright[labels] * (1.0 - falloff * raster.depth**power)
    shine = np.float32(draw(rng, config.overlap_brightness))
    if shine > 0:
        owner_area = np.bincount(labels.ravel(), minlength=len(kept) + 1)
        for k, i in enumerate(kept, start=1):
            got = raster.fields[i]
            if got is None or raster.nominal[i + 1] <= owner_area[k]:
                continue
            box, f = got
            view_l = labels[box]
            under = (f < 1.0) & (view_l > 0) & (view_l != k)
            if under.any():
                signal[box][under] += shine * bright[k] * (1.0 - falloff * f[under] ** power)
    signal *= texture(
        rng,
        drawn.objects,
        kept,
        labels,
        spacing,
        drawn.mean_diameter,
        amount=config.texture,
        nucleoli=config.nucleoli,
        nucleolus_contrast=config.nucleolus_contrast,
    )
    params.update(edge_falloff=float(falloff), overlap_brightness=float(shine))
    return signal
