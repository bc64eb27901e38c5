"""Propagate prompted objects through a stack of frames with SAM 2, as the official video predictor.

:class:`Sam2Tracker` works on tensors only: frames come in as features from a callable (so a caller
can compute, cache or stream them), prompts are given on the model's canvas, and results come out
frame by frame. It follows ``SAM2VideoPredictor`` (``add_new_points_or_box``, ``add_new_mask``,
``propagate_in_video`` forwards and in reverse) for initial prompts on one or more frames and any
number of objects, with the same results:

- a prompted frame is decoded without memory; its memory is encoded when propagation starts, from
  its low-res mask upsampled to the canvas and thresholded;
- a tracked frame attends to the conditioning frames, the ``num_maskmem - 1`` previous frames and
  up to ``max_obj_ptrs_in_encoder`` object pointers (:mod:`.memory_bank`);
- memories are kept in bfloat16 like the official predictor keeps them (``memory_dtype``);
- optionally, each memory's projected, rotated attention keys are computed once and kept while the
  frames being tracked attend to it (``cache_memory_keys``; :func:`.memory_bank.memory_keys`);
- a prompt on a frame already tracked is a *correction*: the frame is decoded again with its memory
  of the other frames, the new points and its tracked mask (as the official predictor does), and
  becomes a conditioning frame, so that the correction lasts through the next propagation (the
  official predictor's ``add_all_frames_to_correct_as_cond=True``; its default keeps corrected frames
  out of the conditioning frames, and the next propagation then overwrites them).

Objects whose memory plans agree on a frame (the usual case: prompted on the same frames) run as one
batch. Only what later frames can still use is kept: the conditioning frames' memories, and the
non-conditioning ones within reach of the current frame or of where a pass starts (for the pass in
the other direction), so a long stack streams in bounded memory.

Not supported (yet): ``fill_hole_area`` (the official predictor fills small holes with a CUDA extension
and skips it without one), non-overlap constraints.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .memory_bank import FrameMemory, MemoryPlan, assemble_memory, memory_keys, plan_memory
from .sam2 import NO_OBJ_SCORE, FrameFeatures, HeadsOutput, Sam2

#: Gives the features of frame ``i`` (batch size 1), e.g. ``lambda i: model.forward_image(frames[i:i+1])``.
FeatureSource = Callable[[int], FrameFeatures]


@dataclass(frozen=True)
class Prompt:
    """An initial prompt for one object on one frame, in canvas pixels (the model's ``image_size``).

    Give points (with labels), a box, a box and points, or a mask.

    Attributes
    ----------
    obj_id
        The object (any integer; objects are reported in the order they were first prompted).
    frame
        The frame index.
    points, labels
        ``(N, 2)`` ``(x, y)`` and ``(N,)`` 1 (positive) / 0 (negative).
    box
        ``(4,)`` ``(x0, y0, x1, y1)``; put before the points as two corner points.
    mask
        ``(H, W)`` bool / 0–1 mask; resized to the canvas (bilinear, antialiased, ``>= 0.5``) if needed.
    """

    obj_id: int
    frame: int
    points: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    box: torch.Tensor | None = None
    mask: torch.Tensor | None = None


@dataclass(frozen=True)
class TrackedFrame:
    """Every object's prediction on one frame (objects in the order they were first prompted).

    Attributes
    ----------
    frame
        The frame index.
    obj_ids
        The objects, one per row of the tensors.
    low_res_masks
        ``(O, 1, S/4, S/4)`` mask logits (:data:`~.sam2.NO_OBJ_SCORE` where absent or not prompted).
    masks
        ``(O, 1, H, W)`` the same at the output size (bilinear).
    object_score_logits
        ``(O, 1)``: positive where the object is present (NO_OBJ_SCORE: no output for it here).
    reverse
        Whether the frame was reached going towards frame 0.
    """

    frame: int
    obj_ids: tuple[int, ...]
    low_res_masks: torch.Tensor
    masks: torch.Tensor
    object_score_logits: torch.Tensor
    reverse: bool = False


@dataclass
class _Object:
    """One object's prompts and memories."""

    obj_id: int
    #: conditioning frames' memories (memory features filled in when propagation starts)
    cond: dict[int, FrameMemory] = field(default_factory=dict)
    #: conditioning frames' low-res masks ``(1, 1, s, s)`` (their output)
    cond_masks: dict[int, torch.Tensor] = field(default_factory=dict)
    #: tracked frames' memories, pruned to what can still be used
    non_cond: dict[int, FrameMemory] = field(default_factory=dict)
    #: tracked frames' low-res masks ``(1, 1, s, s)``, kept as long as their memory features (a
    #: correction on the frame starts from it)
    outputs: dict[int, torch.Tensor] = field(default_factory=dict)
    #: frames that have been output in a propagation → whether the last visit went in reverse
    tracked: dict[int, bool] = field(default_factory=dict)


class Sam2Tracker:
    """Propagates prompted objects through ``num_frames`` frames (see the module's description).

    Parameters
    ----------
    model
        A :class:`Sam2` in eval mode.
    features
        ``features(i)`` gives frame ``i``'s :class:`FrameFeatures` (batch size 1); called once per
        frame visit (the last frame's features are kept for repeated use).
    num_frames
        Frames in the stack.
    output_size
        ``(H, W)`` of :attr:`TrackedFrame.masks`; the canvas ``(S, S)`` by default.
    memory_dtype
        The dtype memories are kept in: bfloat16 (as the official predictor; half the memory) or
        float32.
    cache_memory_keys
        Keep the memory attention's keys of each memory the current frame attends to, for the next
        frames (``num_layers × h·w × d_model`` float32 per memory and object: 4 MB at a 512² canvas,
        16 MB at 1024², for the ``num_maskmem`` memories in use), instead of projecting and rotating
        every memory again for each frame. Off by default: with the rotation a single complex product,
        recomputing them is ~1 % of a tracked frame and no gain was measurable on CPU.
    keep_memories
        Keep every tracked frame's memory and mask (as the official predictor keeps them; memory then
        grows with the frames tracked) instead of only what the next frames can use. Needed to
        correct a frame whose neighbours' memories were released (far from where passes start); a
        correction that needs them otherwise raises an error. An attribute: it may be switched
        between passes.
    compute_dtype
        float32 (default: the official predictor's CPU arithmetic, parity-tested) or bfloat16: tracked
        frames run under ``torch.autocast`` in bfloat16 (as the official predictor is used on GPUs),
        ~2× faster on CPUs with bfloat16 matrix units (AVX-512 BF16, AMX) and on GPUs, with mask
        logits off by ~0.1 (masks at IoU ≥ 0.98 of the float32 ones on the benchmark); prompted frames
        and outputs stay float32.

    Examples
    --------
    >>> import torch
    >>> from napari_sam.model.sam2.configs import tiny_test_config
    >>> from napari_sam.model.sam2.sam2 import Sam2
    >>> model = Sam2(tiny_test_config()).eval()
    >>> frames = torch.zeros(3, 3, 128, 128)
    >>> tracker = Sam2Tracker(model, lambda i: model.forward_image(frames[i : i + 1]), num_frames=3)
    >>> with torch.no_grad():
    ...     _ = tracker.add_prompt(Prompt(obj_id=1, frame=1, points=torch.tensor([[64.0, 64.0]]),
    ...                                   labels=torch.tensor([1])))
    ...     ahead = [r.frame for r in tracker.propagate()]
    ...     back = [r.frame for r in tracker.propagate(reverse=True)]
    >>> ahead + back
    [1, 2, 1, 0]
    """

    def __init__(
        self,
        model: Sam2,
        features: FeatureSource,
        num_frames: int,
        *,
        output_size: tuple[int, int] | None = None,
        memory_dtype: torch.dtype = torch.bfloat16,
        cache_memory_keys: bool = False,
        keep_memories: bool = False,
        compute_dtype: torch.dtype = torch.float32,
    ) -> None:
        if num_frames < 1:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        if compute_dtype not in (torch.float32, torch.bfloat16):
            raise ValueError(f"compute_dtype must be torch.float32 or torch.bfloat16, got {compute_dtype}")
        self.compute_dtype = compute_dtype
        self.model = model
        self.num_frames = num_frames
        self.output_size = output_size or (model.image_size, model.image_size)
        self.memory_dtype = memory_dtype
        self.cache_memory_keys = cache_memory_keys
        self.keep_memories = keep_memories
        self._source = features
        self._cached: tuple[int, FrameFeatures] | None = None
        self._objects: dict[int, _Object] = {}
        #: (object, frame) prompted but not yet encoded into memory
        self._pending: list[tuple[int, int]] = []
        self._maskmem_pos: torch.Tensor | None = None
        self._anchors: set[int] = set()
        config = model.config
        self._mem_reach = config.num_maskmem * config.memory_temporal_stride_for_eval + 1
        self._ptr_reach = config.max_obj_ptrs_in_encoder

    @property
    def obj_ids(self) -> tuple[int, ...]:
        return tuple(self._objects)

    def _features(self, frame: int) -> FrameFeatures:
        if not 0 <= frame < self.num_frames:
            raise IndexError(f"frame {frame} outside 0..{self.num_frames - 1}")
        if self._cached is None or self._cached[0] != frame:
            features = self._source(frame)
            if features.batch_size != 1:
                raise ValueError(f"features({frame}) must have batch size 1, got {features.batch_size}")
            self._cached = (frame, features)
        return self._cached[1]

    # ------------------------------------------------------------------------------------------------
    # prompts

    def add_prompt(self, prompt: Prompt) -> TrackedFrame:
        """Decode ``prompt`` on its frame and make the frame a conditioning frame.

        On a frame the object has not been tracked on, the prompt is decoded without memory. On a
        tracked frame, points or a box *correct* it: they are decoded with the frame's memory of the
        other frames and its tracked mask logits as the mask prompt (a mask replaces the frame's
        output as on any frame). A second prompt for the same object and frame before propagation
        replaces the first (points are decoded together with the previous mask logits, as the
        official predictor does).

        Returns
        -------
        TrackedFrame
            Every object's masks on the prompt's frame: prompted ones, the tracked masks of other
            objects where they are kept, NO_OBJ_SCORE for the rest.

        Raises
        ------
        RuntimeError
            A correction needs memories or masks that were released to bound memory (create the
            tracker with ``keep_memories=True``).
        """
        obj = self._objects.setdefault(prompt.obj_id, _Object(prompt.obj_id))
        frame = prompt.frame
        features = self._features(frame)
        model = self.model
        if frame in obj.tracked and prompt.mask is None:
            out = self._correct(obj, prompt, features)
        elif prompt.mask is not None:
            if prompt.points is not None or prompt.box is not None:
                raise ValueError("give a mask alone, or points / a box, not both")
            mask = self._canvas_mask(prompt.mask)
            out = model.use_mask_as_output(features.image_embed, features.high_res, mask)
        else:
            coords, labels = self._point_inputs(prompt)
            previous = obj.cond_masks.get(frame) if (prompt.obj_id, frame) in self._pending else None
            mask_inputs = None if previous is None else previous.clamp(-32.0, 32.0)
            out = model.forward_sam_heads(
                model.add_no_memory(features.image_embed),
                features.high_res,
                point_coords=coords,
                point_labels=labels,
                mask_inputs=mask_inputs,
                multimask_output=model.use_multimask(
                    is_init_cond_frame=True, num_points=int(labels.shape[1])
                ),
            )
        obj.cond[frame] = FrameMemory(None, out.obj_ptr, out.object_score_logits)
        obj.cond_masks[frame] = out.low_res_masks
        if (prompt.obj_id, frame) not in self._pending:
            self._pending.append((prompt.obj_id, frame))
        rows: list[tuple[torch.Tensor, torch.Tensor] | None] = []
        for o in self._objects.values():
            if frame in o.cond_masks:
                rows.append((o.cond_masks[frame], o.cond[frame].object_score_logits))
            elif frame in o.outputs and frame in o.non_cond:
                rows.append((o.outputs[frame], o.non_cond[frame].object_score_logits))
            else:
                rows.append(None)
        return self._frame_result(frame, rows, reverse=obj.tracked.get(frame, False))

    def _correct(self, obj: _Object, prompt: Prompt, features: FrameFeatures) -> HeadsOutput:
        """Decode points / a box on a frame ``obj`` was tracked on: with the frame's memory of the
        other frames (as when it was tracked, in the same direction) and its last mask as the mask
        prompt (the official predictor's correction clicks)."""
        model, frame = self.model, prompt.frame
        reverse = obj.tracked[frame]
        previous = obj.cond_masks.get(frame, obj.outputs.get(frame))
        if previous is None:
            raise RuntimeError(
                f"the tracked mask of object {obj.obj_id} on frame {frame} was released to bound memory: "
                "create the Sam2Tracker with keep_memories=True to correct frames after passes go on"
            )
        encoded = [t for t, entry in obj.cond.items() if entry.maskmem_features is not None]
        kept = {t for t, entry in obj.non_cond.items() if entry.maskmem_features is not None}
        tracked = {t for t in obj.tracked if t not in encoded}

        def plan_with(remembered: set[int], pointers: Container[int]) -> MemoryPlan:
            config = model.config
            return plan_memory(
                frame,
                cond_frames=encoded,
                remembered=remembered,
                pointer_frames=pointers,
                num_frames=self.num_frames,
                reverse=reverse,
                num_maskmem=config.num_maskmem,
                max_obj_ptrs=config.max_obj_ptrs_in_encoder,
                max_cond=config.max_cond_frames_in_attn,
                stride=config.memory_temporal_stride_for_eval,
            )

        plan = plan_with(kept, obj.non_cond)
        if plan != plan_with(tracked, tracked):  # the official predictor would see released frames
            raise RuntimeError(
                f"correcting frame {frame} of object {obj.obj_id} needs memories of frames near it that "
                "were released to bound memory: create the Sam2Tracker with keep_memories=True"
            )
        if self._maskmem_pos is None:
            raise RuntimeError("no memory was encoded: a tracked frame without memories")
        memory, memory_pos, num_ptr = assemble_memory(
            model, plan, [obj.cond], [obj.non_cond], self._maskmem_pos
        )
        conditioned = model.condition_on_memory(features, memory, memory_pos, num_obj_ptr_tokens=num_ptr)
        coords, labels = self._point_inputs(prompt)
        return model.forward_sam_heads(
            conditioned,
            features.high_res,
            point_coords=coords,
            point_labels=labels,
            mask_inputs=previous.clamp(-32.0, 32.0),
            multimask_output=model.use_multimask(is_init_cond_frame=False, num_points=int(labels.shape[1])),
        )

    def _point_inputs(self, prompt: Prompt) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1, N, 2)`` float coordinates and ``(1, N)`` int32 labels, box corners first."""
        device = self.model.no_mem_embed.device
        coords = torch.zeros(0, 2)
        labels = torch.zeros(0, dtype=torch.int32)
        if (prompt.points is None) != (prompt.labels is None):
            raise ValueError("points and labels must be given together")
        if prompt.points is not None and prompt.labels is not None:
            coords = torch.as_tensor(prompt.points, dtype=torch.float32).reshape(-1, 2)
            labels = torch.as_tensor(prompt.labels, dtype=torch.int32).reshape(-1)
            if labels.shape[0] != coords.shape[0]:
                raise ValueError(f"{coords.shape[0]} points but {labels.shape[0]} labels")
        if prompt.box is not None:
            corners = torch.as_tensor(prompt.box, dtype=torch.float32).reshape(2, 2)
            coords = torch.cat([corners, coords])
            labels = torch.cat([torch.tensor([2, 3], dtype=torch.int32), labels])
        if coords.shape[0] == 0:
            raise ValueError(f"the prompt for object {prompt.obj_id} on frame {prompt.frame} is empty")
        return coords[None].to(device), labels[None].to(device)

    def _canvas_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """``(H, W)`` → ``(1, 1, S, S)`` float 0 / 1 on the canvas."""
        mask = torch.as_tensor(mask)
        if mask.ndim != 2:
            raise ValueError(f"a mask prompt must be 2D (H, W), got shape {tuple(mask.shape)}")
        size = self.model.image_size
        m = mask[None, None].float().to(self.model.no_mem_embed.device)
        if tuple(m.shape[-2:]) != (size, size):
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        return m

    def _encode_pending(self) -> None:
        """Encode the memories of the prompted frames (the official predictor's preflight)."""
        model, size = self.model, self.model.image_size
        for obj_id, frame in self._pending:
            obj = self._objects[obj_id]
            entry = obj.cond[frame]
            features = self._features(frame)
            high_res = F.interpolate(
                obj.cond_masks[frame], size=(size, size), mode="bilinear", align_corners=False
            )
            memory, pos = model.encode_memory(
                features.image_embed, high_res, entry.object_score_logits, is_mask_from_pts=True
            )
            entry.maskmem_features = memory.to(self.memory_dtype)
            self._maskmem_pos = pos[:1]
            obj.non_cond.pop(frame, None)
            obj.outputs.pop(frame, None)
        self._pending.clear()

    # ------------------------------------------------------------------------------------------------
    # propagation

    def propagate(
        self, *, reverse: bool = False, start_frame: int | None = None, max_frames: int | None = None
    ) -> Iterator[TrackedFrame]:
        """Track every object frame by frame, yielding each frame's :class:`TrackedFrame`.

        Parameters
        ----------
        reverse
            Go towards frame 0 instead of the last frame.
        start_frame
            The first frame; by default the earliest prompted frame of any object.
        max_frames
            Frames to go beyond the start, at most; all by default.


        Notes
        -----
        Memories of earlier passes are kept near their start frames and the earliest prompted
        frame; a pass started elsewhere sees fewer of them than the official predictor would.
        """
        if not self._objects:
            raise ValueError("no object has been prompted: call add_prompt first")
        self._encode_pending()
        if self._maskmem_pos is None:
            raise RuntimeError("no memory was encoded")
        if start_frame is None:
            start_frame = min(t for obj in self._objects.values() for t in obj.cond)
        span = self.num_frames if max_frames is None else max_frames
        if reverse:
            order = range(start_frame, max(start_frame - span, 0) - 1, -1) if start_frame > 0 else range(0)
        else:
            order = range(start_frame, min(start_frame + span, self.num_frames - 1) + 1)
        self._anchors = {start_frame, min(t for obj in self._objects.values() for t in obj.cond)}
        device_type = self.model.no_mem_embed.device.type
        lower = self.compute_dtype != torch.float32
        for frame in order:
            # the context ends before the yield: the caller's code never runs under autocast
            with torch.autocast(device_type, dtype=self.compute_dtype, enabled=lower):
                tracked = self._track_frame(frame, reverse)
            yield tracked
            self._prune(frame, reverse)

    def _track_frame(self, frame: int, reverse: bool) -> TrackedFrame:
        model = self.model
        rows: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * len(self._objects)
        groups: dict[MemoryPlan, list[int]] = {}
        used: list[set[tuple[int, bool]]] = [set() for _ in self._objects]
        objects = list(self._objects.values())
        for index, obj in enumerate(objects):
            if frame in obj.cond:
                rows[index] = (obj.cond_masks[frame], obj.cond[frame].object_score_logits)
                continue
            plan = plan_memory(
                frame,
                cond_frames=list(obj.cond),
                remembered={t for t, m in obj.non_cond.items() if m.maskmem_features is not None},
                pointer_frames=obj.non_cond,
                num_frames=self.num_frames,
                reverse=reverse,
                num_maskmem=model.config.num_maskmem,
                max_obj_ptrs=model.config.max_obj_ptrs_in_encoder,
                max_cond=model.config.max_cond_frames_in_attn,
                stride=model.config.memory_temporal_stride_for_eval,
            )
            groups.setdefault(plan, []).append(index)
            used[index] = {(t, is_cond) for _, t, is_cond in plan.memories}
        maskmem_pos = self._maskmem_pos
        if groups and maskmem_pos is None:
            raise RuntimeError("no memory was encoded: propagate() encodes the prompted frames first")
        for plan, members in groups.items():
            batch = self._features(frame).expand(len(members))
            conds = [objects[i].cond for i in members]
            non_conds = [objects[i].non_cond for i in members]
            memory, memory_pos, num_ptr = assemble_memory(
                model,
                plan,
                conds,
                non_conds,
                maskmem_pos,  # type: ignore[arg-type]
            )
            keys = None
            if self.cache_memory_keys and plan.memories:
                keys = memory_keys(model, plan, conds, non_conds, maskmem_pos)  # type: ignore[arg-type]
            conditioned = model.condition_on_memory(
                batch, memory, memory_pos, num_obj_ptr_tokens=num_ptr, rotated_memory_keys=keys
            )
            out = model.forward_sam_heads(
                conditioned,
                batch.high_res,
                multimask_output=model.use_multimask(is_init_cond_frame=False, num_points=0),
            )
            maskmem, _ = model.encode_memory(
                batch.image_embed, out.high_res_masks, out.object_score_logits, is_mask_from_pts=False
            )
            maskmem = maskmem.to(self.memory_dtype)
            for row, index in enumerate(members):  # kept and returned in float32 (no-ops if they are)
                score = out.object_score_logits[row : row + 1].float()
                low_res = out.low_res_masks[row : row + 1].float()
                objects[index].non_cond[frame] = FrameMemory(
                    maskmem[row : row + 1], out.obj_ptr[row : row + 1].float(), score
                )
                objects[index].outputs[frame] = low_res
                rows[index] = (low_res, score)
        for obj, in_use in zip(objects, used, strict=True):
            obj.tracked[frame] = reverse
            # keys are kept for the memories this frame attended to (the next frame's, but one)
            for is_cond, entries in ((True, obj.cond), (False, obj.non_cond)):
                for t, entry in entries.items():
                    if entry.keys is not None and (t, is_cond) not in in_use:
                        entry.keys = None
        return self._frame_result(frame, rows, reverse=reverse)

    def _prune(self, frame: int, reverse: bool) -> None:
        """Release the memories no later frame of this pass, nor a pass from an anchor, can use
        (nothing with ``keep_memories``)."""
        if self.keep_memories:
            return
        step = 1 if reverse else -1  # towards the frames behind

        def needed(t: int, reach: int) -> bool:
            behind = (t - frame) * step
            return 0 <= behind <= reach or any(abs(t - a) <= reach for a in self._anchors)

        for obj in self._objects.values():
            for t in list(obj.non_cond):
                entry = obj.non_cond[t]
                if entry.maskmem_features is not None and not needed(t, self._mem_reach):
                    entry.maskmem_features = None
                    entry.keys = None
                    obj.outputs.pop(t, None)
                if entry.maskmem_features is None and not needed(t, self._ptr_reach):
                    del obj.non_cond[t]

    def _frame_result(
        self, frame: int, rows: Sequence[tuple[torch.Tensor, torch.Tensor] | None], *, reverse: bool
    ) -> TrackedFrame:
        side = self.model.image_size // 4
        device = self.model.no_mem_embed.device
        masks, scores = [], []
        for row in rows:
            if row is None:
                masks.append(torch.full((1, 1, side, side), NO_OBJ_SCORE, device=device))
                scores.append(torch.full((1, 1), NO_OBJ_SCORE, device=device))
            else:
                masks.append(row[0])
                scores.append(row[1])
        low_res = torch.cat(masks)
        full = low_res
        if tuple(low_res.shape[-2:]) != tuple(self.output_size):
            full = F.interpolate(low_res, size=self.output_size, mode="bilinear", align_corners=False)
        return TrackedFrame(frame, self.obj_ids, low_res, full, torch.cat(scores), reverse)


def track(
    model: Sam2,
    features: FeatureSource,
    num_frames: int,
    prompts: Sequence[Prompt],
    *,
    output_size: tuple[int, int] | None = None,
    memory_dtype: torch.dtype = torch.bfloat16,
) -> dict[int, TrackedFrame]:
    """Prompt, then propagate forwards and in reverse from the earliest prompted frame.

    Returns
    -------
    dict
        Frame index → its :class:`TrackedFrame` (the reverse pass's where both passes visit a frame,
        as when the official predictor's outputs are collected into a dict).
    """
    tracker = Sam2Tracker(model, features, num_frames, output_size=output_size, memory_dtype=memory_dtype)
    for prompt in prompts:
        tracker.add_prompt(prompt)
    results: dict[int, TrackedFrame] = {}
    for reverse in (False, True):
        for result in tracker.propagate(reverse=reverse):
            results[result.frame] = result
    return results
