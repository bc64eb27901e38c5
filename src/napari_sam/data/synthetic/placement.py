"""Where the objects go and how they are turned: random orientations and sparse-to-clustered placement.

Coordinates are physical: array index times the pixel spacing per axis (``Z`` slices are ``z_spacing``
pixels apart), axis order ``(Y, X)`` or ``(Z, Y, X)``.
"""

from __future__ import annotations

import numpy as np

from .ranges import Range


def rotations(rng: np.random.Generator, n: int, ndim: int) -> np.ndarray:
    """``(n, ndim, ndim)`` float64: column k is object axis k (long, short[, axial]) in array coordinates.

    In 2D each object turns by a uniform angle; in 3D it also tilts its axial axis away from ``Z`` a little.
    """
    theta = rng.uniform(0.0, np.pi, n)
    s, c = np.sin(theta), np.cos(theta)
    if ndim == 2:
        rot = np.empty((n, 2, 2))
        rot[:, :, 0] = np.stack([s, c], 1)
        rot[:, :, 1] = np.stack([c, -s], 1)
        return rot
    tilt = rng.normal(0.0, 0.25, n)
    u = np.stack([np.zeros(n), s, c], 1)
    v = np.stack([np.zeros(n), c, -s], 1)
    w = np.stack([np.ones(n), np.zeros(n), np.zeros(n)], 1)
    ct, st = np.cos(tilt)[:, None], np.sin(tilt)[:, None]
    return np.stack([u, v * ct + w * st, w * ct - v * st], 2)


def place(
    rng: np.random.Generator,
    radii: np.ndarray,
    extent: np.ndarray,
    cluster_p: float,
    overlap: Range,
) -> np.ndarray:
    """Centres for objects of ``radii``; ``nan`` rows for objects that found no room.

    No two centres come closer than ``(r_i + r_j) * (1 - overlap[1])``; a cluster member sits at
    ``(r_i + r_j) * (1 - o)`` from a placed object, ``o`` drawn from ``overlap``. A grid of buckets as wide
    as the largest such distance keeps the neighbour search local (linear in the number of objects).

    Parameters
    ----------
    rng
        The image's random generator.
    radii
        ``(n,)`` bounding radius of each object, physical units.
    extent
        ``(ndim,)`` the image's size in physical units; centres lie in ``[0, extent)``.
    cluster_p
        Probability that an object is first tried against an already placed one.
    overlap
        How far neighbours may interpenetrate, as a fraction of the sum of their radii.

    Returns
    -------
    np.ndarray
        ``(n, ndim)`` float64 centres, objects placed in the order of ``radii``.
    """
    n, ndim = len(radii), len(extent)
    centres = np.full((n, ndim), np.nan)
    if n == 0:
        return centres
    placed = np.zeros(n, dtype=np.intp)  # indices of placed objects, first n_placed valid
    n_placed = 0
    closest = 1.0 - overlap[1]
    bucket = max(2.0 * float(radii.max()) * closest, 1e-3)
    grid: dict[tuple[int, ...], list[int]] = {}
    around = [tuple(o) for o in np.ndindex(*(3,) * ndim)]
    tries = 24
    failures = 0

    def free(c: np.ndarray, r: float) -> bool:
        key = (c // bucket).astype(int) - 1
        near: list[int] = []
        for o in around:
            near.extend(grid.get(tuple(int(a + b) for a, b in zip(key, o, strict=True)), ()))
        if not near:
            return True
        idx = np.asarray(near)
        dist = np.sqrt(((centres[idx] - c) ** 2).sum(axis=1))
        return bool(np.all(dist >= (radii[idx] + r) * closest - 1e-6))

    for k in range(n):
        r = float(radii[k])
        candidates: list[np.ndarray] = []
        if n_placed and rng.random() < cluster_p:
            parents = placed[rng.integers(0, n_placed, tries)]
            direction = rng.normal(size=(tries, ndim))
            direction /= np.maximum(np.linalg.norm(direction, axis=1, keepdims=True), 1e-9)
            gap = (r + radii[parents]) * (1.0 - rng.uniform(overlap[0], overlap[1], tries))
            cand = centres[parents] + direction * gap[:, None]
            candidates.extend(cand[np.all((cand >= 0) & (cand < extent), axis=1)])
        candidates.extend(rng.uniform(0.0, 1.0, (tries, ndim)) * extent)
        for c in candidates:
            if free(c, r):
                centres[k] = c
                placed[n_placed] = k
                n_placed += 1
                grid.setdefault(tuple(int(a) for a in c // bucket), []).append(k)
                failures = 0
                break
        else:
            failures += 1
            if failures >= 8:  # the image is full for objects of this size
                break
    return centres
