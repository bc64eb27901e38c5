"""4D stacks for SAM 2 memory propagation: objects followed along one leading axis, plane by plane.

A 4D stack ``(A0, A1, Y, X[, C])`` — a ``(T, Z, Y, X)`` time series of volumes, say — is tracked as
independent 3D sequences: ``axis`` (0 or 1) is the axis objects are followed along (its length is the
number of *frames*), the other leading axis indexes *planes*. Plane ``p`` is the sequence
``(F, Y, X[, C])`` at index ``p`` of the other axis, tracked on its own; its labels go back into the
plane of a 4D result. With ``axis=0`` on a ``(T, Z, Y, X)`` stack, each z plane is followed through
time; with ``axis=1``, each time point's volume is followed through z.

This module holds the geometry, no tracking: which arrays are 4D stacks (:func:`is_plane_stack`),
the checked ``axis`` (:func:`followed_axis`, :func:`plane_axes`), a lazy view of one plane
(:class:`PlaneView`: only the frames read are read, from numpy, dask or zarr alike), prompts with four
coordinates checked and numbered as :func:`napari_sam.segment` numbers them (:func:`flat_prompts`,
:func:`split_by_plane`), each plane's frame store (:func:`plane_store`) and one step generator made of
the planes' (:func:`chain_steps`). The tracking is
:func:`~napari_sam.engine.volume.memory_propagation.propagate_memory`'s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ...errors import CacheMismatchError
from ...model.sam2.tracking import Prompt
from ..decode.prompts import as_float_array, normalize_prompts, whole_indices
from ..preprocess import AUTO_CHANNELS, may_hold_channels
from ..types import Prompts
from .seeds import RawPrompts

__all__ = [
    "PlaneAxes",
    "PlaneView",
    "chain_steps",
    "flat_prompts",
    "followed_axis",
    "is_plane_stack",
    "plane_axes",
    "plane_store",
    "split_by_plane",
]

T = TypeVar("T")


def is_plane_stack(image: Any, channel_axis: int | None = None, channel: Any = None) -> bool:
    """Whether ``image`` is a 4D stack ``(A0, A1, Y, X[, C])`` rather than a 2D image or a 3D stack.

    A 5D array is one (channels last). A 4D array is one unless it holds channels as
    :func:`~napari_sam.engine.embed.layout.image_layout` reads them: ``channel_axis`` given, a last
    axis of at most 4 values, or ``channel=`` given with a last axis that may hold channels. Only the
    shape is read.
    """
    shape = tuple(int(v) for v in np.shape(image))
    return len(shape) == 5 or (
        len(shape) == 4 and channel_axis is None and not _holds_channels(shape, channel)
    )


def _holds_channels(shape: tuple[int, ...], channel: Any) -> bool:
    """Whether the last axis of a 4D ``shape`` holds channels, as ``image_layout`` reads it without
    ``channel_axis`` (at most 4 values, or ``channel=`` given and up to 16)."""
    return shape[-1] <= AUTO_CHANNELS or (channel is not None and may_hold_channels(shape))


def followed_axis(axis: Any, shape: Sequence[int], n_spatial: int) -> int:
    """``axis`` checked for a stack of ``n_spatial`` spatial axes (3 or 4) and array ``shape``, as
    0 or 1.

    Raises
    ------
    TypeError
        ``axis`` is not an integer.
    ValueError
        ``axis`` is not 0 / -3 for a 3D stack, nor 0, 1, -4, -3 for a 4D stack.
    """
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer (the axis objects are followed along), got {axis!r}")
    shape = tuple(int(v) for v in shape)
    if n_spatial == 3:
        if axis not in (0, -3):
            raise ValueError(
                f"axis={axis} does not fit an array of shape {shape} read as a (Z, Y, X[, C]) stack: its "
                "objects are followed along its first axis only (axis=0 or -3); axis=1 follows the "
                "second axis of a 4D (A0, A1, Y, X) stack"
            )
        return 0
    if axis not in (0, 1, -4, -3):
        raise ValueError(
            f"axis={axis} does not fit a 4D stack of shape {shape}: axis must be 0 or 1 (or -4 / -3), "
            "the leading axis objects are followed along; the other indexes planes tracked on their own"
        )
    return int(axis) % 4


class PlaneView:
    """Plane ``index`` of a 4D stack along axis ``other`` (0 or 1), read lazily: indexing it reads
    only what the index takes from the stack (numpy, dask, zarr or any array with basic indexing).

    Attributes
    ----------
    shape
        The plane's shape: the stack's without axis ``other``.
    dtype
        The stack's dtype.
    """

    def __init__(self, stack: Any, other: int, index: int) -> None:
        self._stack, self._other, self._index = stack, int(other), int(index)
        full = tuple(int(v) for v in np.shape(stack))
        self.shape = full[: self._other] + full[self._other + 1 :]
        self.dtype = np.dtype(stack.dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis or k is None for k in key) or len(key) > self.ndim:
            raise IndexError(f"a PlaneView takes at most {self.ndim} integers or slices, got {key!r}")
        key = key + (slice(None),) * (self.ndim - len(key))
        full = (*key[: self._other], self._index, *key[self._other :])
        return np.asarray(self._stack[full])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[()]
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"PlaneView(plane {self._index} of axis {self._other}, shape={self.shape})"


@dataclass(frozen=True)
class PlaneAxes:
    """The axes of a 4D stack: the one followed, the one indexing planes, and the planes' channels.

    Attributes
    ----------
    axis
        The axis objects are followed along (0 or 1).
    spatial
        ``(A0, A1, Y, X)``: the stack's shape without channels.
    channel_axis
        The ``channel_axis`` of a plane's ``(F, Y, X, C)`` view (-1, or None: found as for a 3D stack).
    """

    axis: int
    spatial: tuple[int, int, int, int]
    channel_axis: int | None

    @property
    def other(self) -> int:
        """The axis indexing planes."""
        return 1 - self.axis

    @property
    def n_planes(self) -> int:
        return self.spatial[self.other]

    @property
    def n_frames(self) -> int:
        return self.spatial[self.axis]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.spatial[2], self.spatial[3]

    def view(self, stack: Any, plane: int) -> PlaneView:
        """Plane ``plane`` of ``stack`` as a lazy ``(F, Y, X[, C])`` sequence."""
        return PlaneView(stack, self.other, plane)

    def labels_of(self, labels: np.ndarray, plane: int) -> np.ndarray:
        """The ``(F, Y, X)`` view of plane ``plane`` of ``(A0, A1, Y, X)`` ``labels`` (no copy)."""
        return labels[plane] if self.other == 0 else labels[:, plane]


def plane_axes(stack: Any, axis: Any, channel_axis: int | None, channel: Any = None) -> PlaneAxes:
    """The :class:`PlaneAxes` of a 4D stack (:func:`is_plane_stack`) followed along ``axis``.

    Raises
    ------
    ValueError
        A bad ``axis`` (:func:`followed_axis`); a 5D array whose last axis is not channels
        (``channel_axis`` elsewhere, or too long without it).
    """
    shape = tuple(int(v) for v in np.shape(stack))
    if len(shape) == 5 and channel_axis is not None and channel_axis not in (4, -1):
        raise ValueError(
            f"channel_axis={channel_axis} does not fit a 4D stack with channels, shape {shape}: channels "
            "must be its last axis, (A0, A1, Y, X, C)"
        )
    if len(shape) == 5 and channel_axis is None and not _holds_channels(shape[1:], channel):
        raise ValueError(
            f"an array of shape {shape} is read as a 4D stack with channels last, (A0, A1, Y, X, C), but "
            f"its last axis of {shape[-1]} values is not read as channels: pass channel_axis=-1 to say so"
        )
    a0, a1, height, width = shape[:4]
    followed = followed_axis(axis, shape[:4], 4)
    return PlaneAxes(followed, (a0, a1, height, width), None if channel_axis is None else -1)


def _indices(values: np.ndarray, length: int, what: str) -> np.ndarray:
    """Whole indices (int64) of an axis of ``length``; errors naming ``what`` otherwise."""
    return whole_indices(values, length, what, unit="indices", span=f"an axis of {length}").astype(np.int64)


def flat_prompts(given: Prompts | RawPrompts, axes: PlaneAxes) -> Prompts:
    """Prompts on a 4D stack, checked, as prompts on the 3D stack of every plane's frames one after the
    other: slice ``plane * F + frame`` (``F`` frames a plane).

    Numbering the objects of the result as :func:`napari_sam.segment` does (boxes first, then free
    foreground points, each in given order) numbers the 4D prompts so; :func:`split_by_plane` takes
    the tracker's prompts back to their planes.

    Parameters
    ----------
    given
        ``points`` ``(N, 4)`` rows ``(a0, a1, row, col)``; ``point_labels`` ``(N,)``; ``boxes``
        ``(M, 8)`` rows ``(min_a0, min_a1, min_row, min_col, max_a0, max_a1, max_row, max_col)``,
        half-open, on one frame of one plane: ``max_a0 = min_a0 + 1``, ``max_a1 = min_a1 + 1``.
    axes
        The stack's axes.

    Raises
    ------
    ValueError
        Wrong shapes, leading coordinates that are not whole indices of the stack, boxes spanning
        frames or planes (each error names ``points`` or ``boxes``); and
        :func:`~napari_sam.engine.decode.prompts.normalize_prompts`'s errors for rows and columns.
    """
    if isinstance(given, Prompts):
        given = {
            "points": given.points if given.points.size else None,
            "point_labels": given.point_labels if given.points.size else None,
            "boxes": given.boxes if given.boxes.size else None,
        }
    a0, a1, height, width = axes.spatial
    shape = f"a 4D stack of shape {axes.spatial}"
    points = boxes = None
    if given["points"] is not None:
        pts = as_float_array(given["points"], "points")
        if pts.ndim != 2 or pts.shape[1] != 4:
            raise ValueError(
                f"points must have shape (N, 4) rows (a0, a1, row, col) for {shape}, got {pts.shape}"
            )
        lead = [_indices(pts[:, i], n, f"points a{i}") for i, n in ((0, a0), (1, a1))]
        points = np.column_stack([lead[axes.other] * axes.n_frames + lead[axes.axis], pts[:, 2:]])
    if given["boxes"] is not None:
        bxs = as_float_array(given["boxes"], "boxes")
        if bxs.ndim != 2 or bxs.shape[1] != 8:
            raise ValueError(
                "boxes must have shape (M, 8) rows (min_a0, min_a1, min_row, min_col, max_a0, max_a1, "
                f"max_row, max_col) for {shape}, got {bxs.shape}"
            )
        spans = ~np.isclose(bxs[:, 4], bxs[:, 0] + 1) | ~np.isclose(bxs[:, 5], bxs[:, 1] + 1)
        if spans.any():
            raise ValueError(
                f"every box of a 4D stack must lie on one frame of one plane (max_a0 == min_a0 + 1 and "
                f"max_a1 == min_a1 + 1), got boxes {bxs[spans][0].tolist()}"
            )
        lead = [_indices(bxs[:, i], n, f"boxes min_a{i}") for i, n in ((0, a0), (1, a1))]
        flat = lead[axes.other] * axes.n_frames + lead[axes.axis]
        boxes = np.column_stack([flat, bxs[:, 2:4], flat + 1, bxs[:, 6:8]])
    return normalize_prompts(
        points=points,
        point_labels=given["point_labels"],
        boxes=boxes,
        spatial_shape=(axes.n_planes * axes.n_frames, height, width),
    )


def split_by_plane(prompts: Sequence[Prompt], n_frames: int) -> dict[int, list[Prompt]]:
    """The tracker's prompts on :func:`flat_prompts`'s stack → ``{plane: its prompts on its frames}``
    (planes in order, prompts in given order)."""
    out: dict[int, list[Prompt]] = {}
    for prompt in prompts:
        plane, frame = divmod(prompt.frame, n_frames)
        out.setdefault(plane, []).append(dataclasses.replace(prompt, frame=frame))
    return dict(sorted(out.items()))


def plane_store(cache: str | Path | None, axes: PlaneAxes, plane: int) -> Path | None:
    """The frame store of plane ``plane``: ``<cache>/axis<axis>-plane<plane>`` (None without a cache).

    Raises
    ------
    CacheMismatchError
        ``cache`` is itself a store (a 3D stack's frame store or a SAM 1 embedding cache).
    """
    if cache is None:
        return None
    folder = Path(cache).expanduser()
    if (folder / "zarr.json").exists():
        raise CacheMismatchError(
            f"cache={str(folder)!r} is a store of its own (a 3D stack's frame store or a SAM 1 cache); a 4D "
            "stack keeps one frame store per plane in sub-folders of a folder: pass another folder"
        )
    return folder / f"axis{axes.axis}-plane{plane}"


def chain_steps(
    steps: Sequence[Generator[tuple[int, int], None, T]],
) -> Generator[tuple[int, int], None, list[T]]:
    """Step generators run one after the other as one: yields ``(done, total)`` over all of them,
    returns their results in order.

    Each is started (up to its first ``(0, total)``) before any runs on, so that every one checks its
    inputs before work begins, and the total is known. A failure in one ends the chain.
    """
    try:
        totals = [next(step)[1] for step in steps]
        total, offset = sum(totals), 0
        yield 0, total
        results: list[T] = []
        for step, length in zip(steps, totals, strict=True):
            while True:
                try:
                    done, _ = next(step)
                except StopIteration as stop:
                    results.append(stop.value)
                    break
                yield offset + done, total
            offset += length
        return results
    finally:
        for step in steps:
            step.close()
