"""Label-free images: cells in transmitted light (phase contrast, defocused brightfield) on a grey field.

A cell is a thin dome of optical thickness (thicker at its nucleus, with granules); the microscope shows
the thickness band-passed: a cell is darker (or brighter) than the background, its flat interior fades
towards the background level (the shade-off of phase contrast), and a bright (or dark) halo rings it just
outside its edge. Arrays have the image's axis order ``(Y, X)`` or ``(Z, Y, X)``.
"""

from __future__ import annotations

import numpy as np

from .noise import smooth_noise
from .ranges import Range, draw


def labelfree_emission(
    rng: np.random.Generator,
    labels: np.ndarray,
    depth: np.ndarray,
    spacing: np.ndarray,
    mean_d: float,
    *,
    contrast: Range,
    params: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """The light a transmitted-light microscope sends to the camera, before its PSF, noise and camera.

    Parameters
    ----------
    rng
        The image's random generator.
    labels
        uint32 cell labels ``1..N``.
    depth
        ``labels.shape`` float32: every pixel's normalised radius in the cell that owns it (< 1 inside).
    spacing
        ``(ndim,)`` pixel spacing per axis.
    mean_d
        The image's mean cell diameter, pixels (sets the halo's width).
    contrast
        The config's ``labelfree_contrast`` range: how far the cells' darkest (brightest) part departs
        from the background level 1.
    params
        The drawn ``labelfree_contrast``, ``polarity`` (+1: dark cells with bright halos, -1: the reverse)
        and ``halo_width`` (pixels) are added to it.

    Returns
    -------
    signal
        ``labels.shape`` float32, about 1 on the background.
    profile
        ``labels.shape`` float32: 1 inside every cell (its edge, which the half-maximum labels follow).
    """
    from scipy import ndimage

    inside = labels > 0
    n = int(labels.max()) if labels.size else 0
    scale = np.zeros(n + 1, dtype=np.float32)
    scale[1:] = rng.uniform(0.6, 1.0, n)
    power = rng.uniform(2.0, 6.0)
    edge = np.clip(depth, 0.0, 1.0)
    thickness = scale[labels] * np.sqrt(np.maximum(1.0 - edge**power, 0.0)).astype(np.float32)
    nucleus = np.float32(rng.uniform(0.0, 0.5))
    thickness += nucleus * scale[labels] * np.maximum(1.0 - (edge / 0.4) ** 2, 0.0).astype(np.float32)
    granules = np.float32(rng.uniform(0.05, 0.2))
    thickness *= 1.0 + granules * smooth_noise(rng, labels.shape, rng.uniform(0.7, 1.5) / spacing)
    thickness = np.where(inside, np.maximum(thickness, 0.0), 0.0).astype(np.float32)

    polarity = 1.0 if rng.random() < 0.7 else -1.0
    amount = draw(rng, contrast)
    sharp = rng.uniform(0.5, 1.2) / spacing
    halo = rng.uniform(1.5, 3.0) + mean_d * rng.uniform(0.02, 0.08)
    band = ndimage.gaussian_filter(thickness, sharp, truncate=3.0) - ndimage.gaussian_filter(
        thickness, halo / spacing, truncate=3.0, mode="nearest"
    )
    band /= max(float(np.abs(band).max()), 1e-6)
    interior = np.float32(rng.uniform(0.1, 0.5))  # how much of the cell's thickness survives the shade-off
    band += interior * thickness / max(float(thickness.max()), 1e-6)
    signal = 1.0 - np.float32(polarity * amount / (1.0 + interior)) * band
    absorb = np.float32(rng.uniform(0.0, 0.08))
    signal *= 1.0 - absorb * thickness / max(float(thickness.max()), 1e-6)
    np.maximum(signal, 0.05, out=signal)
    params.update(labelfree_contrast=amount, polarity=polarity, halo_width=halo)
    return signal.astype(np.float32), inside.astype(np.float32)
