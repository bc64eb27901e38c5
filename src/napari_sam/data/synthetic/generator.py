"""The generator: :class:`SyntheticConfig` (a family of images), :func:`generate` (one image from a config
and a seed) and :class:`SyntheticSample` (what it returns).

One image is drawn in this order, every step from the one random generator seeded by ``seed``: how many
objects and how big, where and what shape (:mod:`.nuclei`, :mod:`.placement`, :mod:`.shapes`), their light
(:mod:`.nuclei`, :mod:`.appearance`, :mod:`.labelfree`), the realism features (:mod:`.scene`, each from
its own stream), then the microscope and camera (:mod:`.imaging`); a second channel draws the cells
around the nuclei last.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .appearance import cells
from .config import ConfigFields
from .imaging import acquire, draw_psf
from .labelfree import labelfree_emission
from .nuclei import Drawn, draw_objects, nuclei_emission
from .scene import Scene, realise, stream
from .shapes import Raster, exact_labels, rasterise


@dataclass(frozen=True)
class SyntheticConfig(ConfigFields):
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
        ``"cytoplasm"`` (filled cell bodies, dimmer over the nucleus), ``"membrane"`` (cell outlines) or
        ``"mixed"`` (either, drawn per image).
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
    camera_offset
        Range of the camera's constant offset, relative to brightness 1, added after the photon noise and
        before the read noise (as a camera adds it), so dark pixels' read noise is not cut at zero.
    vignetting
        Range of the light lost at the field's corners (0.3: corners at 70 %).
    saturated
        Range of the fraction of nuclei that are condensed (mitotic / apoptotic): smaller (the inner
        60–85 % of their shape), 3–6 times as bright as the brightest other nucleus, so they clip at the
        detector's maximum. Nuclei stain only.
    defocused
        Range of out-of-focus nuclei from other planes per labelled object: dim, strongly blurred, unlabelled.
    defocused_brightness
        Range of their peak brightness relative to the labelled objects' mean.
    seam
        Range of how much dimmer the line is where two labelled objects touch (0.4: 40 % dimmer on the
        line, over 1–2 pixels): touching nuclei separated only by a dim seam. Not for membrane stains.
    debris
        Range of unlabelled specks and fibres, bright (emitting) or dark (absorbing), per 10,000 pixels
        (2D) or 1,000,000 voxels (3D).
    label_boundary
        ``"shape"`` (labels are the objects' geometric shapes) or ``"half_max"`` (the annotators'
        convention: each label is where its object's own blurred, noise-free profile reaches half its peak,
        so blur and edge falloff do not make the visible object larger than its label).
    stain
        ``"nuclei"``, or ``"cells"``: one channel of the ``second_channel`` stain (cytoplasm, membrane or
        ``"mixed"``, drawn per image) and labels that are the cells (one-channel fluorescence only).
    modality
        ``"fluorescence"`` or ``"labelfree"``: transmitted light (phase contrast / defocused brightfield);
        the objects are cells, darker (or brighter) than a grey background with a bright (or dark) halo
        at their rim and a low-contrast interior; labels are the cells.
    labelfree_contrast
        Range of how far label-free cells depart from the background level (1).

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

    def replace(self, **changes: Any) -> SyntheticConfig:
        """A copy with some fields changed (checked like the constructor)."""
        return dataclasses.replace(self, **changes)

    def sample(self, seed: int) -> SyntheticSample:
        """One image with its labels; the same ``seed`` always gives the same arrays. See :func:`generate`."""
        return generate(self, seed)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SyntheticConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        return cls(**cls.check_keys(data))


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
    drawn = draw_objects(rng, config, spacing)
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
    kind = config.second_channel
    if kind == "mixed":
        kind = ("cytoplasm", "membrane")[int(stream(seed, "second_channel").integers(0, 2))]
    scene = _objects_light(rng, config, drawn, raster, labels, kept, spacing, kind, params)
    psf = draw_psf(rng, config, config.shape, spacing)
    camera = realise(scene, config, seed, raster, spacing, drawn.mean_diameter, kind, psf, params)
    image = acquire(rng, scene.signal, config, spacing, params, psf=psf, camera=camera)
    labels, kept = scene.labels, scene.kept

    cell_labels = None
    if config.channels == 2:
        cell_labels, emission, tex = _cells_around(rng, config, drawn, labels, kept, spacing, kind)
        second = (emission * tex).astype(np.float32)
        channel_params: dict[str, float] = {"mean_diameter": drawn.mean_diameter}
        image = np.stack([image, acquire(rng, second, config, spacing, channel_params)], axis=-1)
        params.update({f"cells_{k}": v for k, v in channel_params.items() if k != "mean_diameter"})
    return SyntheticSample(image=image, labels=labels, cells=cell_labels, params=params)


def _cells_around(
    rng: np.random.Generator,
    config: SyntheticConfig,
    drawn: Drawn,
    labels: np.ndarray,
    kept: np.ndarray,
    spacing: np.ndarray,
    kind: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells grown around the kept nuclei (:func:`.appearance.cells` with the config's extent and
    intensity): cell labels, their emission profile and its texture."""
    return cells(
        rng,
        labels,
        drawn.objects.diameter[kept],
        spacing,
        drawn.mean_diameter,
        extent=config.cell_extent,
        intensity=config.cell_intensity,
        kind=kind,
    )


def _objects_light(
    rng: np.random.Generator,
    config: SyntheticConfig,
    drawn: Drawn,
    raster: Raster,
    labels: np.ndarray,
    kept: np.ndarray,
    spacing: np.ndarray,
    kind: str,
    params: dict[str, float],
) -> Scene:
    """The labelled objects and their light: nuclei, cells (``stain="cells"``) or label-free cells."""
    if config.modality == "labelfree":
        signal, profile = labelfree_emission(
            rng,
            labels,
            raster.depth,
            spacing,
            drawn.mean_diameter,
            contrast=config.labelfree_contrast,
            params=params,
        )
        return Scene(labels, kept, signal, profile)
    if config.stain == "cells":
        cell_labels, profile, tex = _cells_around(rng, config, drawn, labels, kept, spacing, kind)
        params["cells"] = float(cell_labels.max())
        return Scene(cell_labels, kept, profile * tex, profile)
    signal, profile = nuclei_emission(rng, config, drawn, raster, labels, kept, spacing, params)
    return Scene(labels, kept, signal, profile, brightness=drawn.objects.intensity[kept])
