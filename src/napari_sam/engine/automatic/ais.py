"""AIS post-processing: the instance decoder's three maps → instance labels by a seeded watershed.

The maps (see :mod:`napari_sam.engine.automatic.maps`) are, per pixel and in ``[0, 1]``: the foreground
probability, the distance to the object's centre and the distance to the object's boundary (both
distances normalised per object, small near the centre). :func:`ais_labels` follows micro-sam's
``InstanceSegmentationWithDecoder.generate`` (torch_em's
``watershed_from_center_and_boundary_distances``) with the thresholds, smoothing and minimum size of an
:class:`~napari_sam.engine.types.InstanceOptions`:

1. smooth the foreground map (Gaussian, ``foreground_smoothing``) and both distance maps
   (``distance_smoothing``); mirrored borders, kernel cut at 3 sigma;
2. foreground = smoothed foreground above ``foreground_threshold``;
3. seeds = foreground pixels whose smoothed centre distance is below ``center_distance_threshold`` and
   whose smoothed boundary distance is below ``boundary_distance_threshold``; each connected group of
   seed pixels (diagonal neighbours included) is one object;
4. grow the seeds over the foreground by a watershed on the smoothed boundary distance (face
   neighbours); foreground that no seed reaches stays background;
5. remove objects smaller than ``min_size`` pixels and number the rest ``1..N`` in the order of their
   seeds (row-major first pixel).

A stack of maps ``(3, Z, H, W)`` is one 3D problem: smoothing, seed grouping and the watershed are 3D.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.measure import label as connected_components
from skimage.segmentation import watershed

from ..types import InstanceOptions

__all__ = ["ais_labels", "check_maps"]

#: The Gaussian kernel is cut at this many sigmas (bioimage_cpp's ``gaussian_smoothing``, micro-sam's).
SMOOTHING_TRUNCATE = 3.0


def check_maps(maps: Any, name: str = "maps", *, stacks: bool = True) -> np.ndarray:
    """``maps`` as a C-contiguous float32 ``(3, H, W)`` or (with ``stacks``) ``(3, Z, H, W)`` array, or
    ValueError.

    Raises
    ------
    ValueError
        Not a real-valued array; not 3 (or 4, with ``stacks``) dimensions with 3 channels first; an empty
        spatial axis; NaN or infinite values. The message names ``name``.
    """
    arr = np.asarray(maps)
    if arr.dtype.kind not in "fiu":  # floats, signed and unsigned integers (not bool, complex, object)
        raise ValueError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if arr.ndim not in ((3, 4) if stacks else (3,)) or arr.shape[0] != 3:
        shapes = "(3, H, W) or (3, Z, H, W)" if stacks else "(3, H, W)"
        raise ValueError(
            f"{name} must have shape {shapes} (foreground, centre distance, boundary distance), "
            f"got shape {arr.shape}"
        )
    if 0 in arr.shape:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite (no NaN or infinity)")
    return arr


def _smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return values
    return ndimage.gaussian_filter(values, sigma, mode="mirror", truncate=SMOOTHING_TRUNCATE)


def _drop_small(labels: np.ndarray, n: int, min_size: int) -> np.ndarray:
    """Objects of fewer than ``min_size`` pixels set to 0, the rest renumbered 1..N in their order."""
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_size
    keep[0] = False
    if keep[1:].all():
        return labels
    new_ids = np.zeros(n + 1, dtype=labels.dtype)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=labels.dtype)
    return new_ids[labels]


def ais_labels(maps: Any, opts: InstanceOptions | None = None) -> np.ndarray:
    """Instance labels from the instance decoder's maps by a seeded watershed (micro-sam's AIS).

    Parameters
    ----------
    maps
        ``(3, H, W)`` (one image) or ``(3, Z, H, W)`` (a stack, segmented in 3D) real values, channels
        foreground, centre distance, boundary distance (as :func:`~napari_sam.engine.automatic.maps.
        predict_maps` returns them), spatial axes in napari order (rows, then columns).
    opts
        Thresholds, smoothing and ``min_size`` (``opts.min_size_for("ais")``: 0 by default);
        None: :class:`~napari_sam.engine.types.InstanceOptions` defaults (micro-sam's).

    Returns
    -------
    np.ndarray
        ``(H, W)`` or ``(Z, H, W)`` uint32 labels: 0 background, objects ``1..N`` numbered in the
        order of their seeds.

    Raises
    ------
    ValueError
        ``maps`` of another shape, not real-valued, empty, or with NaN / infinite values.
    TypeError
        ``opts`` is not an :class:`~napari_sam.engine.types.InstanceOptions`.
    """
    arr = check_maps(maps)
    if opts is None:
        opts = InstanceOptions()
    elif not isinstance(opts, InstanceOptions):
        raise TypeError(f"opts must be an InstanceOptions, got {type(opts).__name__}")
    foreground = _smooth(arr[0], opts.foreground_smoothing) > opts.foreground_threshold
    centre = _smooth(arr[1], opts.distance_smoothing)
    boundary = _smooth(arr[2], opts.distance_smoothing)
    seeds = (centre < opts.center_distance_threshold) & (boundary < opts.boundary_distance_threshold)
    seeds &= foreground
    markers, n = connected_components(seeds, connectivity=seeds.ndim, return_num=True)
    if n == 0:
        return np.zeros(foreground.shape, dtype=np.uint32)
    labels = watershed(boundary, markers=markers.astype(np.int32), mask=foreground).astype(np.uint32)
    min_size = opts.min_size_for("ais")
    return _drop_small(labels, n, min_size) if min_size > 0 else labels
