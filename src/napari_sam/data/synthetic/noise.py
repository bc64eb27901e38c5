"""Smooth random fields and a cheap blur: the ingredients of texture, background and optics.

Arrays are float32 with the image's axis order; ``sigma`` is per axis, in pixels.
"""

from __future__ import annotations

import math

import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: np.ndarray) -> np.ndarray:
    """``shape`` float32 Gaussian-correlated noise with zero mean and unit standard deviation.

    ``sigma`` per axis in pixels; large sigmas are drawn on a coarser grid and zoomed up.
    """
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


def low_frequency(rng: np.random.Generator, shape: tuple[int, ...], terms: int = 3) -> np.ndarray:
    """``shape`` float32: a smooth field in [-1, 1] over the whole image (a sum of separable cosines)."""
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


def blurred(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Gaussian blur of ``image``, cheap for large sigma (downsample, blur, upsample); same shape."""
    from scipy import ndimage

    sigma = np.asarray(sigma, dtype=float)
    step = np.maximum(np.floor(sigma / 3.0), 1).astype(int)
    if np.all(step == 1):
        return ndimage.gaussian_filter(image, sigma, truncate=3.0)
    small = image[tuple(slice(None, None, s) for s in step)]
    small = ndimage.gaussian_filter(small, sigma / step, truncate=3.0)
    return ndimage.zoom(small, [n / m for n, m in zip(image.shape, small.shape, strict=True)], order=1)
