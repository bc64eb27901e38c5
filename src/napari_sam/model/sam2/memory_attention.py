"""SAM 2's memory attention: the current frame's image tokens attend to the memory of earlier frames.

A stack of pre-norm transformer layers (self-attention, cross-attention to the memory, MLP), each attention
with axial rotary position encoding (:class:`~napari_sam.model.sam2.rope.RoPEAttention`). The memory is the
spatial memories of several frames (``mem_dim`` channels each, on the same grid as the image) followed by
object-pointer tokens, which carry no rotary encoding.

The cross-attention keys of the spatial memories can be given already projected and rotated
(:meth:`MemoryAttentionLayer.memory_keys`, one tensor per layer), so that a frame's keys, computed once,
serve every later frame that attends to it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .rope import RoPEAttention

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": F.relu, "gelu": F.gelu}


class MemoryAttentionLayer(nn.Module):
    """One layer: ``x += SelfAttn(LN(x))``, ``x += CrossAttn(LN(x), memory)``, ``x += MLP(LN(x))``.

    Parameters
    ----------
    activation
        MLP activation, ``"relu"`` or ``"gelu"``.
    cross_attention
        Attention of the image tokens (``d_model``) to the memory; by default the sam2.1 one
        (one head, ``kv_in_dim=64``, ``rope_k_repeat``, 64×64 grid).
    d_model
        Channels of the image tokens.
    dim_feedforward
        Hidden width of the MLP.
    dropout
        Dropout after each sub-layer and inside the MLP (training only).
    pos_enc_at_attn
        Add the query positional encoding to the self-attention's queries and keys.
    pos_enc_at_cross_attn_keys
        Add the memory positional encoding to the cross-attention's keys.
    pos_enc_at_cross_attn_queries
        Add the query positional encoding to the cross-attention's queries.
    self_attention
        Self-attention of the image tokens; by default the sam2.1 one (one head, 64×64 grid).
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        cross_attention: RoPEAttention | None = None,
        d_model: int = 256,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        pos_enc_at_attn: bool = False,
        pos_enc_at_cross_attn_keys: bool = True,
        pos_enc_at_cross_attn_queries: bool = False,
        self_attention: RoPEAttention | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if self_attention is None:
            self_attention = RoPEAttention(embedding_dim=d_model, num_heads=1, dropout=dropout)
        if cross_attention is None:
            cross_attention = RoPEAttention(
                embedding_dim=d_model, num_heads=1, dropout=dropout, kv_in_dim=64, rope_k_repeat=True
            )
        for name, attention in (("self_attention", self_attention), ("cross_attention", cross_attention)):
            if attention.embedding_dim != d_model:
                raise ValueError(f"{name} works on {attention.embedding_dim} channels, d_model is {d_model}")
        self.d_model = d_model
        self.dim_feedforward = dim_feedforward
        self.dropout_value = dropout
        self.self_attn = self_attention
        self.cross_attn_image = cross_attention
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation_str = activation
        self.activation = _ACTIVATIONS[activation]
        self.pos_enc_at_attn = pos_enc_at_attn
        self.pos_enc_at_cross_attn_queries = pos_enc_at_cross_attn_queries
        self.pos_enc_at_cross_attn_keys = pos_enc_at_cross_attn_keys

    @staticmethod
    def _with_pos(x: torch.Tensor, pos: torch.Tensor | None, use: bool) -> torch.Tensor:
        return x + pos if use and pos is not None else x

    def memory_keys(
        self, memory: torch.Tensor, pos: torch.Tensor | None, *, grid_tokens: int
    ) -> torch.Tensor:
        """The cross-attention's projected, rotated keys of spatial memories (for ``rotated_keys``).

        Parameters
        ----------
        memory
            ``(B, r · grid_tokens, kv_in_dim)`` the spatial memories of ``r`` frames (no pointers).
        pos
            Their positional encoding (same shape), or None; added when the layer adds it to the keys.
        grid_tokens
            Tokens of the query grid (one frame's memory).

        Returns
        -------
        torch.Tensor
            ``(B, heads, r · grid_tokens, head_dim)`` float32.
        """
        keys = self._with_pos(memory, pos, self.pos_enc_at_cross_attn_keys)
        return self.cross_attn_image.rotated_keys(keys, grid_tokens=grid_tokens)

    def memory_key_offset(self, offset: torch.Tensor, *, grid_tokens: int) -> torch.Tensor | None:
        """What a ``(kv_in_dim,)`` encoding added to every position of a memory frame adds to its
        :meth:`memory_keys` (``(1, heads, grid_tokens, head_dim)``), or None where the layer adds no
        positional encoding to the keys."""
        if not self.pos_enc_at_cross_attn_keys:
            return None
        return self.cross_attn_image.rotated_offset(offset, grid_tokens=grid_tokens)

    def forward(
        self,
        tgt: torch.Tensor,
        memory: torch.Tensor,
        pos: torch.Tensor | None = None,
        query_pos: torch.Tensor | None = None,
        num_k_exclude_rope: int = 0,
        *,
        rotated_keys: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Update the image tokens.

        Parameters
        ----------
        tgt
            ``(B, HW, d_model)`` image tokens.
        memory
            ``(B, M, kv_in_dim)`` memory tokens: spatial memories, then ``num_k_exclude_rope`` object
            pointers.
        pos
            ``(B, M, kv_in_dim)`` positional encoding of the memory, or None.
        query_pos
            ``(B, HW, d_model)`` positional encoding of the image tokens, or None.
        num_k_exclude_rope
            Trailing memory tokens without rotary encoding.
        rotated_keys
            ``(B, heads, M - num_k_exclude_rope, head_dim)`` the cross-attention keys of the spatial
            memories, already projected and rotated (:meth:`memory_keys`); computed from ``memory``
            and ``pos`` when None.

        Returns
        -------
        torch.Tensor
            ``(B, HW, d_model)``.
        """
        normed = self.norm1(tgt)
        q = self._with_pos(normed, query_pos, self.pos_enc_at_attn)
        tgt = tgt + self.dropout1(self.self_attn(q, q, normed))

        normed = self.norm2(tgt)
        attended = self.cross_attn_image(
            self._with_pos(normed, query_pos, self.pos_enc_at_cross_attn_queries),
            self._with_pos(memory, pos, self.pos_enc_at_cross_attn_keys),
            memory,
            num_k_exclude_rope=num_k_exclude_rope,
            rotated_keys=rotated_keys,
        )
        tgt = tgt + self.dropout2(attended)

        normed = self.norm3(tgt)
        hidden = self.linear2(self.dropout(self.activation(self.linear1(normed))))
        return tgt + self.dropout3(hidden)


class MemoryAttention(nn.Module):
    """``num_layers`` copies of a :class:`MemoryAttentionLayer` and a final layer norm.

    Parameters
    ----------
    d_model
        Channels of the image tokens.
    pos_enc_at_input
        Add ``0.1 ×`` the positional encoding to the image tokens before the first layer.
    layer
        The layer to copy (each copy has its own weights); by default the sam2.1 layer.
    num_layers
        Number of layers.
    batch_first
        The layers work batch-first (the only layout the official models use; inputs and output of
        :meth:`forward` are sequence-first either way).
    """

    def __init__(
        self,
        *,
        d_model: int = 256,
        pos_enc_at_input: bool = True,
        layer: MemoryAttentionLayer | None = None,
        num_layers: int = 4,
        batch_first: bool = True,
    ) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("only batch_first=True (the layout of the official models) is supported")
        if layer is None:
            layer = MemoryAttentionLayer(d_model=d_model)
        if layer.d_model != d_model:
            raise ValueError(f"layer works on {layer.d_model} channels, d_model is {d_model}")
        self.d_model = d_model
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.num_layers = num_layers
        self.norm = nn.LayerNorm(d_model)
        self.pos_enc_at_input = pos_enc_at_input
        self.batch_first = batch_first

    def forward(
        self,
        curr: torch.Tensor | list[torch.Tensor],
        memory: torch.Tensor,
        curr_pos: torch.Tensor | list[torch.Tensor] | None = None,
        memory_pos: torch.Tensor | None = None,
        num_obj_ptr_tokens: int = 0,
        *,
        rotated_memory_keys: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Condition the current frame's image tokens on the memory.

        Parameters
        ----------
        curr
            ``(HW, B, d_model)`` image tokens, sequence-first (or a list holding that one tensor).
        memory
            ``(M, B, mem_dim)`` memory tokens, sequence-first: the spatial memories of the frames
            (``HW`` tokens each), then ``num_obj_ptr_tokens`` object-pointer tokens.
        curr_pos
            ``(HW, B, d_model)`` positional encoding of ``curr`` (or a one-tensor list), or None.
        memory_pos
            ``(M, B, mem_dim)`` positional encoding of the memory, or None.
        num_obj_ptr_tokens
            Trailing memory tokens that get no rotary encoding.
        rotated_memory_keys
            One per layer: ``(B, heads, M - num_obj_ptr_tokens, head_dim)`` the cross-attention keys
            of the spatial memories, projected and rotated (:meth:`MemoryAttentionLayer.memory_keys`);
            computed from ``memory`` and ``memory_pos`` when None.

        Returns
        -------
        torch.Tensor
            ``(HW, B, d_model)`` conditioned image tokens, sequence-first.
        """
        if isinstance(curr, list):
            if len(curr) != 1:
                raise ValueError(f"curr: expected one tensor, got a list of {len(curr)}")
            curr = curr[0]
        if isinstance(curr_pos, list):
            if len(curr_pos) != 1:
                raise ValueError(f"curr_pos: expected one tensor, got a list of {len(curr_pos)}")
            curr_pos = curr_pos[0]
        if rotated_memory_keys is not None and len(rotated_memory_keys) != self.num_layers:
            raise ValueError(
                f"rotated_memory_keys: expected one tensor per layer ({self.num_layers}), "
                f"got {len(rotated_memory_keys)}"
            )
        if curr.shape[1] != memory.shape[1]:
            raise ValueError(
                f"curr (HW, B, C) and memory (M, B, C') have different batch sizes: "
                f"{curr.shape[1]} and {memory.shape[1]}"
            )
        output = curr
        if self.pos_enc_at_input and curr_pos is not None:
            output = output + 0.1 * curr_pos

        output = output.transpose(0, 1)
        query_pos = None if curr_pos is None else curr_pos.transpose(0, 1)
        memory = memory.transpose(0, 1)
        pos = None if memory_pos is None else memory_pos.transpose(0, 1)
        for index, layer in enumerate(self.layers):
            output = cast(MemoryAttentionLayer, layer)(
                output,
                memory,
                pos=pos,
                query_pos=query_pos,
                num_k_exclude_rope=num_obj_ptr_tokens,
                rotated_keys=None if rotated_memory_keys is None else rotated_memory_keys[index],
            )
        return self.norm(output).transpose(0, 1)
