"""The microscope and the camera: objects' emission → one noisy channel in the output dtype.

Background, out-of-focus haze, uneven illumination, the point-spread function, photon (Poisson) and read
(Gaussian) noise, then a detector scale for ``uint8``, ``uint16`` or ``float32``.
"""

from __future__ import annotations

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


def acquire(
    rng: np.random.Generator,
    signal: np.ndarray,
    cfg: ImagingRanges,
    spacing: np.ndarray,
    params: dict[str, float],
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
        ``background`` are added to it.

    Returns
    -------
    np.ndarray
        ``signal.shape`` in ``cfg.dtype``: ``float32`` in [0, 1], ``uint8`` in 0..255, ``uint16`` in a
        12-, 14- or 16-bit range above a small camera offset.
    """
    shape = signal.shape
    ndim = len(shape)
    sigma = np.full(ndim, draw(rng, cfg.blur))
    if ndim == 3:
        sigma[0] = sigma[0] * draw(rng, cfg.axial_blur) / spacing[0]
        depth = np.exp(-draw(rng, cfg.depth_attenuation) * np.linspace(0.0, 1.0, shape[0], dtype=np.float32))
        signal = signal * depth[:, None, None]
    haze_amount = draw(rng, cfg.haze)
    mean_d = params["mean_diameter"]
    clean = blurred(signal, sigma) if sigma.max() > 0 else signal.copy()
    if haze_amount > 0:
        clean += np.float32(haze_amount) * blurred(signal, np.maximum(1.5 * mean_d / spacing, 1.0))
    level = draw(rng, cfg.background)
    variation = draw(rng, cfg.background_variation)
    clean += np.float32(level) * (1.0 + np.float32(variation) * low_frequency(rng, shape))
    illumination = draw(rng, cfg.illumination_variation)
    if illumination > 0:
        clean *= 1.0 + np.float32(illumination) * low_frequency(rng, shape)
    np.maximum(clean, 0.0, out=clean)
    photons = draw_log(rng, cfg.photons)
    noisy = rng.poisson(clean * np.float32(photons)).astype(np.float32)
    noisy *= np.float32(1.0 / photons)
    read = draw(rng, cfg.read_noise)
    if read > 0:
        noisy += rng.normal(0.0, read, shape).astype(np.float32)
    white = float(clean.max()) * rng.uniform(1.0, 1.4) + 1e-6
    scaled = np.clip(noisy * np.float32(1.0 / white), 0.0, 1.0)
    params.update(blur=float(sigma[-1]), photons=photons, read_noise=read, background=level)
    return _to_dtype(rng, scaled, cfg.dtype)


def _to_dtype(rng: np.random.Generator, scaled: np.ndarray, dtype: str) -> np.ndarray:
    """``scaled`` float32 in [0, 1] → the detector's ``dtype`` (a uint16 camera draws its bit depth)."""
    if dtype == "float32":
        return scaled
    if dtype == "uint8":
        return (scaled * 255.0 + 0.5).astype(np.uint8)
    full = float(2 ** int(rng.choice([12, 14, 16])) - 1)
    offset = rng.uniform(0.0, 0.03) * full
    return (scaled * np.float32(full - offset) + np.float32(offset + 0.5)).astype(np.uint16)
