"""Axial rotary position encoding (RoPE) and the attention layer of SAM 2's memory attention that uses it.

Each attention head's channels are read as ``head_dim / 2`` pairs ``(2i, 2i + 1)``; every pair is rotated
by an angle that grows linearly with the token's position on the feature grid. The first quarter of the
head's channels (``head_dim / 4`` pairs) turn with the token's column, the second quarter with its row,
each at the frequencies ``theta ** (-4j / head_dim)``, ``j = 0 … head_dim / 4 - 1``. Tokens are laid out
row-major (token ``t`` sits at column ``t % width``, row ``t // width``), as a flattened ``(H, W)`` map.

The rotation is done with real ``cos`` / ``sin`` tables, which is the same arithmetic as the complex
product of the official implementation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def axial_rope_angles(head_dim: int, width: int, height: int, *, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles of a ``height × width`` grid flattened row-major.

    Parameters
    ----------
    head_dim
        Channels per attention head; a multiple of 4.
    width, height
        Grid size (columns, rows).
    theta
        Base of the frequencies.

    Returns
    -------
    torch.Tensor
        ``(width * height, head_dim / 2)`` float32: for token ``t``, the angles of its channel pairs —
        ``head_dim / 4`` column angles, then ``head_dim / 4`` row angles.
    """
    if head_dim % 4:
        raise ValueError(f"axial RoPE needs a head dimension divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    exponents = torch.arange(0, head_dim, 4, dtype=torch.float32)[:quarter] / head_dim
    frequencies = 1.0 / (theta**exponents)  # (head_dim / 4,)
    token = torch.arange(width * height, dtype=torch.float32)
    column = token % width
    row = torch.div(token, width, rounding_mode="floor")
    return torch.cat([torch.outer(column, frequencies), torch.outer(row, frequencies)], dim=-1)


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the channel pairs ``(2i, 2i + 1)`` of ``x`` by the angles whose ``cos`` / ``sin`` are given.

    Parameters
    ----------
    x
        ``(..., N, d)`` tokens (``d`` even), any float dtype; rotated in float32.
    cos, sin
        ``(N, d / 2)``.

    Returns
    -------
    torch.Tensor
        ``(..., N, d)`` rotated tokens, ``x``'s dtype.
    """
    pairs = x.float().unflatten(-1, (-1, 2))
    first, second = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((first * cos - second * sin, first * sin + second * cos), dim=-1)
    return rotated.flatten(-2).to(x.dtype)


class RoPEAttention(nn.Module):
    """Multi-head attention whose queries and keys carry axial rotary position encoding.

    Queries are ``H × W`` image tokens (row-major). Keys are either the same grid (self-attention) or,
    with ``rope_k_repeat``, several frames of that grid one after the other (cross-attention to the
    memory of past frames), each frame rotated like the queries; ``num_k_exclude_rope`` trailing keys
    (object pointers) are not rotated.

    Parameters
    ----------
    embedding_dim
        Channels ``D`` of the queries and of the output.
    num_heads
        Attention heads; ``embedding_dim / downsample_rate / num_heads`` must be a multiple of 4.
    downsample_rate
        Internal width is ``embedding_dim / downsample_rate``.
    dropout
        Attention dropout probability, applied in training only.
    kv_in_dim
        Channels of keys and values (the memory); ``embedding_dim`` when ``None``.
    rope_theta
        Base of the rotary frequencies.
    rope_k_repeat
        Allow more rotated keys than queries, as whole repeats of the query grid.
    feat_sizes
        ``(W, H)`` of the grid the queries are expected on. Another token count is read as a square grid.
    """

    def __init__(
        self,
        *,
        embedding_dim: int = 256,
        num_heads: int = 1,
        downsample_rate: int = 1,
        dropout: float = 0.1,
        kv_in_dim: int | None = None,
        rope_theta: float = 10000.0,
        rope_k_repeat: bool = False,
        feat_sizes: tuple[int, int] = (64, 64),
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(
                f"internal dim {self.internal_dim} (embedding_dim / downsample_rate) must be "
                f"divisible by num_heads ({num_heads})"
            )
        self.head_dim = self.internal_dim // num_heads
        if self.head_dim % 4:
            raise ValueError(f"RoPE needs a head dimension divisible by 4, got {self.head_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)
        self.dropout_p = dropout
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self.feat_sizes = (int(feat_sizes[0]), int(feat_sizes[1]))
        self._tables: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def _grid(self, num_tokens: int) -> tuple[int, int]:
        """``(W, H)`` of a query grid of ``num_tokens`` tokens."""
        width, height = self.feat_sizes
        if width * height == num_tokens:
            return width, height
        side = math.isqrt(num_tokens)
        if side * side != num_tokens:
            raise ValueError(
                f"RoPE attention: {num_tokens} query tokens are neither the {width}×{height} grid of "
                "feat_sizes nor a square grid"
            )
        return side, side

    def rotation(self, num_tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``cos`` and ``sin`` tables ``(num_tokens, head_dim / 2)`` of the query grid (cached)."""
        width, height = self._grid(num_tokens)
        key = (width, height, str(device))
        table = self._tables.get(key)
        if table is None:
            angles = axial_rope_angles(self.head_dim, width, height, theta=self.rope_theta).to(device)
            table = (torch.cos(angles), torch.sin(angles))
            self._tables[key] = table
        return table

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, heads · d)`` → ``(B, heads, N, d)``."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        """Attend.

        Parameters
        ----------
        q
            ``(B, Nq, embedding_dim)`` queries on the grid (``Nq = H·W``).
        k, v
            ``(B, Nk, kv_in_dim)``: ``Nk = Nq``, or with ``rope_k_repeat`` ``r·Nq`` rotated keys
            (``r`` frames) followed by ``num_k_exclude_rope`` keys that are not rotated.
        num_k_exclude_rope
            Trailing keys left without rotary encoding (object pointer tokens).

        Returns
        -------
        torch.Tensor
            ``(B, Nq, embedding_dim)``.
        """
        num_queries, num_keys = q.shape[-2], k.shape[-2]
        if num_keys != num_queries and not self.rope_k_repeat:
            raise ValueError(
                f"RoPE attention: {num_keys} keys for {num_queries} queries needs rope_k_repeat=True"
            )
        num_rotated = num_keys - num_k_exclude_rope
        if num_k_exclude_rope < 0 or num_rotated < 0:
            raise ValueError(f"num_k_exclude_rope must be in [0, {num_keys}], got {num_k_exclude_rope}")
        if num_rotated % num_queries:
            raise ValueError(
                f"RoPE attention: the {num_rotated} rotated keys are not whole repeats of the "
                f"{num_queries}-token query grid"
            )
        qh = self._split_heads(self.q_proj(q))
        kh = self._split_heads(self.k_proj(k))
        vh = self._split_heads(self.v_proj(v))

        cos, sin = self.rotation(num_queries, q.device)
        qh = rotate_pairs(qh, cos, sin)
        if num_rotated:
            # (B, heads, r·Nq, d) → (B, heads, r, Nq, d): each frame of the memory rotated like the queries
            frames = kh[:, :, :num_rotated].unflatten(2, (num_rotated // num_queries, num_queries))
            rotated = rotate_pairs(frames, cos, sin).flatten(2, 3)
            kh = torch.cat([rotated, kh[:, :, num_rotated:]], dim=2)

        dropout_p = self.dropout_p if self.training else 0.0
        out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout_p)
        return self.out_proj(out.transpose(1, 2).flatten(2))
