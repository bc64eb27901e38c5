"""The point prompts of automatic prompt generation (APG), read from the instance decoder's maps.

micro-sam's ``AutomaticPromptGenerator`` semantics (``_derive_point_prompts`` / ``_get_centers``),
reimplemented: a pixel is a seed pixel where its centre distance is below ``center_distance_threshold``,
its boundary distance below ``boundary_distance_threshold`` and its foreground at least
``foreground_threshold`` (maps used as given, not smoothed); the seed pixels' 4-connected components
each give one positive point, the pixel of the component farthest from the component's outer boundary
(and from the image border). Points are napari ``(row, col)`` pixel indices.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import find_boundaries

from ..types import InstanceOptions

__all__ = ["seed_components", "seed_points"]

#: 4-connectivity (micro-sam labels the seed pixels with ``connectivity=1``).
_CROSS = ndimage.generate_binary_structure(2, 1)


def seed_components(maps: np.ndarray, opts: InstanceOptions) -> tuple[np.ndarray, int]:
    """The 4-connected components of the seed pixels.

    Parameters
    ----------
    maps
        ``(3, H, W)`` float32 (foreground, centre distance, boundary distance), checked.
    opts
        The three thresholds.

    Returns
    -------
    components
        ``(H, W)`` int32, 0 off the seeds, components numbered ``1..n`` in raster order.
    n
        The number of components.
    """
    foreground, centre, boundary = maps
    seeds = (centre < opts.center_distance_threshold) & (boundary < opts.boundary_distance_threshold)
    seeds &= foreground >= opts.foreground_threshold
    components, n = ndimage.label(seeds, structure=_CROSS)
    return components, int(n)


def seed_points(maps: np.ndarray, opts: InstanceOptions) -> np.ndarray:
    """One positive point per seed component: where it is farthest from its outer boundary.

    The distance of a component's pixel is the Euclidean distance to the nearest pixel that is either
    outside the component next to it, inside it next to another component (``skimage``'s "outer"
    boundaries), or on the image border; the point is the component's pixel of largest distance, the
    first in raster order on ties (a component with no pixel off the border: its first pixel).

    Parameters
    ----------
    maps
        ``(3, H, W)`` float32 maps, checked (:func:`~napari_sam.engine.automatic.ais.check_maps`).
    opts
        The thresholds.

    Returns
    -------
    numpy.ndarray
        ``(N, 2)`` int64 ``(row, col)``, one per component, in the components' raster order.
    """
    components, n = seed_components(maps, opts)
    if n == 0:
        return np.zeros((0, 2), dtype=np.int64)
    # False on a boundary pixel and on the image border: the distance transform measures to those
    inside = ~find_boundaries(components, mode="outer")
    inside[[0, -1], :] = False
    inside[:, [0, -1]] = False
    rows, cols = components.shape
    points = np.zeros((n, 2), dtype=np.int64)
    for index, box in enumerate(ndimage.find_objects(components)):
        assert box is not None  # components are numbered 1..n without gaps
        # one pixel around the component holds its outer boundary, so the nearest boundary pixel of
        # any of its pixels lies in this window (the distances equal those on the whole image)
        r0, r1 = max(box[0].start - 1, 0), min(box[0].stop + 1, rows)
        c0, c1 = max(box[1].start - 1, 0), min(box[1].stop + 1, cols)
        mine = components[r0:r1, c0:c1] == index + 1
        window = inside[r0:r1, c0:c1]
        distance = ndimage.distance_transform_edt(window)
        distance = np.where(mine, distance, -1.0)
        r, c = np.unravel_index(int(np.argmax(distance)), distance.shape)
        points[index] = (r + r0, c + c0)
    return points
