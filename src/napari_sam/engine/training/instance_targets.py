"""Training targets of an instance decoder: foreground, centre-distance and boundary-distance maps.

The semantics are those micro-sam trains its instance decoder with (torch_em's
``PerObjectDistanceTransform(distances=True, boundary_distances=True, directed_distances=False,
foreground=True)``), computed here per object on its bounding box:

- the labels are first split into connected components (8-connectivity, equal values), and objects
  smaller than ``min_size`` pixels are dropped;
- channel 0 is the foreground (1 inside an object, 0 outside);
- channel 1 is the Euclidean distance to the object's centre — its centroid rounded to the nearest pixel,
  or, where that pixel is not in the object, the object pixel farthest from the object's boundary —
  divided by the largest such distance in the object (0 at the centre, 1 at the farthest pixel);
- channel 2 is ``d_max - d``, ``d`` the Euclidean distance to the nearest *inner boundary* pixel (an
  object pixel next to another label or to the background; the image border is no boundary) and
  ``d_max`` its largest value in the object, divided by its largest value (0 at the most central pixel,
  1 on the boundary);
- both distance channels are 1 outside the objects (the decoder's loss masks them there).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["instance_target_maps"]

#: added to the per-object maxima before dividing (torch_em's ``eps``)
_EPS = 1e-7


def _check_labels(labels: object) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 2:
        raise ValueError(f"labels must be a 2D (H, W) label image, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.int32)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"labels must have an integer (or bool) dtype, got {array.dtype}")
    if array.size and array.min() < 0:
        raise ValueError("labels must be non-negative (0 = background)")
    return array


def instance_target_maps(labels: np.ndarray, *, min_size: int = 0) -> np.ndarray:
    """The three target maps of an instance decoder for one label image.

    Parameters
    ----------
    labels
        ``(H, W)`` integer (or bool) label image, 0 = background, in napari's (row, col) order.
    min_size
        Objects (connected components) with fewer pixels are treated as background.

    Returns
    -------
    numpy.ndarray
        ``(3, H, W)`` float32 in ``[0, 1]``: foreground, normalised centre distance, normalised boundary
        distance (see the module docstring).

    Raises
    ------
    ValueError
        ``labels`` is not 2D, or has negative values; ``min_size`` is negative.
    TypeError
        ``labels`` is not an integer or bool array.
    """
    array = _check_labels(labels)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 0:
        raise ValueError(f"min_size must be a non-negative int, got {min_size!r}")
    comps = _label_kept(array, int(min_size))
    height, width = comps.shape
    out = np.ones((3, height, width), dtype=np.float32)
    out[0] = comps > 0
    count = int(comps.max()) if comps.size else 0
    if count == 0:
        return out
    from skimage.segmentation import find_boundaries

    boundaries = find_boundaries(comps, mode="inner")
    rows = np.broadcast_to(np.arange(height, dtype=np.float64)[:, None], comps.shape)
    cols = np.broadcast_to(np.arange(width, dtype=np.float64)[None, :], comps.shape)
    flat = comps.ravel()
    sizes = np.bincount(flat, minlength=count + 1)
    row_sum = np.bincount(flat, weights=rows.ravel(), minlength=count + 1)
    col_sum = np.bincount(flat, weights=cols.ravel(), minlength=count + 1)
    for index, box in enumerate(ndimage.find_objects(comps), start=1):
        if box is None:
            continue
        mask = comps[box] == index
        centre: tuple[int, ...] = (
            int(np.round(row_sum[index] / sizes[index])) - box[0].start,
            int(np.round(col_sum[index] / sizes[index])) - box[1].start,
        )
        to_boundary = _boundary_distance(boundaries[box], mask)
        if not mask[centre]:
            centre = tuple(int(v) for v in np.unravel_index(int(np.argmax(to_boundary)), mask.shape))
        inner = np.unravel_index(int(np.argmax(to_boundary)), mask.shape)
        local_r = np.arange(mask.shape[0])[:, None]
        local_c = np.arange(mask.shape[1])[None, :]
        to_centre = np.hypot(local_r - centre[0], local_c - centre[1])
        from_inner = to_boundary[inner] - to_boundary
        for channel, values in ((1, to_centre), (2, from_inner)):
            values = np.where(mask, values, 0.0)
            values = values / (np.abs(values).max() + _EPS)
            out[channel][box][mask] = values[mask]
    return out


def _label_kept(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Connected components (8-connectivity) of equal non-zero values, those under ``min_size`` pixels
    set to 0, renumbered 1..n — ``(H, W)`` int32."""
    from skimage.measure import label

    comps = label(labels, background=0, connectivity=2).astype(np.int32)
    if min_size > 0 and comps.max() > 0:
        sizes = np.bincount(comps.ravel())
        keep = sizes >= min_size
        keep[0] = False
        renumber = np.zeros(sizes.size, dtype=np.int32)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        comps = renumber[comps]
    return comps


def _boundary_distance(boundary: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel of a bounding box to its nearest boundary pixel, 0 outside ``mask``.

    ``boundary``, ``mask``: ``(h, w)`` bool. Without a boundary pixel in the box (an object filling the
    image) every distance is 0.
    """
    if not boundary.any():
        return np.zeros(mask.shape, dtype=np.float64)
    distance = ndimage.distance_transform_edt(~boundary)
    distance[~mask] = 0.0
    return distance
