"""SAM 2 memory propagation: objects prompted on some frames of a stack, tracked through it with memory.

The SAM 2 counterpart of :mod:`.propagate` (SAM 1's slice-by-slice chains). Objects come as prompts
with z (numbered as :func:`napari_sam.segment` numbers them: boxes first, then free foreground points;
object ``k`` gets label ``k + 1``) or as seed labels (each label is an object, prompted with its mask on
every seed frame, and keeps its id). :class:`~napari_sam.model.sam2.tracking.Sam2Tracker` then tracks
every object forwards from the earliest prompted frame to the end of the range, and backwards from it
to the range's start, as the official video predictor does; frame features come from
:class:`~napari_sam.engine.embed.sam2_frames.Sam2Frames` one frame at a time (encoded on first use, or
read from its store), so memory does not grow with the stack's length.

On each frame an object's pixels are those with a positive mask logit while its object score is
positive; where objects overlap, the highest logit wins. With ``stop_after_absent=N`` an object whose
score has been ``<= 0`` for ``N`` frames in a row is left out for the rest of that direction, and a
direction ends when every object has stopped.

Coordinates are napari's (rows first) and go to the canvas through :mod:`..decode.coords`; the frame
``(Y, X)`` is stretched onto the square canvas (x by ``S / X``, y by ``S / Y``), as the official
predictor normalises its prompts.

A 4D stack ``(A0, A1, Y, X[, C])`` (a ``(T, Z, Y, X)`` time series of volumes) is followed along
``axis`` (0 or 1): each plane of the other leading axis that holds prompts or seed labels is tracked
on its own as a 3D sequence, and its labels go into a 4D result (:mod:`.memory_planes`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ...model.sam2.sam2 import Sam2
from ...model.sam2.tracking import Prompt, Sam2Tracker, TrackedFrame
from ..decode.coords import boxes_rc_to_xyxy, points_rc_to_xy, scale_xy
from ..decode.objects import plan_objects, stack_object_ids
from ..embed.sam2_frames import Sam2Frames, open_frames
from ..preprocess import DEFAULT_PERCENTILES, NormalizeMode, Preprocessor
from ..steps import run_steps
from ..types import Prompts
from .memory_corrections import Correction, correct_tracker, correction_passes, correction_prompts
from .memory_planes import (
    PlaneAxes,
    chain_steps,
    flat_prompts,
    followed_axis,
    is_plane_stack,
    plane_axes,
    plane_store,
    split_by_plane,
)
from .seeds import prompt_arguments, stack_prompts

__all__ = [
    "MemoryPropagationResult",
    "iter_propagate_memory",
    "object_prompts",
    "propagate_memory",
    "seed_label_prompts",
]

_MEMORY_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class MemoryPropagationResult:
    """What :func:`propagate_memory` returns.

    Attributes
    ----------
    labels
        ``(Z, Y, X)`` uint32: object ``k`` of the prompts as ``k + 1`` (seed labels keep their ids);
        zero outside the frame range. A 4D stack's: ``(A0, A1, Y, X)``, zero in planes not tracked.
    seeds
        ``{label: [its prompted frames]}``; a 4D stack's: the frames (along the followed axis) it was
        prompted on in any plane.
    stops
        ``{(label, "forward" | "backward"): frame}``: where ``stop_after_absent`` stopped an object
        (the first frame it was left out of). Empty for a 4D stack: its planes' are in
        ``plane_results``.
    frames_tracked
        Frame visits (both directions; the start frame counts twice); a 4D stack's: all planes'.
    planes
        A 4D stack's tracked planes (indices along the axis not followed), in order; empty for a
        3D stack.
    plane_results
        A 4D stack's ``{plane: its MemoryPropagationResult}``: the plane's ``(F, Y, X)`` labels (a view
        of ``labels``), seeds, stops and frame visits; empty for a 3D stack.
    """

    labels: np.ndarray
    seeds: dict[int, list[int]]
    stops: dict[tuple[int, str], int] = field(default_factory=dict)
    frames_tracked: int = 0
    planes: list[int] = field(default_factory=list)
    plane_results: dict[int, MemoryPropagationResult] = field(default_factory=dict)


def _canvas_xy(xy: np.ndarray, frame_shape: tuple[int, int], size: int) -> torch.Tensor:
    """``(..., 2)`` ``(x, y)`` frame pixels → float32 canvas pixels."""
    return torch.from_numpy(scale_xy(xy, frame_shape, (size, size))).to(torch.float32)


def object_prompts(prompts: Prompts, frame_shape: tuple[int, int], image_size: int) -> list[Prompt]:
    """Checked prompts on a stack → one tracker :class:`Prompt` per object, its ``obj_id`` its label.

    Objects are planned on each frame as :func:`napari_sam.segment` plans them (a box with the points
    inside it; a free foreground point with the frame's free background points), numbered as it
    numbers them (:func:`~napari_sam.engine.decode.objects.stack_object_ids`).
    """
    box_ids, point_ids, free = stack_object_ids(prompts)
    out: list[Prompt] = []
    for z in prompts.slices:
        on_p = prompts.points[:, 0] == z
        on_b = prompts.boxes[:, 0] == z
        ids = [*box_ids[on_b].tolist(), *point_ids[on_p & free].tolist()]
        for label, obj in zip(ids, plan_objects(prompts.on_slice(z)), strict=True):
            points = labels = box = None
            if obj.points:
                xy = points_rc_to_xy(np.stack(obj.points))
                points = _canvas_xy(xy, frame_shape, image_size)
                labels = torch.tensor(obj.labels, dtype=torch.int32)
            if obj.box is not None:
                corners = boxes_rc_to_xyxy(obj.box).reshape(2, 2)
                box = _canvas_xy(corners, frame_shape, image_size).reshape(4)
            out.append(Prompt(int(label), int(z), points=points, labels=labels, box=box))
    return sorted(out, key=lambda p: p.obj_id)


def seed_label_prompts(
    labels: np.ndarray, seed_frames: Sequence[int] | None = None
) -> tuple[list[Prompt], dict[int, list[int]]]:
    """``(Z, Y, X)`` seed labels → a mask :class:`Prompt` per label and seed frame (label order),
    and ``{label: its seed frames}``; frames without labels seed nothing."""
    frames = range(labels.shape[0]) if seed_frames is None else [int(z) for z in seed_frames]
    per_label: dict[int, list[int]] = {}
    masks: dict[tuple[int, int], np.ndarray] = {}
    for z in frames:
        plane = np.asarray(labels[z])
        for value in np.unique(plane):
            if value == 0:
                continue
            per_label.setdefault(int(value), []).append(z)
            masks[(int(value), z)] = plane == value
    prompts = [
        Prompt(label, z, mask=torch.from_numpy(masks[(label, z)]))
        for label in sorted(per_label)
        for z in per_label[label]
    ]
    return prompts, {label: per_label[label] for label in sorted(per_label)}


def frame_range(z_range: tuple[int, int] | None, n_frames: int, name: str = "z_range") -> tuple[int, int]:
    """``(start, stop)`` half-open, checked against the stack (None: every frame)."""
    if z_range is None:
        return 0, n_frames
    try:
        lo, hi = (int(v) for v in z_range)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (start, stop) frame numbers, got {z_range!r}") from None
    if not 0 <= lo < hi <= n_frames:
        raise ValueError(f"{name}={z_range!r} must satisfy 0 <= start < stop <= {n_frames} (the frames)")
    return lo, hi


def iter_propagate_memory(
    frames: Sam2Frames,
    prompts: Sequence[Prompt],
    *,
    z_range: tuple[int, int] | None = None,
    range_name: str = "z_range",
    stop_after_absent: int | None = None,
    memory_dtype: str = "bfloat16",
    seeds: dict[int, list[int]] | None = None,
    out: np.ndarray | None = None,
    corrections: Sequence[Prompt] = (),
    precision: str = "float32",
) -> Generator[tuple[int, int], None, MemoryPropagationResult]:
    """Track ``prompts`` (canvas coordinates, ``obj_id`` = label) through ``frames``: a step generator
    yielding ``(done, total)`` frames, returning the :class:`MemoryPropagationResult`.

    ``out``: a ``(Z, Y, X)`` uint32 array of the frames' shape (a view of a 4D result's plane, say) to
    write the labels into (frames outside ``z_range`` keep what it holds); default a new zero one.
    ``corrections``: clicks on tracked frames (canvas coordinates), applied before the propagation
    that gives the result (:func:`~.memory_corrections.correct_tracker`). ``precision``: the tracked
    frames' arithmetic, ``"float32"`` or ``"bfloat16"`` (:class:`Sam2Tracker`'s ``compute_dtype``).

    Raises
    ------
    ValueError
        No prompts; a prompt outside ``z_range`` (named ``range_name``); a bad ``stop_after_absent``
        or ``memory_dtype``; an ``out`` of another shape or dtype.
    MissingSliceError
        A prompt on a frame without features (a store read without its image).
    """
    if not prompts:
        raise ValueError("memory propagation needs at least one prompted object")
    if stop_after_absent is not None and (
        isinstance(stop_after_absent, bool)
        or not isinstance(stop_after_absent, (int, np.integer))
        or stop_after_absent < 1
    ):
        raise ValueError(f"stop_after_absent must be a positive integer or None, got {stop_after_absent!r}")
    if memory_dtype not in _MEMORY_DTYPES:
        raise ValueError(f"memory_dtype must be 'bfloat16' or 'float32', got {memory_dtype!r}")
    if precision not in _MEMORY_DTYPES:
        raise ValueError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    lo, hi = frame_range(z_range, frames.n_frames, range_name)
    outside = sorted({p.frame for p in prompts if not lo <= p.frame < hi})
    if outside:
        raise ValueError(f"prompts on frames {outside} lie outside {range_name}=({lo}, {hi})")
    missing = sorted({p.frame for p in prompts if not frames.available(p.frame)})
    if missing:
        from ...errors import MissingSliceError

        raise MissingSliceError(
            f"prompts on frames {missing}, which have no features in the frame store and no image was "
            "given to compute them: pass the stack"
        )
    model = frames.model
    height, width = frames.frame_shape
    tracker = Sam2Tracker(
        model,
        frames,
        frames.n_frames,
        output_size=(height, width),
        memory_dtype=_MEMORY_DTYPES[memory_dtype],
        compute_dtype=_MEMORY_DTYPES[precision],
    )
    if out is not None and (out.shape != frames.shape or out.dtype != np.uint32):
        raise ValueError(f"out must be uint32 {frames.shape}, got {out.dtype} {out.shape}")
    labels = np.zeros(frames.shape, dtype=np.uint32) if out is None else out
    start = min(p.frame for p in prompts)
    first_round = sum(span + 1 for _, span in correction_passes([c.frame for c in corrections], start))
    start_at = min([start, *(c.frame for c in corrections)])  # corrected frames are prompted ones too
    passes = [(False, hi - 1 - start_at)] + ([(True, start_at - lo)] if start_at > lo else [])
    total = first_round + sum(span + 1 for _, span in passes)
    result = MemoryPropagationResult(labels, seeds if seeds is not None else _seeds_of(prompts))
    done = 0
    yield done, total
    with torch.no_grad():
        for prompt in prompts:
            tracker.add_prompt(prompt)
        for _ in correct_tracker(tracker, corrections, start):
            done += 1
            yield done, total
        for number, (reverse, span) in enumerate(passes):
            direction = "backward" if reverse else "forward"
            absent: dict[int, int] = {}
            stopped: set[int] = set()
            for tracked in tracker.propagate(reverse=reverse, start_frame=start_at, max_frames=span):
                _paint(labels[tracked.frame], tracked, stopped)
                done += 1
                result.frames_tracked += 1
                if stop_after_absent is not None:
                    _count_absent(tracked, absent, stopped, stop_after_absent, result.stops, direction)
                yield done, total
                if stop_after_absent is not None and len(stopped) == len(tracked.obj_ids):
                    break
            done = first_round + sum(s + 1 for _, s in passes[: number + 1])  # an early stop skips the rest
            yield done, total
    return result


def _seeds_of(prompts: Sequence[Prompt]) -> dict[int, list[int]]:
    seeds: dict[int, list[int]] = {}
    for p in prompts:
        frames = seeds.setdefault(p.obj_id, [])
        if p.frame not in frames:
            frames.append(p.frame)
    return {k: sorted(v) for k, v in sorted(seeds.items())}


def _paint(plane: np.ndarray, tracked: TrackedFrame, stopped: set[int]) -> None:
    """Write ``tracked``'s objects into the ``(Y, X)`` ``plane``: present objects' positive logits, the
    highest logit winning; stopped objects left out."""
    logits = tracked.masks[:, 0].float()
    present = (tracked.object_score_logits[:, 0] > 0).cpu()
    keep = [i for i, obj in enumerate(tracked.obj_ids) if bool(present[i]) and obj not in stopped]
    plane[...] = 0
    if not keep:
        return
    chosen = logits[keep].cpu()
    best, index = chosen.max(dim=0)
    ids = torch.tensor([tracked.obj_ids[i] for i in keep], dtype=torch.int64)
    on = (best > 0).numpy()
    plane[on] = ids[index].numpy()[on].astype(np.uint32)


def _count_absent(
    tracked: TrackedFrame,
    absent: dict[int, int],
    stopped: set[int],
    limit: int,
    stops: dict[tuple[int, str], int],
    direction: str,
) -> None:
    scores = tracked.object_score_logits[:, 0].cpu()
    step = -1 if tracked.reverse else 1
    for i, obj in enumerate(tracked.obj_ids):
        if obj in stopped:
            continue
        absent[obj] = absent.get(obj, 0) + 1 if float(scores[i]) <= 0 else 0
        if absent[obj] >= limit:
            stopped.add(obj)
            stops[(obj, direction)] = tracked.frame + step


def propagate_memory(
    volume: Any,
    labels_or_prompts: Any = None,
    *,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    seed_slices: Sequence[int] | None = None,
    z_range: tuple[int, int] | None = None,
    t_range: tuple[int, int] | None = None,
    axis: int = 0,
    stop_after_absent: int | None = None,
    corrections: Sequence[Correction] | None = None,
    memory_dtype: str = "bfloat16",
    precision: str = "float32",
    model: Any = "sam2.1_hiera_tiny",
    device: Any = "auto",
    frames: Sam2Frames | None = None,
    cache: Any = None,
    overwrite: bool = False,
    cache_dtype: str = "float16",
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    progress: Callable[[int, int], Any] | bool | None = None,
    cancel: threading.Event | None = None,
) -> MemoryPropagationResult:
    """Propagate objects through a stack with a SAM 2 model's memory (see the module's description).

    Parameters
    ----------
    volume
        ``(Z, Y, X[, C])`` stack (numpy, dask or zarr; any dtype); frames are encoded when first
        visited (through ``cache=`` when given). None with ``frames=`` a store-only
        :class:`Sam2Frames` (prompts must then lie on stored frames). Or a 4D stack
        ``(A0, A1, Y, X[, C])`` — ``(T, Z, Y, X)`` say — followed along ``axis``: a 4D array is one
        unless it holds channels as a 3D stack's (``channel_axis=`` given, a last axis of at most 4,
        or ``channel=`` with a last axis that may hold channels); a 5D array is one with channels last.
        It is read plane by plane, lazily (dask and zarr stay lazy).
    labels_or_prompts
        ``(Z, Y, X)`` integer seed labels (each label an object, prompted with its mask on every frame
        that holds it, or on ``seed_slices``), or a mapping / :class:`Prompts` of prompts with z; the
        prompts may also come as ``points=`` / ``point_labels=`` / ``boxes=`` (as in
        :func:`napari_sam.segment`: ``(N, 3)`` ``(z, row, col)``, ``(M, 6)`` boxes on one frame).
        For a 4D stack: ``(A0, A1, Y, X)`` seed labels (zero where there are none), or ``(N, 4)``
        points ``(a0, a1, row, col)`` and ``(M, 8)`` half-open boxes ``(min_a0, min_a1, min_row,
        min_col, max_a0, max_a1, max_row, max_col)`` on one frame of one plane (``max_a0 = min_a0 +
        1``, ``max_a1 = min_a1 + 1``); objects are numbered over all planes as
        :func:`napari_sam.segment` numbers them, and seed labels keep their ids in every plane.
    seed_slices
        With seed labels: only these frames seed objects (frames along ``axis`` for a 4D stack, in
        every plane).
    z_range, t_range
        ``(start, stop)`` half-open frames to track within (one of them; ``t_range`` for time
        series); default all. For a 4D stack, frames along ``axis``.
    axis
        The axis objects are followed along: 0 (or -3) for a 3D stack; 0 or 1 (or -4 / -3) for a 4D
        stack ``(A0, A1, Y, X)``, whose other leading axis indexes *planes*. Each plane that holds
        prompts or seed labels is tracked on its own as its ``(F, Y, X[, C])`` sequence; the others
        stay 0. ``axis=0`` on ``(T, Z, Y, X)`` follows every z plane through time.
    stop_after_absent
        Leave an object out once its object score has been ``<= 0`` for this many frames in a row
        (per direction); None: never.
    corrections
        :class:`~.memory_corrections.Correction` clicks that fix an object's tracked mask on a frame
        (its label, the frame, ``(row, col)`` points, 1 / 0 point labels): the objects are tracked as
        far as the corrected frames, each correction is decoded there with the frame's memory and
        tracked mask, and the corrected frames guide the propagation that gives the result (see
        :mod:`~.memory_corrections`). 3D stacks only.
    memory_dtype
        ``"bfloat16"`` (as the official predictor) or ``"float32"``.
    precision
        The arithmetic of tracked frames: ``"float32"`` (the official predictor's on a CPU) or
        ``"bfloat16"`` (autocast, as it is used on GPUs): ~2× faster on CPUs with bfloat16 matrix
        units (AVX-512 BF16, AMX) and on GPUs, masks within a pixel or two of the float32 ones.
    model, device
        A SAM 2 name (``"sam2.1_hiera_tiny"`` …), weights path or :class:`Sam2`, and its device.
    frames
        Precomputed :class:`Sam2Frames` (its model is used); a 3D stack only.
    cache, overwrite, cache_dtype
        The zarr frame store (:func:`~napari_sam.engine.embed.sam2_frames.open_frames`). For a 4D
        stack, a folder holding one frame store per tracked plane: ``<cache>/axis<axis>-plane<p>``
        (plane ``p`` of the stack followed along ``axis``), each made, checked and resumed on its own.
    normalize, percentiles, contrast_limits, channel, channel_axis
        Intensity preprocessing, as in :func:`napari_sam.segment` (a 4D stack's channels are last).
    progress, cancel
        See :mod:`napari_sam.engine.steps`; a 4D stack counts the frames of all its tracked planes.

    Returns
    -------
    MemoryPropagationResult
        ``labels`` ``(Z, Y, X)`` uint32 and the seeds; for a 4D stack ``(A0, A1, Y, X)`` uint32, the
        tracked ``planes`` and each one's result (``plane_results``).

    Raises
    ------
    ValueError
        A 2D image, ranges outside the stack, prompts outside the range, both ``z_range`` and
        ``t_range``, a SAM 1 model, an ``axis`` that does not fit the stack, 4D prompts with other
        than 4 / 8 coordinates or outside the stack, ``frames=`` with a 4D stack; a correction naming
        no object, off the tracked frames or the frame, or given with a 4D stack.
    CacheMismatchError
        ``cache`` is a SAM 1 embedding cache, or a frame store of another model or stack (for a 4D
        stack: ``cache`` itself a store).

    Examples
    --------
    A 3D segmentation at time point 0 of a ``(T, Z, Y, X)`` series, followed through time in every z
    plane (the ids kept):

    >>> seeds = np.zeros(series.shape, np.uint32)  # doctest: +SKIP
    >>> seeds[0] = labels_t0  # doctest: +SKIP
    >>> result = propagate_memory(series, seeds, axis=0, model="sam2.1_hiera_tiny")  # doctest: +SKIP
    """
    if z_range is not None and t_range is not None:
        raise ValueError("give z_range or t_range, not both")
    range_name = "t_range" if t_range is not None else "z_range"
    window_arg = t_range if t_range is not None else z_range
    if volume is not None and is_plane_stack(volume, channel_axis, channel):
        if frames is not None:
            raise ValueError(
                f"frames= (one Sam2Frames) does not apply to a 4D stack of shape {np.shape(volume)}: its "
                "planes are tracked on their own, each with its frames; pass cache= a folder to keep them"
            )
        if corrections:
            raise ValueError("corrections= applies to 3D stacks; track the 4D stack's plane as a 3D one")
        axes = plane_axes(volume, axis, channel_axis, channel)
        sam = _load_sam2(model, device)
        pre = Preprocessor(normalize, percentiles, contrast_limits, channel)
        opened = {"cache": cache, "overwrite": overwrite, "cache_dtype": cache_dtype, "preprocessor": pre}
        given = (labels_or_prompts, points, point_labels, boxes, seed_slices)
        tracking = {
            "stop_after_absent": stop_after_absent,
            "memory_dtype": memory_dtype,
            "precision": precision,
        }
        planes = _iter_planes(volume, sam, axes, given, (window_arg, range_name), opened, tracking)
        return run_steps(planes, progress=progress, cancel=cancel, what="propagation", unit="frame")
    followed_axis(axis, np.shape(volume) if volume is not None else getattr(frames, "shape", ()), 3)
    if frames is None:
        sam = _load_sam2(model, device)
        pre = Preprocessor(normalize, percentiles, contrast_limits, channel)
        frames = open_frames(
            volume,
            sam,
            cache=cache,
            overwrite=overwrite,
            cache_dtype=cache_dtype,
            preprocessor=pre,
            channel_axis=channel_axis,
        )
    elif not isinstance(frames, Sam2Frames):
        raise TypeError(f"frames must be Sam2Frames, got {type(frames).__name__}")
    window = frame_range(window_arg, frames.n_frames, range_name)
    tracker_prompts, seeds = _prompts_for(
        frames, labels_or_prompts, points, point_labels, boxes, seed_slices, window
    )
    fixes = correction_prompts(
        corrections or (),
        labels=(p.obj_id for p in tracker_prompts),
        frame_shape=frames.frame_shape,
        image_size=frames.model.image_size,
        window=window,
        range_name=range_name,
    )
    steps = iter_propagate_memory(
        frames,
        tracker_prompts,
        z_range=window_arg,
        range_name=range_name,
        stop_after_absent=stop_after_absent,
        memory_dtype=memory_dtype,
        seeds=seeds,
        corrections=fixes,
        precision=precision,
    )
    return run_steps(steps, progress=progress, cancel=cancel, what="propagation", unit="frame")


def _load_sam2(model: Any, device: Any) -> Sam2:
    """``model`` loaded on ``device``, in eval mode; a ValueError for a SAM 1 model."""
    from ..loading import load_any_model

    sam = load_any_model(model, device)
    if not isinstance(sam, Sam2):
        raise ValueError(
            f"model={getattr(sam, 'name', model)!r} is a SAM 1 model: memory propagation needs a SAM 2 "
            "model; napari_sam.propagate() propagates SAM 1 models"
        )
    return sam.eval()


def _iter_planes(
    volume: Any,
    sam: Sam2,
    axes: PlaneAxes,
    given: tuple[Any, Any, Any, Any, Sequence[int] | None],
    window_arg: tuple[tuple[int, int] | None, str],
    opened: dict[str, Any],
    tracking: dict[str, Any],
) -> Generator[tuple[int, int], None, MemoryPropagationResult]:
    """A 4D stack's planes tracked one after the other (see :func:`propagate_memory`): a step generator
    over the frames of all of them, returning the 4D :class:`MemoryPropagationResult`. Every plane's
    prompts, range and frame store are checked before any frame is tracked."""
    z_range, range_name = window_arg
    window = frame_range(z_range, axes.n_frames, range_name)
    per_plane = _plane_prompts(axes, sam.image_size, *given, window)
    if not hasattr(volume, "dtype") or not hasattr(volume, "__getitem__"):
        volume = np.asarray(volume)
    labels = np.zeros(axes.spatial, dtype=np.uint32)
    steps = []
    for plane, (prompts, seeds) in per_plane.items():
        store = plane_store(opened["cache"], axes, plane)
        frames = open_frames(
            axes.view(volume, plane), sam, **{**opened, "cache": store}, channel_axis=axes.channel_axis
        )
        out = axes.labels_of(labels, plane)
        steps.append(
            iter_propagate_memory(
                frames, prompts, z_range=z_range, range_name=range_name, seeds=seeds, out=out, **tracking
            )
        )
    results = yield from chain_steps(steps)
    by_plane = dict(zip(per_plane, results, strict=True))
    union: dict[int, set[int]] = {}
    for result in results:
        for label, frames_of in result.seeds.items():
            union.setdefault(label, set()).update(frames_of)
    return MemoryPropagationResult(
        labels,
        {label: sorted(union[label]) for label in sorted(union)},
        frames_tracked=sum(r.frames_tracked for r in results),
        planes=list(by_plane),
        plane_results=by_plane,
    )


def _plane_prompts(
    axes: PlaneAxes,
    image_size: int,
    labels_or_prompts: Any,
    points: Any,
    point_labels: Any,
    boxes: Any,
    seed_slices: Sequence[int] | None,
    window: tuple[int, int],
) -> dict[int, tuple[list[Prompt], dict[int, list[int]] | None]]:
    """``{plane: (its tracker prompts, its seeds or None: from the prompts)}`` of a 4D stack's prompts
    or seed labels, planes in order (those without any left out)."""
    given = prompt_arguments(labels_or_prompts, points, point_labels, boxes)
    if given is not None:
        if seed_slices is not None:
            raise ValueError("seed_slices= applies to seed labels, not to prompts")
        flat = object_prompts(flat_prompts(given, axes), axes.frame_shape, image_size)
        return {p: (prompts, None) for p, prompts in split_by_plane(flat, axes.n_frames).items()}
    if labels_or_prompts is None:
        raise ValueError("memory propagation needs seed labels or prompts (points= / boxes=)")
    labels = _seed_labels(
        labels_or_prompts,
        seed_slices,
        axes.spatial,
        axes.n_frames,
        ("(A0, A1, Y, X) of the 4D stack's", f"frames along axis={axes.axis}"),
    )
    chosen = list(range(*window) if seed_slices is None else seed_slices)
    out: dict[int, tuple[list[Prompt], dict[int, list[int]] | None]] = {}
    for plane in range(axes.n_planes):
        prompts, seeds = seed_label_prompts(axes.labels_of(labels, plane), chosen)
        if prompts:
            out[plane] = (prompts, seeds)
    if not out:
        raise ValueError("the seed labels hold no object (all zero on the seed frames)")
    return out


def _seed_labels(
    labels: Any,
    seed_slices: Sequence[int] | None,
    shape: tuple[int, ...],
    n_frames: int,
    words: tuple[str, str],
) -> np.ndarray:
    """``labels`` as an array, checked: integer, of ``shape``, not negative, and ``seed_slices`` within
    the ``n_frames`` frames (``words``: how the messages name the shape and the frames)."""
    array = np.asarray(labels)
    if array.shape != shape or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"seed labels must be integer {words[0]} shape {shape}, got {array.dtype} {array.shape}"
        )
    if array.min(initial=0) < 0:
        raise ValueError("seed labels must not be negative")
    bad = [z for z in seed_slices or () if not 0 <= int(z) < n_frames]
    if bad:
        raise ValueError(f"seed_slices {bad} lie outside the {n_frames} {words[1]}")
    return array


def _prompts_for(
    frames: Sam2Frames,
    labels_or_prompts: Any,
    points: Any,
    point_labels: Any,
    boxes: Any,
    seed_slices: Sequence[int] | None,
    window: tuple[int, int],
) -> tuple[list[Prompt], dict[int, list[int]] | None]:
    """The tracker's prompts from seed labels or prompts with z, and the seeds (None: from prompts).
    Seed labels seed the frames of ``window`` (or ``seed_slices``)."""
    given = prompt_arguments(labels_or_prompts, points, point_labels, boxes)
    size = frames.model.image_size
    if given is not None:
        if seed_slices is not None:
            raise ValueError("seed_slices= applies to seed labels, not to prompts")
        checked = stack_prompts(given, frames.shape)
        return object_prompts(checked, frames.frame_shape, size), None
    if labels_or_prompts is None:
        raise ValueError("memory propagation needs seed labels or prompts (points= / boxes= with z)")
    labels = _seed_labels(
        labels_or_prompts, seed_slices, frames.shape, frames.n_frames, ("(Z, Y, X) of the stack's", "frames")
    )
    chosen = range(*window) if seed_slices is None else seed_slices
    prompts, seeds = seed_label_prompts(labels, chosen)
    if not prompts:
        raise ValueError("the seed labels hold no object (all zero on the seed frames)")
    return prompts, seeds
