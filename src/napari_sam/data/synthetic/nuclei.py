"""The objects of one image: how many, how big, what shape and where (:func:`draw_objects`), and the
nuclei's emission before imaging (:func:`nuclei_emission`).

Both draw from the image's one random generator, in a fixed order (the pinned images depend on it).
Coordinates are physical (array index times the pixel spacing per axis), axis order ``(Y, X)`` or
``(Z, Y, X)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .appearance import texture
from .config import ConfigFields
from .placement import place, rotations
from .ranges import draw, draw_log
from .shapes import HARMONICS, Objects, Raster


@dataclass(frozen=True, eq=False)
class Drawn:
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


def draw_objects(rng: np.random.Generator, config: ConfigFields, spacing: np.ndarray) -> Drawn:
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
    return Drawn(objects, requested, mean_d, spread, irregular)


def nuclei_emission(
    rng: np.random.Generator,
    config: ConfigFields,
    drawn: Drawn,
    raster: Raster,
    labels: np.ndarray,
    kept: np.ndarray,
    spacing: np.ndarray,
    params: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The nuclei channel's emission, rendered from the final ``labels``.

    Each nucleus is brightest at its centre (``edge_falloff``), may shine through where a neighbour owns
    part of it (``overlap_brightness``) and is textured; the drawn falloff and shine go into ``params``.

    Returns
    -------
    signal
        ``labels.shape`` float32: the emission.
    smooth
        ``labels.shape`` float32: the same before texture and nucleoli (each object's smooth profile, which
        the half-maximum label convention reads).
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
    smooth = signal
    signal = smooth * texture(
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
    return signal, smooth
