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
from .seeds import prompt_arguments, stack_prompts

__all__ = [
    "MemoryPropagationResult",
    "iter_propagate_memory",
    "object_prompts",
    "propagate_memory",
    "seed_label_prompts",
    "segment_with_memory",
]

_MEMORY_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass
class MemoryPropagationResult:
    """What :func:`propagate_memory` returns.

    Attributes
    ----------
    labels
        ``(Z, Y, X)`` uint32: object ``k`` of the prompts as ``k + 1`` (seed labels keep their ids);
        zero outside the frame range.
    seeds
        ``{label: [its prompted frames]}``.
    stops
        ``{(label, "forward" | "backward"): frame}``: where ``stop_after_absent`` stopped an object
        (the first frame it was left out of).
    frames_tracked
        Frame visits (both directions; the start frame counts twice).
    """

    labels: np.ndarray
    seeds: dict[int, list[int]]
    stops: dict[tuple[int, str], int] = field(default_factory=dict)
    frames_tracked: int = 0


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
) -> Generator[tuple[int, int], None, MemoryPropagationResult]:
    """Track ``prompts`` (canvas coordinates, ``obj_id`` = label) through ``frames``: a step generator
    yielding ``(done, total)`` frames, returning the :class:`MemoryPropagationResult`.

    Raises
    ------
    ValueError
        No prompts; a prompt outside ``z_range`` (named ``range_name``); a bad ``stop_after_absent``
        or ``memory_dtype``.
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
    )
    labels = np.zeros(frames.shape, dtype=np.uint32)
    start = min(p.frame for p in prompts)
    passes = [(False, hi - 1 - start)] + ([(True, start - lo)] if start > lo else [])
    total = sum(span + 1 for _, span in passes)
    result = MemoryPropagationResult(labels, seeds if seeds is not None else _seeds_of(prompts))
    done = 0
    yield done, total
    with torch.no_grad():
        for prompt in prompts:
            tracker.add_prompt(prompt)
        for number, (reverse, span) in enumerate(passes):
            direction = "backward" if reverse else "forward"
            absent: dict[int, int] = {}
            stopped: set[int] = set()
            for tracked in tracker.propagate(reverse=reverse, start_frame=start, max_frames=span):
                _paint(labels[tracked.frame], tracked, stopped)
                done += 1
                result.frames_tracked += 1
                if stop_after_absent is not None:
                    _count_absent(tracked, absent, stopped, stop_after_absent, result.stops, direction)
                yield done, total
                if stop_after_absent is not None and len(stopped) == len(tracked.obj_ids):
                    break
            done = sum(s + 1 for _, s in passes[: number + 1])  # an early stop skips the rest of the pass
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
    stop_after_absent: int | None = None,
    memory_dtype: str = "bfloat16",
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
        :class:`Sam2Frames` (prompts must then lie on stored frames).
    labels_or_prompts
        ``(Z, Y, X)`` integer seed labels (each label an object, prompted with its mask on every frame
        that holds it, or on ``seed_slices``), or a mapping / :class:`Prompts` of prompts with z; the
        prompts may also come as ``points=`` / ``point_labels=`` / ``boxes=`` (as in
        :func:`napari_sam.segment`: ``(N, 3)`` ``(z, row, col)``, ``(M, 6)`` boxes on one frame).
    seed_slices
        With seed labels: only these frames seed objects.
    z_range, t_range
        ``(start, stop)`` half-open frames to track within (one of them; ``t_range`` for time
        series); default all.
    stop_after_absent
        Leave an object out once its object score has been ``<= 0`` for this many frames in a row
        (per direction); None: never.
    memory_dtype
        ``"bfloat16"`` (as the official predictor) or ``"float32"``.
    model, device
        A SAM 2 name (``"sam2.1_hiera_tiny"`` …), weights path or :class:`Sam2`, and its device.
    frames
        Precomputed :class:`Sam2Frames` (its model is used).
    cache, overwrite, cache_dtype
        The zarr frame store (:func:`~napari_sam.engine.embed.sam2_frames.open_frames`).
    normalize, percentiles, contrast_limits, channel, channel_axis
        Intensity preprocessing, as in :func:`napari_sam.segment`.
    progress, cancel
        See :mod:`napari_sam.engine.steps`.

    Returns
    -------
    MemoryPropagationResult
        ``labels`` ``(Z, Y, X)`` uint32 and the seeds.

    Raises
    ------
    ValueError
        A 2D image, ranges outside the stack, prompts outside the range, both ``z_range`` and
        ``t_range``, a SAM 1 model.
    CacheMismatchError
        ``cache`` is a SAM 1 embedding cache, or a frame store of another model or stack.
    """
    from ..loading import load_any_model

    if z_range is not None and t_range is not None:
        raise ValueError("give z_range or t_range, not both")
    range_name = "t_range" if t_range is not None else "z_range"
    if frames is None:
        sam = load_any_model(model, device)
        if not isinstance(sam, Sam2):
            raise ValueError(
                f"model={getattr(sam, 'name', model)!r} is a SAM 1 model: memory propagation needs a SAM 2 "
                "model; napari_sam.propagate() propagates SAM 1 models"
            )
        pre = Preprocessor(normalize, percentiles, contrast_limits, channel)
        frames = open_frames(
            volume,
            sam.eval(),
            cache=cache,
            overwrite=overwrite,
            cache_dtype=cache_dtype,
            preprocessor=pre,
            channel_axis=channel_axis,
        )
    elif not isinstance(frames, Sam2Frames):
        raise TypeError(f"frames must be Sam2Frames, got {type(frames).__name__}")
    window = frame_range(t_range if t_range is not None else z_range, frames.n_frames, range_name)
    tracker_prompts, seeds = _prompts_for(
        frames, labels_or_prompts, points, point_labels, boxes, seed_slices, window
    )
    steps = iter_propagate_memory(
        frames,
        tracker_prompts,
        z_range=t_range if t_range is not None else z_range,
        range_name=range_name,
        stop_after_absent=stop_after_absent,
        memory_dtype=memory_dtype,
        seeds=seeds,
    )
    return run_steps(steps, progress=progress, cancel=cancel, what="propagation", unit="frame")


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
    labels = np.asarray(labels_or_prompts)
    if labels.shape != frames.shape or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"seed labels must be integer (Z, Y, X) of the stack's shape {frames.shape}, got "
            f"{labels.dtype} {labels.shape}"
        )
    if labels.min(initial=0) < 0:
        raise ValueError("seed labels must not be negative")
    if seed_slices is not None:
        bad = [z for z in seed_slices if not 0 <= int(z) < frames.n_frames]
        if bad:
            raise ValueError(f"seed_slices {bad} lie outside the stack's {frames.n_frames} frames")
    chosen = range(*window) if seed_slices is None else seed_slices
    prompts, seeds = seed_label_prompts(labels, chosen)
    if not prompts:
        raise ValueError("the seed labels hold no object (all zero on the seed frames)")
    return prompts, seeds


#: segment()'s options that SAM 2 (memory propagation) takes, and the propagate_options keys it takes
_SAM2_PROPAGATE_OPTIONS = ("z_range", "t_range", "stop_after_absent", "memory_dtype", "cache_dtype")


def segment_with_memory(
    image: Any,
    prompts: Prompts,
    sam: Any,
    frames: Any,
    embedding: dict[str, Any],
    storage: dict[str, Any],
    propagate_options: dict[str, Any] | None,
) -> np.ndarray:
    """:func:`napari_sam.segment` on a stack with a SAM 2 model: the prompted objects tracked through
    the stack with memory (:func:`propagate_memory`); ``embedding`` / ``storage``: its preprocessing
    and cache keywords."""
    if embedding["tile"] is not None:
        raise ValueError(
            f"tile={embedding['tile']!r} does not apply to a SAM 2 model (frames fill its canvas)"
        )
    if embedding["object_size"] is not None:
        raise ValueError(
            f"object_size={embedding['object_size']!r} does not apply to a SAM 2 model: every frame is "
            "resized to its square canvas; leave it out"
        )
    if frames is not None and not isinstance(frames, Sam2Frames):
        raise TypeError(f"embeddings for a SAM 2 model must be Sam2Frames, got {type(frames).__name__}")
    options = dict(propagate_options or {})
    unknown = sorted(set(options) - set(_SAM2_PROPAGATE_OPTIONS))
    if unknown:
        raise ValueError(
            f"propagate_options {unknown} do not apply to a SAM 2 model; it takes "
            f"{', '.join(_SAM2_PROPAGATE_OPTIONS)}"
        )
    result = propagate_memory(
        image,
        prompts,
        model=sam,
        frames=frames,
        cache=storage["cache"],
        overwrite=storage["overwrite"],
        normalize=embedding["normalize"],
        percentiles=embedding["percentiles"],
        contrast_limits=embedding["contrast_limits"],
        channel=embedding["channel"],
        channel_axis=embedding["channel_axis"],
        **options,
    )
    return result.labels
