"""Time-lapse labels → napari Tracks data: one track per label id, through the centres of its pixels.

No Qt here: :func:`tracks_from_labels` takes plain arrays and returns what ``viewer.add_tracks``
takes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ..errors import AnnotatorError

__all__ = ["tracks_from_labels"]


def tracks_from_labels(labels: np.ndarray, ids: Iterable[int] | None = None) -> np.ndarray:
    """The centre of each labelled object on each frame, as napari Tracks data.

    Parameters
    ----------
    labels
        ``(T, Y, X)`` integer labels of a time-lapse; ``0`` is background.
    ids
        The label ids to track (default: every id present); ids absent from every frame give no rows.

    Returns
    -------
    np.ndarray
        ``(N, 4)`` float64 rows ``(track_id, t, y, x)``: one row per id and frame where the id has
        pixels, ``(y, x)`` the mean row and column of those pixels; sorted by id, then frame. The
        track id is the label id.

    Raises
    ------
    AnnotatorError
        ``labels`` is not 3D or not integer.

    Examples
    --------
    >>> labels = np.zeros((2, 4, 4), np.uint8)
    >>> labels[0, 0:2, 0:2] = 3
    >>> labels[1, 2:4, 1:3] = 3
    >>> tracks_from_labels(labels).tolist()
    [[3.0, 0.0, 0.5, 0.5], [3.0, 1.0, 2.5, 1.5]]
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise AnnotatorError(f"tracks need (T, Y, X) labels, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise AnnotatorError(f"tracks need integer labels, got {labels.dtype}")
    wanted = None if ids is None else np.asarray(sorted({int(i) for i in ids}), dtype=np.int64)
    rows: list[np.ndarray] = []
    ys, xs = np.indices(labels.shape[1:], dtype=np.float64)
    for t, frame in enumerate(labels):
        present = np.unique(frame)
        present = present[present != 0].astype(np.int64)
        if wanted is not None:
            present = np.intersect1d(present, wanted)
        if not len(present):
            continue
        flat = frame.ravel().astype(np.int64)
        index = np.searchsorted(present, flat)
        inside = (index < len(present)) & (present[np.minimum(index, len(present) - 1)] == flat)
        counts = np.bincount(index[inside], minlength=len(present)).astype(np.float64)
        y = np.bincount(index[inside], ys.ravel()[inside], minlength=len(present)) / counts
        x = np.bincount(index[inside], xs.ravel()[inside], minlength=len(present)) / counts
        rows.append(np.column_stack([present.astype(np.float64), np.full(len(present), float(t)), y, x]))
    if not rows:
        return np.zeros((0, 4), dtype=np.float64)
    data = np.concatenate(rows)
    order = np.lexsort((data[:, 1], data[:, 0]))
    return data[order]
