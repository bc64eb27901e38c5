"""Object shapes and exact labels: perturbed ellipses / ellipsoids rasterised so each pixel has one owner.

An object is an ellipse (ellipsoid in 3D) whose boundary radius is perturbed by a few smooth harmonics.
Its *field* is the normalised radius of every pixel in its bounding box: ``< 1`` inside, ``1`` on the
boundary. Where objects overlap, a pixel goes to the object it lies deeper inside (the smaller field).
Coordinates are physical (array index times the pixel spacing per axis), axis order ``(Y, X)`` or
``(Z, Y, X)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: the boundary harmonics k = 2 .. 6 (k = 1 would only move the object)
HARMONICS = np.arange(2, 7, dtype=np.float32)

#: an object's bounding box (one slice per axis) and its normalised radius there, float32
Field = tuple[tuple[slice, ...], np.ndarray]


@dataclass(frozen=True, eq=False)
class Objects:
    """Per-object geometry and appearance of ``n`` objects (physical units; ``ndim`` is 2 or 3)."""

    #: ``(n, ndim)`` centres
    centre: np.ndarray
    #: ``(n, ndim)`` semi-axes along the rotation's columns
    semi: np.ndarray
    #: ``(n, ndim, ndim)`` rotations: column k is axis k in array coordinates
    rot: np.ndarray
    #: ``(n, 5)`` amplitudes of the boundary harmonics :data:`HARMONICS`
    amp: np.ndarray
    #: ``(n, 5)`` phases of the boundary harmonics
    phase: np.ndarray
    #: ``(n, 2)`` 3D only: axial shape terms (zeros in 2D)
    polar: np.ndarray
    #: ``(n,)`` diameters
    diameter: np.ndarray
    #: ``(n,)`` brightness
    intensity: np.ndarray


def field(obj: Objects, i: int, shape: tuple[int, ...], spacing: np.ndarray) -> Field | None:
    """Object ``i``'s normalised radius ``f`` (< 1 inside) over its bounding box, or ``None`` if outside."""
    ndim = len(shape)
    reach = float(obj.semi[i].max()) * (1.0 + float(np.abs(obj.amp[i]).sum() + np.abs(obj.polar[i]).sum()))
    lo = np.maximum(np.floor((obj.centre[i] - reach) / spacing).astype(int), 0)
    hi = np.minimum(np.ceil((obj.centre[i] + reach) / spacing).astype(int) + 1, shape)
    if np.any(hi <= lo):
        return None
    axes = []
    for d in range(ndim):
        coord = np.arange(lo[d], hi[d], dtype=np.float32) * np.float32(spacing[d]) - np.float32(
            obj.centre[i, d]
        )
        axes.append(coord.reshape([-1 if e == d else 1 for e in range(ndim)]))
    rot = obj.rot[i].astype(np.float32)
    local = []
    for k in range(ndim):
        acc = axes[0] * rot[0, k]
        for d in range(1, ndim):
            acc = acc + axes[d] * rot[d, k]
        local.append(acc / np.float32(obj.semi[i, k]))
    rho2 = local[0] * local[0] + local[1] * local[1]
    phi = np.arctan2(local[1], local[0])
    bumps = np.zeros(phi.shape, dtype=np.float32)
    for harmonic, a, p in zip(HARMONICS, obj.amp[i], obj.phase[i], strict=True):
        if a != 0.0:
            bumps += np.float32(a) * np.cos(harmonic * phi + np.float32(p))
    if ndim == 3:
        rho2 = rho2 + local[2] * local[2]
        nz = local[2] / np.sqrt(np.maximum(rho2, 1e-12))
        radius = 1.0 + bumps * (1.0 - nz * nz) + obj.polar[i, 0] * nz + obj.polar[i, 1] * (nz * nz - 1 / 3)
    else:
        radius = 1.0 + bumps
    f = np.sqrt(rho2) / np.maximum(radius, 0.3)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), f.astype(np.float32, copy=False)


@dataclass(frozen=True, eq=False)
class Raster:
    """All objects drawn into one label image, before the labels are made exact (see :func:`rasterise`)."""

    #: ``shape`` uint32: ``i + 1`` where object ``i`` owns the pixel, 0 background
    labels: np.ndarray
    #: ``shape`` float32: the owner's normalised radius (1 on background)
    depth: np.ndarray
    #: each object's :data:`Field`, ``None`` for objects wholly outside the image
    fields: list[Field | None]
    #: ``(n + 1,)`` float64: object ``i``'s area before overlaps at index ``i + 1`` (index 0 unused)
    nominal: np.ndarray


def rasterise(objects: Objects, shape: tuple[int, ...], spacing: np.ndarray) -> Raster:
    """Every pixel of ``shape`` to the object it is deepest inside; ``spacing`` per axis."""
    n = len(objects.centre)
    labels = np.zeros(shape, dtype=np.uint32)
    depth = np.ones(shape, dtype=np.float32)
    fields: list[Field | None] = []
    nominal = np.zeros(n + 1)
    for i in range(n):
        got = field(objects, i, shape, spacing)
        fields.append(got)
        if got is None:
            continue
        box, f = got
        view_d, view_l = depth[box], labels[box]
        inside = f < view_d
        view_d[inside] = f[inside]
        view_l[inside] = i + 1
        nominal[i + 1] = np.count_nonzero(f < 1.0)
    return Raster(labels=labels, depth=depth, fields=fields, nominal=nominal)


def one_region_each(labels: np.ndarray, keep_where: np.ndarray | None = None) -> np.ndarray:
    """Clear all but one connected piece of every label (the largest, or the one touching ``keep_where``).

    Pieces are face-connected (4-connected in 2D, 6-connected in 3D). ``labels`` is not changed; the
    result has its dtype.
    """
    from skimage.measure import label as connected

    pieces, n_pieces = connected(labels, background=0, connectivity=1, return_num=True)
    n_ids = len(np.unique(labels)) - (1 if (labels == 0).any() else 0)
    if n_pieces == n_ids:
        return labels
    flat = pieces.ravel()
    owner = np.zeros(n_pieces + 1, dtype=labels.dtype)
    owner[flat] = labels.ravel()
    if keep_where is not None:
        keep = np.zeros(n_pieces + 1, dtype=bool)
        keep[np.unique(pieces[keep_where])] = True
    else:
        size = np.bincount(flat, minlength=n_pieces + 1)
        order = np.lexsort((-size[1:], owner[1:])) + 1  # by owner, largest first
        _, first = np.unique(owner[order], return_index=True)
        keep = np.zeros(n_pieces + 1, dtype=bool)
        keep[order[first]] = True
    keep[0] = False
    out = labels.copy()
    out[~keep[pieces]] = 0
    return out


def exact_labels(raster: Raster, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """One region per object, no small or mostly hidden objects, ids ``1..N``.

    Parameters
    ----------
    raster
        All objects drawn (:func:`rasterise`).
    min_area
        Objects smaller than this (pixels) are removed, as are those left with under 40 % of their
        area before overlaps.

    Returns
    -------
    labels
        uint32, ids ``1..N`` consecutive in the order of the kept objects.
    kept
        ``(N,)`` int: the object index of new id ``k + 1``.
    """
    n = len(raster.nominal) - 1
    labels = one_region_each(raster.labels)
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = (area >= min_area) & (area >= 0.4 * raster.nominal)
    keep[0] = False
    new_id = np.zeros(n + 1, dtype=np.uint32)
    new_id[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return new_id[labels], np.flatnonzero(keep[1:])
