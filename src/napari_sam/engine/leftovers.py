"""Splitting labels that hold more than one object (merges from other tools) during refinement.

A label that holds two touching nuclei, prompted with its box and mask, comes back as both: the mask
prompt says so, and one background click on the second nucleus does not outweigh it. Two rules make
one such click enough:

- :func:`cut_at_click`: a background click inside a label, on what the model sees as an object of its
  own (a point prompt there), takes that object out of the label's mask and box prompt;
- :func:`object_pieces`: parts of a label that its refined mask leaves out and that look like objects
  of their own are kept as new labels rather than dropped (no labelled object is lost). A thin rim
  left by a label drawn too large (the usual dilation error) is not an object and is not kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage as ndi

from .decode.predict import predict

__all__ = ["cut_at_click", "object_at", "object_pieces"]

#: a click's object is cut out of a label when it covers this share of the label's pixels (less is
#: a trim of the rim, more is the label's own object)
CUT_SHARE = (0.15, 0.75)
#: and the click lies deep inside the label: at least this many pixels from its edge, and at least
#: this share of the cut part's thickness (a click on the rim trims the rim, it does not cut)
CUT_MIN_DEPTH = 3.0
CUT_DEPTH_SHARE = 0.5
#: a piece must hold at least this share of the refined mask's pixels
MIN_AREA_SHARE = 0.25
#: and be at least this share as thick (largest inscribed radius) as the refined mask
MIN_THICKNESS_SHARE = 0.4


def _thickness(mask: np.ndarray) -> float:
    """Largest inscribed radius of a ``(Y, X)`` bool mask, in pixels (0 for an empty one)."""
    if not mask.any():
        return 0.0
    return float(ndi.distance_transform_edt(np.pad(mask, 1)).max())


def object_pieces(left_out: np.ndarray, refined: np.ndarray, min_pixels: int = 3) -> list[np.ndarray]:
    """The object-like connected parts of ``left_out``.

    Parameters
    ----------
    left_out
        ``(Y, X)`` bool: pixels of the given label that neither its refined mask nor any other label
        took.
    refined
        ``(Y, X)`` bool: the label's refined mask (what a piece is compared with).
    min_pixels
        Pieces with fewer pixels are never kept.

    Returns
    -------
    list of numpy.ndarray
        ``(Y, X)`` bool masks, largest first. A piece is a connected part of ``left_out`` that, once
        narrow bridges are cut (an opening by a disk of a third of the refined mask's thickness),
        holds at least :data:`MIN_AREA_SHARE` of the refined mask's pixels and is at least
        :data:`MIN_THICKNESS_SHARE` as thick; its mask is that part of ``left_out`` (bridges included).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:40, :80]
    >>> first = (yy - 20) ** 2 + (xx - 20) ** 2 < 15**2
    >>> second = (yy - 20) ** 2 + (xx - 50) ** 2 < 14**2
    >>> pieces = object_pieces((first | second) & ~first, first)  # a merge refined into `first`
    >>> len(pieces), bool((pieces[0] == second).all())
    (1, True)
    >>> rim = (yy - 20) ** 2 + (xx - 20) ** 2 < 17**2
    >>> object_pieces(rim & ~first, first)  # a label 2 px too large
    []
    """
    left_out = np.asarray(left_out, bool)
    refined = np.asarray(refined, bool)
    area = int(refined.sum())
    if not left_out.any() or area == 0:
        return []
    thickness = _thickness(refined)
    radius = max(1, int(thickness / 3))
    disk = np.add.outer(np.arange(-radius, radius + 1) ** 2, np.arange(-radius, radius + 1) ** 2) <= radius**2
    cores, n = ndi.label(ndi.binary_opening(left_out, structure=disk))
    if not n:
        return []
    parts, _ = ndi.label(left_out)
    pieces = []
    for k in range(1, n + 1):
        core = cores == k
        if core.sum() < max(min_pixels, MIN_AREA_SHARE * area):
            continue
        if _thickness(core) < MIN_THICKNESS_SHARE * thickness:
            continue
        # the whole connected part of left_out the core lies in, less what other cores claim
        owner = np.bincount(parts[core]).argmax()
        piece = (parts == owner) & ~((cores > 0) & ~core)
        pieces.append(piece)
    pieces.sort(key=lambda p: -int(p.sum()))
    return pieces


def object_at(embeddings: Any, point: np.ndarray, shape: tuple[int, int], sam: Any) -> np.ndarray:
    """The object the model sees under one point: a foreground point prompt, best of three masks.

    Parameters
    ----------
    embeddings
        :class:`~napari_sam.engine.types.Embeddings` or
        :class:`~napari_sam.engine.types.TiledEmbeddings` of the image.
    point
        ``(2,)`` ``(row, col)`` in image pixels.
    shape
        ``(Y, X)`` of the image.
    sam
        The model (None: the embeddings' own).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` bool (see :func:`~napari_sam.engine.decode.predict.predict`).
    """
    pred = predict(
        embeddings,
        points=np.asarray(point, np.float64).reshape(1, 2),
        point_labels=np.ones(1, np.int64),
        multimask=True,
        best_only=True,
        model=sam,
    )
    return np.asarray(pred.masks[0, 0], bool).reshape(shape)


def cut_at_click(label: np.ndarray, other: np.ndarray, click: np.ndarray) -> np.ndarray | None:
    """The label's mask without the object of a background click inside it, or None to keep it whole.

    Parameters
    ----------
    label
        ``(Y, X)`` bool: the given label's pixels.
    other
        ``(Y, X)`` bool: the object under the click (:func:`object_at`).
    click
        ``(2,)`` ``(row, col)`` of the background click.

    Returns
    -------
    numpy.ndarray or None
        ``label & ~other`` when ``other`` covers a share of the label within :data:`CUT_SHARE` (less:
        a trim, which the point prompt alone does; more: ``other`` is the label's own object) and the
        click lies deep inside the label (:data:`CUT_MIN_DEPTH`, :data:`CUT_DEPTH_SHARE`: a click near
        the label's edge trims it); None otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:40, :80]
    >>> first = (yy - 20) ** 2 + (xx - 20) ** 2 < 15**2
    >>> second = (yy - 20) ** 2 + (xx - 48) ** 2 < 14**2
    >>> label = first | second  # a merge; the click is on the centre of `second`
    >>> cut = cut_at_click(label, second, np.array([20, 48]))
    >>> bool((cut == (first & ~second)).all()), cut_at_click(label, label, np.array([20, 48]))
    (True, None)
    """
    size = int(label.sum())
    if size == 0:
        return None
    part = label & other
    share = int(part.sum()) / size
    if not CUT_SHARE[0] <= share <= CUT_SHARE[1]:
        return None
    r, c = (int(v) for v in np.clip(np.round(np.asarray(click, np.float64)), 0, np.array(label.shape) - 1))
    depth = float(ndi.distance_transform_edt(np.pad(label, 1))[r + 1, c + 1])
    if depth < max(CUT_MIN_DEPTH, CUT_DEPTH_SHARE * _thickness(part)):
        return None
    return label & ~other
