"""The basic nuclei generator: elliptical nuclei on an uneven background, blurred, Poisson + Gaussian noise.

The first generator of this project, kept unchanged because the shipped nano model v0 was trained on
it (``scripts/train_nano.py``); :mod:`napari_sam.data.synthetic` is the richer generator for
everything else.
"""

from __future__ import annotations

import numpy as np


def basic_nuclei_2d(
    shape: tuple[int, int] = (512, 512),
    *,
    n_objects: int = 30,
    radius: tuple[float, float] = (8.0, 25.0),
    seed: int = 0,
    dtype: type = np.uint16,
) -> tuple[np.ndarray, np.ndarray]:
    """A fluorescence-like image of nuclei and its labels.

    Parameters
    ----------
    shape
        ``(rows, cols)``.
    n_objects
        Nuclei to place (fewer if they do not fit without overlapping).
    radius
        Range of semi-axis lengths in pixels.
    seed
        Random seed; equal seeds give equal images.
    dtype
        ``np.uint16``, ``np.uint8`` or ``np.float32``.

    Returns
    -------
    image
        ``(rows, cols)`` of ``dtype``.
    labels
        ``(rows, cols)`` uint32, 0 background, 1..N nuclei.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    rows, cols = shape
    labels = np.zeros(shape, dtype=np.uint32)
    signal = np.zeros(shape, dtype=np.float32)
    yy, xx = np.mgrid[0:rows, 0:cols]
    next_id = 1
    for _ in range(n_objects * 5):
        if next_id > n_objects:
            break
        a, b = rng.uniform(*radius, size=2)
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        theta = rng.uniform(0, np.pi)
        r0, r1 = int(max(cy - max(a, b) - 2, 0)), int(min(cy + max(a, b) + 3, rows))
        c0, c1 = int(max(cx - max(a, b) - 2, 0)), int(min(cx + max(a, b) + 3, cols))
        if r1 - r0 < 3 or c1 - c0 < 3:
            continue
        dy, dx = yy[r0:r1, c0:c1] - cy, xx[r0:r1, c0:c1] - cx
        u = dx * np.cos(theta) + dy * np.sin(theta)
        v = -dx * np.sin(theta) + dy * np.cos(theta)
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        if not inside.any() or (labels[r0:r1, c0:c1][inside] > 0).any():
            continue
        labels[r0:r1, c0:c1][inside] = next_id
        brightness = rng.uniform(0.4, 1.0)
        texture = 1.0 + 0.25 * rng.standard_normal(inside.shape)
        signal[r0:r1, c0:c1][inside] = brightness * texture[inside]
        next_id += 1
    signal = ndimage.gaussian_filter(signal, 1.2)
    background = 0.08 + 0.05 * np.sin(yy / rows * np.pi) * np.cos(xx / cols * np.pi)
    photons = rng.poisson((signal + background) * 200.0).astype(np.float32)
    image = photons / 200.0 + rng.normal(0.0, 0.01, shape).astype(np.float32)
    image = np.clip(image, 0, None)
    if dtype == np.float32:
        return image.astype(np.float32), labels
    peak = np.iinfo(dtype).max
    scaled = image / max(float(image.max()), 1e-6) * peak * 0.9
    return scaled.astype(dtype), labels
