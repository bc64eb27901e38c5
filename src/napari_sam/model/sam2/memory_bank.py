"""Which remembered frames a SAM 2 frame attends to, and the memory tokens built from them.

A frame tracked after the prompted ones attends to (the official ``SAM2Base`` rules, in eval mode):

- the *conditioning* frames (those with prompts), all of them or the ``max_cond_frames_in_attn``
  nearest ones, in memory slot 0;
- the ``num_maskmem - 1`` previous frames in the direction of travel (every ``r``-th frame, the nearest
  one always), in slots ``1 … num_maskmem - 1`` (the nearest frame in the last slot);
- the object pointers of the conditioning frames up to the current one and of the
  ``max_obj_ptrs_in_encoder - 1`` previous frames, each with a sine encoding of its signed distance.

:func:`plan_memory` decides this from frame indices alone (so frames whose plans are equal can be run
as one batch); :func:`assemble_memory` turns a plan and the remembered tensors into memory tokens, and
:func:`memory_keys` into the memory attention's keys of the spatial memories: each remembered frame's
keys are projected and rotated once (kept in :attr:`FrameMemory.keys`) and only the slot's temporal
encoding is added per frame that attends to it.
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import torch

from .memory_attention import MemoryAttentionLayer

if TYPE_CHECKING:
    from .sam2 import Sam2


@dataclass
class FrameMemory:
    """What one frame leaves to the frames after it, for one object (batch size 1) or several.

    Attributes
    ----------
    maskmem_features
        ``(B, mem_dim, h, w)`` the encoded memory, in the dtype it is kept in (bfloat16 as the
        official predictor keeps it); None once no frame can attend to it any more.
    obj_ptr
        ``(B, C)`` the object pointer.
    object_score_logits
        ``(B, 1)``.
    keys
        Per memory-attention layer, ``(B, heads, h·w, head_dim)`` float32: the cross-attention keys of
        ``maskmem_features`` with their spatial encoding, projected and rotated, without the temporal
        encoding of a slot (:func:`memory_keys`); None until a frame attends to this memory, and once
        the tracker releases them.
    """

    maskmem_features: torch.Tensor | None
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor
    keys: tuple[torch.Tensor, ...] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class MemoryPlan:
    """The remembered frames one frame attends to (frame indices only; equal plans batch together).

    Attributes
    ----------
    memories
        ``(slot, frame, is_cond)`` of each spatial memory, in order: conditioning frames in slot 0,
        then the previous frames (slot ``num_maskmem - 1`` the nearest).
    pointers
        ``(distance, frame, is_cond)`` of each object pointer: conditioning frames first, then the
        previous frames, nearest first; ``distance`` is what the temporal encoding encodes.
    max_pointers
        ``min(num_frames, max_obj_ptrs_in_encoder)``: scales the distances.
    """

    memories: tuple[tuple[int, int, bool], ...]
    pointers: tuple[tuple[int, int, bool], ...]
    max_pointers: int


def select_cond_frames(frame: int, cond_frames: Sequence[int], max_cond: int) -> tuple[list[int], list[int]]:
    """Split ``cond_frames`` into those ``frame`` attends to and the others.

    With ``max_cond == -1`` (or no more conditioning frames than that) all are selected. Otherwise:
    the nearest one before ``frame``, the nearest one at or after it, then the nearest others up to
    ``max_cond``. Orders are kept as the official code keeps them (it matters for the memory order).
    """
    if max_cond == -1 or len(cond_frames) <= max_cond:
        return list(cond_frames), []
    selected: list[int] = []
    before = [t for t in cond_frames if t < frame]
    after = [t for t in cond_frames if t >= frame]
    if before:
        selected.append(max(before))
    if after:
        selected.append(min(after))
    rest = sorted((t for t in cond_frames if t not in selected), key=lambda t: abs(t - frame))
    selected += rest[: max_cond - len(selected)]
    return selected, [t for t in cond_frames if t not in selected]


def plan_memory(
    frame: int,
    *,
    cond_frames: Sequence[int],
    remembered: Container[int],
    num_frames: int,
    reverse: bool,
    num_maskmem: int,
    max_obj_ptrs: int,
    max_cond: int = -1,
    stride: int = 1,
    pointer_frames: Container[int] | None = None,
) -> MemoryPlan:
    """The memories and pointers ``frame`` attends to (:class:`MemoryPlan`).

    Parameters
    ----------
    frame
        The frame being tracked (not a conditioning frame of this object).
    cond_frames
        The object's conditioning frames, in the order they were added.
    remembered
        Non-conditioning frames whose memory features are kept.
    num_frames
        Frames in the stack (pointers are only looked for inside it).
    reverse
        Tracking towards frame 0: "previous" frames are the later ones.
    num_maskmem, max_obj_ptrs, max_cond, stride
        The model's ``num_maskmem``, ``max_obj_ptrs_in_encoder``, ``max_cond_frames_in_attn`` and
        ``memory_temporal_stride_for_eval``.
    pointer_frames
        Non-conditioning frames whose object pointers are kept; ``remembered`` by default.
    """
    if not cond_frames:
        raise ValueError(f"frame {frame} has no conditioning frame to track from: prompt a frame first")
    selected, unselected = select_cond_frames(frame, cond_frames, max_cond)
    step = 1 if reverse else -1  # towards the frames already tracked
    memories = [(0, t, True) for t in selected]
    for slot in range(1, num_maskmem):
        back = num_maskmem - slot  # frames back from the current one
        if back == 1:
            prev = frame + step
        elif not reverse:
            prev = ((frame - 2) // stride) * stride - (back - 2) * stride
        else:
            prev = -(-(frame + 2) // stride) * stride + (back - 2) * stride
        if prev in remembered:
            memories.append((slot, prev, False))
        elif prev in unselected:
            memories.append((slot, prev, True))
    pointer_frames = remembered if pointer_frames is None else pointer_frames
    max_pointers = min(num_frames, max_obj_ptrs)
    sign = -1 if reverse else 1
    pointers = [((frame - t) * sign, t, True) for t in selected if (t >= frame if reverse else t <= frame)]
    for distance in range(1, max_pointers):
        t = frame - distance * sign
        if t < 0 or t >= num_frames:
            break
        if t in pointer_frames:
            pointers.append((distance, t, False))
        elif t in unselected:
            pointers.append((distance, t, True))
    return MemoryPlan(tuple(memories), tuple(pointers), max_pointers)


def assemble_memory(
    model: Sam2,
    plan: MemoryPlan,
    cond: Sequence[Mapping[int, FrameMemory]],
    non_cond: Sequence[Mapping[int, FrameMemory]],
    maskmem_pos: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The memory tokens of ``plan`` for a batch of objects that share it.

    Parameters
    ----------
    model
        Gives the temporal encodings and the pointer projection.
    plan
        From :func:`plan_memory` (the same for every object of the batch).
    cond, non_cond
        Per object of the batch: its conditioning and non-conditioning frames' memories (batch 1).
    maskmem_pos
        ``(1, mem_dim, h, w)`` the memories' spatial position encoding (the same for every frame).

    Returns
    -------
    memory, memory_pos
        ``(L, B, mem_dim)`` float32 tokens (spatial memories, then pointer tokens) and their encodings.
    num_obj_ptr_tokens
        How many of the last tokens are object pointers (each ``C``-channel pointer is split into
        ``C / mem_dim`` tokens).
    """
    batch = len(cond)
    mem_dim, channels = model.mem_dim, model.hidden_dim

    def frame_memory(obj: int, frame: int, is_cond: bool) -> FrameMemory:
        return (cond if is_cond else non_cond)[obj][frame]

    tokens, encodings = [], []
    pos = maskmem_pos.flatten(2).permute(2, 0, 1).float()  # (hw, 1, mem_dim)
    for slot, frame, is_cond in plan.memories:
        parts = []
        for obj in range(batch):
            features = frame_memory(obj, frame, is_cond).maskmem_features
            if features is None:
                raise RuntimeError(f"the memory of frame {frame} was released but is still needed")
            parts.append(features)
        stacked = torch.cat(parts).float()  # kept in bfloat16; upcasting is exact
        tokens.append(stacked.flatten(2).permute(2, 0, 1))
        encoding = pos + model.maskmem_tpos_enc[model.num_maskmem - slot - 1]
        encodings.append(encoding.expand(-1, batch, -1))
    num_ptr_tokens = 0
    if plan.pointers:
        ptrs = torch.stack(
            [
                torch.cat([frame_memory(obj, t, c).obj_ptr for obj in range(batch)])
                for _, t, c in plan.pointers
            ]
        )  # (P, B, C)
        distances = torch.tensor([d for d, _, _ in plan.pointers], device=ptrs.device)
        # the official code divides by max_pointers - 1 (undefined for a one-frame stack, which has
        # no frame to track)
        scaled = distances / max(plan.max_pointers - 1, 1)
        ptr_pos = model.obj_ptr_tpos_proj(sine_encoding_1d(scaled, channels))  # (P, mem_dim)
        ptr_pos = ptr_pos.unsqueeze(1).expand(-1, batch, mem_dim)
        split = channels // mem_dim
        if split > 1:  # a C-channel pointer becomes C / mem_dim tokens
            ptrs = ptrs.reshape(-1, batch, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            ptr_pos = ptr_pos.repeat_interleave(split, dim=0)
        tokens.append(ptrs)
        encodings.append(ptr_pos)
        num_ptr_tokens = int(ptrs.shape[0])
    if not tokens:
        raise RuntimeError("an empty memory: the plan names no frame")
    return torch.cat(tokens), torch.cat(encodings), num_ptr_tokens


def memory_keys(
    model: Sam2,
    plan: MemoryPlan,
    cond: Sequence[Mapping[int, FrameMemory]],
    non_cond: Sequence[Mapping[int, FrameMemory]],
    maskmem_pos: torch.Tensor,
) -> list[torch.Tensor]:
    """The memory attention's cross-attention keys of the spatial memories of ``plan``, per layer.

    Equal (up to rounding) to the keys the layers compute from :func:`assemble_memory`'s tokens: each
    frame's memory with its spatial encoding is projected and rotated once, kept in its
    :attr:`FrameMemory.keys`, and the slot's temporal encoding is added as its own projected, rotated
    part (the projection and the rotation are linear).

    Parameters
    ----------
    model, plan, cond, non_cond, maskmem_pos
        As for :func:`assemble_memory`.

    Returns
    -------
    list of torch.Tensor
        One per layer, ``(B, heads, R, head_dim)`` float32, ``R`` the spatial memory tokens, for
        :meth:`Sam2.condition_on_memory`'s ``rotated_memory_keys``.
    """
    layers = [cast(MemoryAttentionLayer, layer) for layer in model.memory_attention.layers]
    pos = maskmem_pos.flatten(2).transpose(1, 2).float()  # (1, hw, mem_dim)
    grid = int(pos.shape[1])
    batch = len(cond)
    entries_per_memory = []
    for _, frame, is_cond in plan.memories:
        entries = [(cond if is_cond else non_cond)[obj][frame] for obj in range(batch)]
        for entry in entries:
            if entry.keys is None:
                if entry.maskmem_features is None:
                    raise RuntimeError(f"the memory of frame {frame} was released but is still needed")
                tokens = entry.maskmem_features.float().flatten(2).transpose(1, 2)  # (1, hw, mem_dim)
                entry.keys = tuple(layer.memory_keys(tokens, pos, grid_tokens=grid) for layer in layers)
        entries_per_memory.append(entries)
    if not entries_per_memory:
        raise RuntimeError("no spatial memory: the plan names no frame")
    out = []
    for index, layer in enumerate(layers):
        first = cast(tuple[torch.Tensor, ...], entries_per_memory[0][0].keys)[index]
        _, heads, _, head_dim = first.shape
        keys = first.new_empty(batch, heads, grid * len(plan.memories), head_dim)
        for position, (slot, _, _) in enumerate(plan.memories):
            offset = layer.memory_key_offset(
                model.maskmem_tpos_enc[model.num_maskmem - slot - 1].reshape(-1), grid_tokens=grid
            )
            for obj, entry in enumerate(entries_per_memory[position]):
                stored = cast(tuple[torch.Tensor, ...], entry.keys)[index]
                target = keys[obj : obj + 1, :, position * grid : (position + 1) * grid]
                if offset is None:
                    target.copy_(stored)
                else:
                    torch.add(stored, offset, out=target)
        out.append(keys)
    return out


def sine_encoding_1d(positions: torch.Tensor, dim: int, *, temperature: float = 10000.0) -> torch.Tensor:
    """``(N,)`` positions → ``(N, dim)``: sines of ``positions / temperature ** (2⌊i/2⌋ / (dim/2))`` for
    ``i < dim/2``, then the cosines of the same angles (the object pointers' temporal encoding)."""
    half = dim // 2
    index = torch.arange(half, dtype=torch.float32, device=positions.device)
    wavelengths = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / half)
    angles = positions[:, None] / wavelengths
    return torch.cat([angles.sin(), angles.cos()], dim=-1)
