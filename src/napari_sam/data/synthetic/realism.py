"""What real fluorescence images have beyond clean objects: dim seams between touching objects, bright
saturated (mitotic / apoptotic) nuclei, out-of-focus nuclei from other planes, and debris.

Each feature takes its own random generator (the caller seeds one per feature from the image's seed), so
switching one on never changes what the others, or the image's main stream, draw. Arrays have the image's
axis order ``(Y, X)`` or ``(Z, Y, X)``; lengths are physical (``spacing`` per axis, ``Y`` / ``X`` pixels).
"""

from __future__ import annotations

import math

import numpy as np

from .ranges import Range, draw
from .shapes import Raster, one_region_each


def contact_lines(labels: np.ndarray) -> np.ndarray:
    """``labels.shape`` bool: object pixels with a face neighbour of another object (not background)."""
    contact = np.zeros(labels.shape, dtype=bool)
    for axis in range(labels.ndim):
        lo = [slice(None)] * labels.ndim
        hi = [slice(None)] * labels.ndim
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        a, b = labels[tuple(lo)], labels[tuple(hi)]
        touch = (a != b) & (a > 0) & (b > 0)
        contact[tuple(lo)] |= touch
        contact[tuple(hi)] |= touch
    return contact


def seam_factor(
    rng: np.random.Generator, labels: np.ndarray, spacing: np.ndarray, depth: Range
) -> np.ndarray:
    """A multiplicative dip along the lines where two objects touch (a dim seam between touching nuclei).

    Parameters
    ----------
    rng
        The feature's own random generator.
    labels
        The objects' uint32 labels.
    spacing
        ``(ndim,)`` pixel spacing per axis.
    depth
        The config's ``seam`` range: the relative dimming on the contact line itself.

    Returns
    -------
    np.ndarray
        ``labels.shape`` float32 in ``(0, 1]``: ``1 - d * exp(-r² / 2w²)`` inside objects, ``r`` the
        distance to the nearest contact line, ``w`` 0.5–1 pixel; 1 on background.
    """
    from scipy import ndimage

    contact = contact_lines(labels)
    factor = np.ones(labels.shape, dtype=np.float32)
    if not contact.any():
        return factor
    d = draw(rng, depth)
    width = rng.uniform(0.5, 1.0)
    near = ndimage.binary_dilation(contact, iterations=3) & (labels > 0)
    distance = ndimage.distance_transform_edt(~contact, sampling=spacing)[near]
    factor[near] = 1.0 - d * np.exp(-(distance**2) / (2 * width**2))
    return factor


def condense(
    rng: np.random.Generator,
    labels: np.ndarray,
    kept: np.ndarray,
    raster: Raster,
    brightness: np.ndarray,
    fraction: Range,
    min_area: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Some objects become small, compact and very bright (mitotic / apoptotic nuclei).

    A chosen object shrinks to the inner ``0.6–0.85`` of its shape (its normalised radius below that);
    its brightness becomes ``3–6`` times the brightest object's, so it saturates.

    Parameters
    ----------
    rng
        The feature's own random generator.
    labels
        uint32 labels ``1..N`` (not changed).
    kept
        ``(N,)`` the object index (in ``raster``) of label ``k + 1``.
    raster
        The objects' fields (:func:`~napari_sam.data.synthetic.shapes.rasterise`).
    brightness
        ``(N,)`` the brightness of label ``k + 1``.
    fraction
        The config's ``saturated`` range: the fraction of objects that condense.
    min_area
        A condensed object keeps at least this many pixels (else it keeps its size).

    Returns
    -------
    labels
        The new labels (same ids; condensed objects smaller).
    chosen
        ``(M,)`` ids of the condensed objects.
    gain
        ``(N + 1,)`` float32 brightness factor per id (1 for objects that did not condense).
    """
    n = len(kept)
    gain = np.ones(n + 1, dtype=np.float32)
    m = min(round(draw(rng, fraction) * n), n)
    if m == 0:
        return labels, np.zeros(0, dtype=np.intp), gain
    chosen = np.sort(rng.choice(np.arange(1, n + 1), m, replace=False))
    shrink = rng.uniform(0.6, 0.85, m)
    top = float(brightness.max())
    gain[chosen] = (rng.uniform(3.0, 6.0, m) * top / np.maximum(brightness[chosen - 1], 1e-6)).astype(
        np.float32
    )
    out = labels.copy()
    for k, s in zip(chosen, shrink, strict=True):
        got = raster.fields[kept[k - 1]]
        if got is None:
            continue
        box, f = got
        view = out[box]
        outer = (view == k) & (f >= s)
        if np.count_nonzero(view == k) - np.count_nonzero(outer) >= min_area:
            view[outer] = 0
    return one_region_each(out), chosen, gain


def defocused_nuclei(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spacing: np.ndarray,
    n_objects: int,
    mean_d: float,
    brightness: float,
    *,
    amount: Range,
    relative: Range,
) -> np.ndarray:
    """Unlabelled, strongly blurred dim nuclei from planes above and below the focus.

    Parameters
    ----------
    rng
        The feature's own random generator.
    shape, spacing
        The image's shape and pixel spacing per axis.
    n_objects
        The number of labelled objects; ``amount`` out-of-focus nuclei are drawn per object.
    mean_d
        The image's mean object diameter, pixels.
    brightness
        The in-focus objects' mean brightness.
    amount, relative
        The config's ``defocused`` (per object, at least one when > 0) and ``defocused_brightness`` ranges.

    Returns
    -------
    np.ndarray
        ``shape`` float32 emission: Gaussian blobs of width ``sqrt((d / 4)² + s²)``, ``s`` the defocus
        blur (0.25–0.7 of the diameter ``d``).
    """
    out = np.zeros(shape, dtype=np.float32)
    rate = draw(rng, amount)
    if rate <= 0:
        return out
    m = max(round(rate * max(n_objects, 1)), 1)
    extent = np.asarray(shape, dtype=float) * spacing
    centres = rng.uniform(0.0, 1.0, (m, len(shape))) * extent
    diameters = mean_d * np.exp(rng.normal(0.0, 0.2, m))
    widths = np.sqrt((diameters / 4) ** 2 + (diameters * rng.uniform(0.25, 0.7, m)) ** 2)
    level = draw(rng, relative) * brightness
    peaks = level * rng.uniform(0.4, 1.0, m)
    for c, w, p in zip(centres, widths, peaks, strict=True):
        lo = np.maximum(np.floor((c - 3 * w) / spacing).astype(int), 0)
        hi = np.minimum(np.ceil((c + 3 * w) / spacing).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        r2 = np.zeros(tuple(hi - lo), dtype=np.float32)
        for d in range(len(shape)):
            coord = (np.arange(lo[d], hi[d]) * spacing[d] - c[d]).astype(np.float32)
            r2 += (coord**2).reshape([-1 if e == d else 1 for e in range(len(shape))])
        box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        out[box] += np.float32(p) * np.exp(-r2 / np.float32(2 * w * w))
    return out


def debris(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spacing: np.ndarray,
    brightness: float,
    *,
    density: Range,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Unlabelled specks and fibres: bright (autofluorescent) ones emit, dark ones absorb.

    Parameters
    ----------
    rng
        The feature's own random generator.
    shape, spacing
        The image's shape and pixel spacing per axis.
    brightness
        The objects' mean brightness (bright debris is 0.3–2 times it).
    density
        The config's ``debris`` range: pieces per 10,000 pixels (2D) or 1,000,000 voxels (3D); at least
        one piece when > 0.

    Returns
    -------
    emission
        ``shape`` float32: the bright pieces' light.
    transmission
        ``shape`` float32 in ``(0, 1]``: the fraction of light the dark pieces let through.
    pieces
        How many pieces were drawn.
    """
    from scipy import ndimage

    ndim = len(shape)
    emission = np.zeros(shape, dtype=np.float32)
    absorbed = np.zeros(shape, dtype=np.float32)
    rate = draw(rng, density)
    m = max(round(rate * math.prod(shape) / (1e4 if ndim == 2 else 1e6)), 1) if rate > 0 else 0
    for _ in range(m):
        bright = rng.random() < 0.6
        fibre = rng.random() < 0.2
        start = rng.uniform(0.0, 1.0, ndim) * np.asarray(shape) * spacing
        if fibre:  # a smooth random walk, 10–60 pixels long
            steps = int(rng.uniform(20, 120))
            direction = rng.normal(size=ndim)
            points = [start]
            for _ in range(steps):
                direction = direction / max(float(np.linalg.norm(direction)), 1e-9) + rng.normal(
                    0, 0.15, ndim
                )
                points.append(points[-1] + 0.5 * direction / max(float(np.linalg.norm(direction)), 1e-9))
            where = np.asarray(points)
        else:
            where = start[None, :]
        index = np.round(where / spacing).astype(int)
        index = index[np.all((index >= 0) & (index < shape), axis=1)]
        if len(index) == 0:
            continue
        width = rng.uniform(0.5, 1.2) if fibre else rng.uniform(0.6, 1.8)
        box = _box(index, shape, math.ceil(4 * width) + 1)
        piece = np.zeros(tuple(b.stop - b.start for b in box), dtype=np.float32)
        piece[tuple((index - [b.start for b in box]).T)] = 1.0
        piece = ndimage.gaussian_filter(piece, width / spacing, truncate=3.0)
        peak = float(piece.max())
        if peak <= 0:
            continue
        piece /= peak
        if bright:
            emission[box] += np.float32(brightness * rng.uniform(0.3, 2.0)) * piece
        else:
            absorbed[box] = np.maximum(absorbed[box], np.float32(rng.uniform(0.2, 0.7)) * piece)
    return emission, (1.0 - absorbed).astype(np.float32), m


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-9)


def _box(index: np.ndarray, shape: tuple[int, ...], pad: int) -> tuple[slice, ...]:
    lo = np.maximum(index.min(axis=0) - pad, 0)
    hi = np.minimum(index.max(axis=0) + pad + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
