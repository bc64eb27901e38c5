"""What the objects look like before imaging: chromatin-like texture and nucleoli inside the nuclei, and
the cells grown around them for the second channel.

Arrays have the image's axis order ``(Y, X)`` or ``(Z, Y, X)``; lengths are physical (``spacing`` per axis).
"""

from __future__ import annotations

import numpy as np

from .noise import smooth_noise
from .ranges import Range, draw
from .shapes import Objects, one_region_each


def texture(
    rng: np.random.Generator,
    objects: Objects,
    kept: np.ndarray,
    labels: np.ndarray,
    spacing: np.ndarray,
    mean_d: float,
    *,
    amount: Range,
    nucleoli: Range,
    nucleolus_contrast: Range,
) -> np.ndarray:
    """Multiplicative interior texture: fine + coarse chromatin speckle and nucleoli.

    Parameters
    ----------
    rng
        The image's random generator.
    objects, kept
        All objects, and the object index of each label ``k + 1``.
    labels
        The final uint32 labels ``1..N``.
    spacing
        ``(ndim,)`` pixel spacing per axis.
    mean_d
        The image's mean object diameter (sets the coarse speckle and the nucleolus size).
    amount, nucleoli, nucleolus_contrast
        The config's ``texture``, ``nucleoli`` and ``nucleolus_contrast`` ranges.

    Returns
    -------
    np.ndarray
        ``labels.shape`` float32 factor, >= 0.1.
    """
    from scipy import ndimage

    shape = labels.shape
    strength = np.float32(draw(rng, amount))
    fine = smooth_noise(rng, shape, rng.uniform(0.6, 1.3) / spacing)
    coarse = smooth_noise(rng, shape, max(mean_d / 8.0, 1.0) / spacing)
    mix = np.float32(rng.uniform(0.3, 0.8))
    tex = 1.0 + strength * (mix * fine + (1.0 - mix) * coarse)
    contrast = draw(rng, nucleolus_contrast)
    spots = np.zeros(shape, dtype=np.float32)
    counts = rng.integers(int(nucleoli[0]), int(nucleoli[1]) + 1, len(kept))
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


def cells(
    rng: np.random.Generator,
    nuclei: np.ndarray,
    diameter: np.ndarray,
    spacing: np.ndarray,
    mean_d: float,
    *,
    extent: Range,
    intensity: Range,
    kind: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cell labels grown from the nuclei (distance-limited, irregular) and the second channel's emission.

    Parameters
    ----------
    rng
        The image's random generator.
    nuclei
        The final uint32 nucleus labels ``1..N``.
    diameter
        ``(N,)`` the diameter of nucleus ``k + 1``.
    spacing
        ``(ndim,)`` pixel spacing per axis.
    mean_d
        The image's mean nucleus diameter (sets how wobbly the cell outlines are).
    extent, intensity, kind
        The config's ``cell_extent``, ``cell_intensity`` and ``second_channel`` (``"cytoplasm"`` or
        ``"membrane"``).

    Returns
    -------
    cells
        ``nuclei.shape`` uint32: cell ``k`` contains nucleus ``k`` and is one connected region.
    emission
        ``nuclei.shape`` float32: filled cell bodies (cytoplasm) or their outlines (membrane), smooth.
    tex
        ``nuclei.shape`` float32: the texture that multiplies ``emission`` in the image.
    """
    from scipy import ndimage
    from skimage.segmentation import find_boundaries

    shape = nuclei.shape
    if not nuclei.any():
        empty = np.zeros(shape, dtype=np.float32)
        return np.zeros(shape, dtype=np.uint32), empty, empty + 1.0
    distance, nearest = ndimage.distance_transform_edt(nuclei == 0, sampling=spacing, return_indices=True)
    owner = nuclei[tuple(nearest)]
    del nearest
    reach = np.zeros(len(diameter) + 1, dtype=np.float32)
    reach[1:] = diameter * rng.uniform(extent[0], extent[1], len(diameter))
    wobble = 1.0 + 0.25 * smooth_noise(rng, shape, max(mean_d / 3.0, 1.0) / spacing)
    limit = reach[owner] * wobble
    labels = np.where(distance <= limit, owner, 0).astype(np.uint32)
    labels = one_region_each(labels, keep_where=nuclei > 0)
    i_lo, i_hi = np.sort(rng.uniform(intensity[0], intensity[1], 2))
    bright = np.zeros(len(diameter) + 1, dtype=np.float32)
    bright[1:] = rng.uniform(i_lo, i_hi, len(diameter))
    tex = 1.0 + np.float32(rng.uniform(0.05, 0.3)) * smooth_noise(rng, shape, rng.uniform(0.7, 2.0) / spacing)
    if kind == "cytoplasm":
        # brightest around the nucleus, fading to the cell edge; the nucleus itself partly excluded
        fade = 1.0 - 0.5 * np.minimum(distance / np.maximum(limit, 1e-3), 1.0)
        nucleus_level = np.float32(rng.uniform(0.2, 0.9))
        emission = bright[labels] * fade.astype(np.float32) * np.where(nuclei > 0, nucleus_level, 1.0)
    else:
        outline = find_boundaries(labels, mode="inner")
        faint = np.float32(rng.uniform(0.05, 0.25))
        emission = bright[labels] * np.where(outline, np.float32(1.0), faint)
    return labels, emission.astype(np.float32), tex.astype(np.float32)
