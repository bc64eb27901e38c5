"""Correction clicks on tracked frames, for SAM 2 memory propagation.

A :class:`Correction` is a few positive / negative clicks that fix one object's mask on one frame
after it was tracked there. The engine is stateless, so :func:`correct_tracker` replays what a user
of an interactive predictor does: the objects are tracked from their prompts as far as the corrected
frames (a first round, keeping every memory it makes), then each correction is decoded on its frame
with that frame's memory of the others and the tracked mask as the mask prompt
(:meth:`~napari_sam.model.sam2.tracking.Sam2Tracker.add_prompt` on a tracked frame). Corrected
frames are conditioning frames from then on: the propagation that follows (the result) starts again
from the earliest prompted frame and attends to them, so a correction reaches the frames before and
after it. The first round costs the frames between the prompts and the farthest correction in each
direction, and its memories (about 0.75 MB per frame and object at a 1024² canvas) are released as
the propagation proper goes on.

Coordinates are napari's: ``(row, col)`` pixels of the frame.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...model.sam2.tracking import Prompt, Sam2Tracker
from ..decode.coords import points_rc_to_xy, scale_xy

__all__ = ["Correction", "correct_tracker", "correction_passes", "correction_prompts"]


@dataclass(frozen=True)
class Correction:
    """Clicks that correct one object's tracked mask on one frame.

    Attributes
    ----------
    label
        The object: its label in the result (a seed label's id, or ``k + 1`` for the ``k``-th prompted
        object, numbered as :func:`napari_sam.segment` numbers them).
    frame
        The frame, along the followed axis.
    points
        ``(N, 2)`` ``(row, col)`` pixels of the frame.
    point_labels
        ``(N,)`` 1 (add: part of the object) or 0 (remove: not part of it).
    """

    label: int
    frame: int
    points: Any
    point_labels: Any


def correction_prompts(
    corrections: Iterable[Correction],
    *,
    labels: Iterable[int],
    frame_shape: tuple[int, int],
    image_size: int,
    window: tuple[int, int],
    range_name: str = "z_range",
) -> list[Prompt]:
    """Check ``corrections`` and turn them into tracker prompts (canvas ``(x, y)`` points).

    Parameters
    ----------
    corrections
        :class:`Correction` objects.
    labels
        The objects' labels (a correction must name one of them).
    frame_shape
        ``(Y, X)`` of a frame.
    image_size
        The model's square canvas side.
    window, range_name
        ``(start, stop)`` half-open frames being tracked, and the argument that gave them.

    Raises
    ------
    TypeError, ValueError
        Naming ``corrections`` and what was expected.
    """
    known = {int(label) for label in labels}
    lo, hi = window
    height, width = frame_shape
    out = []
    for index, item in enumerate(corrections):
        what = f"corrections[{index}]"
        if not isinstance(item, Correction):
            raise TypeError(f"{what} must be a Correction(label, frame, points, point_labels), got {item!r}")
        if int(item.label) not in known:
            raise ValueError(
                f"{what} names label {item.label}, which no prompt or seed label holds: {sorted(known)}"
            )
        if not lo <= int(item.frame) < hi:
            raise ValueError(
                f"{what} is on frame {item.frame}, outside the tracked frames {range_name}=({lo}, {hi})"
            )
        points = np.asarray(item.points, dtype=np.float64)
        flags = np.asarray(item.point_labels)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
            raise ValueError(f"{what}.points must be (N, 2) (row, col) with N >= 1, got shape {points.shape}")
        if flags.shape != (len(points),) or not np.isin(flags, (0, 1)).all():
            raise ValueError(
                f"{what}.point_labels must be {len(points)} values of 0 or 1, got {flags.tolist()}"
            )
        inside = (points >= 0).all(axis=1) & (points[:, 0] < height) & (points[:, 1] < width)
        if not inside.all():
            raise ValueError(
                f"{what}.points {points[~inside].tolist()} lie outside the {height}×{width} frame"
            )
        xy = scale_xy(points_rc_to_xy(points), frame_shape, (image_size, image_size))
        out.append(
            Prompt(
                obj_id=int(item.label),
                frame=int(item.frame),
                points=torch.from_numpy(np.asarray(xy, dtype=np.float32)),
                labels=torch.from_numpy(flags.astype(np.int32)),
            )
        )
    return out


def correction_passes(frames: Sequence[int], start: int) -> list[tuple[bool, int]]:
    """The first round's ``(reverse, span)`` passes from ``start``: as far as the farthest corrected
    frame in each direction (none without corrections)."""
    passes = []
    ahead = [f for f in frames if f >= start]
    behind = [f for f in frames if f < start]
    if ahead:
        passes.append((False, max(ahead) - start))
    if behind:
        passes.append((True, start - min(behind)))
    return passes


def correct_tracker(
    tracker: Sam2Tracker, corrections: Sequence[Prompt], start: int
) -> Generator[int, None, None]:
    """Track ``tracker``'s prompted objects as far as ``corrections`` need (keeping every memory), then
    decode each correction on its frame. A step generator: yields once per frame tracked.

    The tracker keeps its memories bounded again afterwards (its ``keep_memories`` as it was).
    """
    keep = tracker.keep_memories
    tracker.keep_memories = True
    try:
        for reverse, span in correction_passes([c.frame for c in corrections], start):
            for _ in tracker.propagate(reverse=reverse, start_frame=start, max_frames=span):
                yield 1
        for prompt in corrections:
            tracker.add_prompt(prompt)
    finally:
        tracker.keep_memories = keep
