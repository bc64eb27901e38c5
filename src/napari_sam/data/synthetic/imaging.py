"""The microscope and the camera: objects' emission → one noisy channel in the output dtype.

Background, out-of-focus haze, uneven illumination, the point-spread function, photon (Poisson) and read
(Gaussian) noise, then a detector scale for ``uint8``, ``uint16`` or ``float32``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .noise import blurred, low_frequency
from .ranges import Range, draw, draw_log


class ImagingRanges(Protocol):
    """The fields of :class:`~napari_sam.data.synthetic.SyntheticConfig` that imaging reads (see there)."""

    @property
    def blur(self) -> Range: ...
    @property
    def axial_blur(self) -> Range: ...
    @property
    def depth_attenuation(self) -> Range: ...
    @property
    def haze(self) -> Range: ...
    @property
    def background(self) -> Range: ...
    @property
    def background_variation(self) -> Range: ...
    @property
    def illumination_variation(self) -> Range: ...
    @property
    def photons(self) -> Range: ...
    @property
    def read_noise(self) -> Range: ...
    @property
    def dtype(self) -> str: ...


@dataclass(frozen=True, eq=False)
class Psf:
    """The point-spread function one image drew: Gaussian sigma per axis, and 3D depth attenuation."""

    #: ``(ndim,)`` sigma in pixels per axis
    sigma: np.ndarray
    #: ``(planes,)`` float32 signal factor per plane (3D), or ``None`` (2D)
    depth: np.ndarray | None


@dataclass(frozen=True, eq=False)
class Camera:
    """What realism adds to :func:`acquire` (``None`` fields and zeros add nothing).

    ``boost`` is emission that is imaged like the rest but left out of the white point, so it saturates
    (bright condensed nuclei); ``transmission`` multiplies the light reaching the camera (dark debris, in
    focus); ``vignetting`` darkens the corners by that fraction; ``offset`` is the camera's constant,
    relative to brightness 1, added after the photon noise and before the read noise.
    """

    boost: np.ndarray | None = None
    transmission: np.ndarray | None = None
    vignetting: float = 0.0
    offset: float = 0.0


def draw_psf(
    rng: np.random.Generator, cfg: ImagingRanges, shape: tuple[int, ...], spacing: np.ndarray
) -> Psf:
    """The image's point-spread function (the first draws of :func:`acquire`, in its order)."""
    ndim = len(shape)
    sigma = np.full(ndim, draw(rng, cfg.blur))
    depth = None
    if ndim == 3:
        sigma[0] = sigma[0] * draw(rng, cfg.axial_blur) / spacing[0]
        depth = np.exp(-draw(rng, cfg.depth_attenuation) * np.linspace(0.0, 1.0, shape[0], dtype=np.float32))
    return Psf(sigma, depth)


def vignette(shape: tuple[int, ...], amount: float) -> np.ndarray:
    """``shape`` float32 (Y / X axes only): 1 at the field's centre, ``1 - amount`` at its corners."""
    rows, cols = shape[-2:]
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]
    return (1.0 - np.float32(amount) * (y * y + x * x) / np.float32(2.0)).astype(np.float32)


def acquire(
    rng: np.random.Generator,
    signal: np.ndarray,
    cfg: ImagingRanges,
    spacing: np.ndarray,
    params: dict[str, float],
    *,
    psf: Psf | None = None,
    camera: Camera | None = None,
) -> np.ndarray:
    """Objects' emission → one noisy channel in the output dtype.

    Parameters
    ----------
    rng
        The image's random generator.
    signal
        ``(Y, X)`` or ``(Z, Y, X)`` float32 emission (brightness 1 is a bright object).
    cfg
        The ranges the imaging values are drawn from.
    spacing
        ``(ndim,)`` pixel spacing per axis (``Z`` in pixel units of ``Y`` / ``X``).
    params
        Reads ``"mean_diameter"`` (the haze's size); the drawn ``blur``, ``photons``, ``read_noise`` and
        ``background`` are added to it (and ``camera_offset``, ``vignetting`` with a ``camera``).
    psf
        The point-spread function already drawn by :func:`draw_psf` from ``rng``; ``None`` draws it here.
    camera
        Realism additions (:class:`Camera`); ``None`` images exactly as before they existed.

    Returns
    -------
    np.ndarray
        ``signal.shape`` in ``cfg.dtype``: ``float32`` in [0, 1], ``uint8`` in 0..255, ``uint16`` in a
        12-, 14- or 16-bit range above a small camera offset.
    """
    shape = signal.shape
    if psf is None:
        psf = draw_psf(rng, cfg, shape, spacing)
    sigma = psf.sigma
    if psf.depth is not None:
        signal = signal * psf.depth[:, None, None]
    haze_amount = draw(rng, cfg.haze)
    mean_d = params["mean_diameter"]
    clean = blurred(signal, sigma) if sigma.max() > 0 else signal.copy()
    if haze_amount > 0:
        clean += np.float32(haze_amount) * blurred(signal, np.maximum(1.5 * mean_d / spacing, 1.0))
    level = draw(rng, cfg.background)
    variation = draw(rng, cfg.background_variation)
    clean += np.float32(level) * (1.0 + np.float32(variation) * low_frequency(rng, shape))
    illumination = draw(rng, cfg.illumination_variation)
    light: np.ndarray | float = 1.0
    if illumination > 0:
        light = 1.0 + np.float32(illumination) * low_frequency(rng, shape)
        clean *= light
    top = None
    if camera is not None:
        clean, top = _camera_light(clean, light, sigma, camera, params)
    np.maximum(clean, 0.0, out=clean)
    photons = draw_log(rng, cfg.photons)
    noisy = rng.poisson(clean * np.float32(photons)).astype(np.float32)
    noisy *= np.float32(1.0 / photons)
    if camera is not None and camera.offset > 0:
        noisy += np.float32(camera.offset)
    read = draw(rng, cfg.read_noise)
    if read > 0:
        noisy += rng.normal(0.0, read, shape).astype(np.float32)
    if top is None:
        white = float(clean.max()) * rng.uniform(1.0, 1.4) + 1e-6
    else:
        white = top * rng.uniform(1.0, 1.4) + 1e-6
    scaled = np.clip(noisy * np.float32(1.0 / white), 0.0, 1.0)
    params.update(blur=float(sigma[-1]), photons=photons, read_noise=read, background=level)
    return _to_dtype(rng, scaled, cfg.dtype)


def _camera_light(
    clean: np.ndarray,
    light: np.ndarray | float,
    sigma: np.ndarray,
    camera: Camera,
    params: dict[str, float],
) -> tuple[np.ndarray, float]:
    """Vignetting, dark debris and saturating emission on ``clean``; and the level the white point scales.

    The white point's level is the brightest pixel before ``camera.boost`` (which thus saturates), plus
    the camera offset.
    """
    if camera.vignetting > 0:
        clean *= vignette(clean.shape, camera.vignetting)
    if camera.transmission is not None:
        clean *= blurred(camera.transmission, sigma) if sigma.max() > 0 else camera.transmission
    top = max(float(clean.max()), 0.0) + camera.offset
    if camera.boost is not None:
        extra = blurred(camera.boost, sigma) if sigma.max() > 0 else camera.boost.copy()
        extra *= light
        if camera.vignetting > 0:
            extra *= vignette(clean.shape, camera.vignetting)
        clean += extra
    params.update(camera_offset=camera.offset, vignetting=camera.vignetting)
    return clean, top


def _to_dtype(rng: np.random.Generator, scaled: np.ndarray, dtype: str) -> np.ndarray:
    """``scaled`` float32 in [0, 1] → the detector's ``dtype`` (a uint16 camera draws its bit depth)."""
    if dtype == "float32":
        return scaled
    if dtype == "uint8":
        return (scaled * 255.0 + 0.5).astype(np.uint8)
    full = float(2 ** int(rng.choice([12, 14, 16])) - 1)
    offset = rng.uniform(0.0, 0.03) * full
    return (scaled * np.float32(full - offset) + np.float32(offset + 0.5)).astype(np.uint16)
