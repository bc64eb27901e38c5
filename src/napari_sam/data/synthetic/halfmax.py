"""The annotators' label convention: an object's boundary lies at the half maximum of its edge profile.

A label drawn from the object's geometric shape includes the dim rim that blur and edge falloff make, so
it is larger than the object a person sees and outlines; :func:`half_max_labels` redraws every label where
the object's own blurred, noise-free profile is at least half of its peak. Arrays have the image's axis
order ``(Y, X)`` or ``(Z, Y, X)``.
"""

from __future__ import annotations

import math

import numpy as np

from .shapes import one_region_each


def half_max_labels(
    labels: np.ndarray, profile: np.ndarray, sigma: np.ndarray, min_area: int
) -> tuple[np.ndarray, np.ndarray]:
    """Labels redrawn at the half maximum of each object's blurred profile.

    Every object's own profile (``profile`` inside its label, 0 elsewhere) is blurred by the PSF. A pixel
    belongs to the object whose blurred profile, relative to its own peak, is highest there (the dominant
    object), and is foreground when the sum of all blurred profiles reaches half of the dominant object's
    peak: an isolated object's label is its own half-maximum region, and touching objects keep a common
    border where their summed light stays above half. Holes (a membrane's dim interior) are filled.

    Parameters
    ----------
    labels
        uint32 labels ``1..N`` drawn from the objects' shapes.
    profile
        ``labels.shape`` float32: the smooth emission (no texture, no noise) the objects' profiles come from.
    sigma
        ``(ndim,)`` the PSF's Gaussian sigma per axis, pixels.
    min_area
        Objects left smaller than this (pixels) are dropped.

    Returns
    -------
    labels
        uint32, ids ``1..M`` consecutive, each object one face-connected region.
    source
        ``(M,)`` int: the input id each new id came from.
    """
    from scipy import ndimage

    n = int(labels.max()) if labels.size else 0
    sigma = np.asarray(sigma, dtype=float)
    pad = [math.ceil(3.0 * s) + 1 for s in sigma]
    total = np.zeros(labels.shape, dtype=np.float32)
    best = np.zeros(labels.shape, dtype=np.float32)
    owner = np.zeros(labels.shape, dtype=np.uint32)
    peak = np.zeros(n + 1, dtype=np.float32)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        box = tuple(
            slice(max(b.start - p, 0), min(b.stop + p, size))
            for b, p, size in zip(box, pad, labels.shape, strict=True)
        )
        own = np.where(labels[box] == k, profile[box], np.float32(0.0)).astype(np.float32)
        if sigma.max() > 0:
            own = ndimage.gaussian_filter(own, sigma, mode="nearest", truncate=3.0)
        top = float(own.max())
        if top <= 0:
            continue
        peak[k] = top
        total[box] += own
        ratio = own / np.float32(top)
        view_b, view_o = best[box], owner[box]
        higher = ratio > view_b
        view_b[higher] = ratio[higher]
        view_o[higher] = k
    out = np.where((owner > 0) & (total >= np.float32(0.5) * peak[owner]), owner, 0).astype(np.uint32)
    for k, box in enumerate(ndimage.find_objects(out), start=1):
        if box is not None:
            view = out[box]
            view[_holes(view == k, box, labels.shape) & (view == 0) & (labels[box] == k)] = k
    out = one_region_each(out)
    area = np.bincount(out.ravel(), minlength=n + 1)
    keep = area >= min_area
    keep[0] = False
    new_id = np.zeros(n + 1, dtype=np.uint32)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return new_id[out], np.flatnonzero(keep)


def _holes(mask: np.ndarray, box: tuple[slice, ...], shape: tuple[int, ...]) -> np.ndarray:
    """``mask`` with its holes filled; the image border closes a hole (a ring cut by the border)."""
    from scipy import ndimage

    padded = np.pad(mask, 1)
    for axis, (b, size) in enumerate(zip(box, shape, strict=True)):
        for at_border, index in ((b.start == 0, 0), (b.stop == size, -1)):
            if at_border:
                edge: list[slice | int] = [slice(None)] * mask.ndim
                edge[axis] = index
                padded[tuple(edge)] = True
    return ndimage.binary_fill_holes(padded)[(slice(1, -1),) * mask.ndim]
