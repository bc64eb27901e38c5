"""Axial rotary position encoding (RoPE) and the attention layer of SAM 2's memory attention that uses it.

Each attention head's channels are read as ``head_dim / 2`` pairs ``(2i, 2i + 1)``; every pair is rotated
by an angle that grows linearly with the token's position on the feature grid. The first quarter of the
head's channels (``head_dim / 4`` pairs) turn with the token's column, the second quarter with its row,
each at the frequencies ``theta ** (-4j / head_dim)``, ``j = 0 … head_dim / 4 - 1``. Tokens are laid out
row-major (token ``t`` sits at column ``t % width``, row ``t // width``), as a flattened ``(H, W)`` map.

The rotation is one complex product per channel pair (the pairs read as complex numbers, times
``cos + i·sin`` of their angles), the arithmetic of the official implementation and a single pass over
the tokens.

Cross-attention to a memory whose values have fewer channels than the attention (SAM 2: 64-channel
memories, 256-channel attention, one head) applies the value projection after the softmax: its rows
sum to 1, so ``softmax(s) @ (m W_v^T + b_v) = (softmax(s) @ m) W_v^T + b_v``, the same up to rounding
with a quarter of the multiply-adds. The keys of such an attention can also be given already
projected and rotated (:meth:`RoPEAttention.rotated_keys`), so that a caller can keep those of a memory
frame for the frames that attend to it.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

#: With the value projection after the softmax, key counts are padded (masked keys) to a multiple of this,
#: which suits the blocking of the matrix products better than counts like 7 212.
_KEY_BLOCK = 64
#: ... and the queries go in chunks whose attention weights hold at most this many elements (16 MB: 512
#: queries over 7 memory frames of a 512² canvas; smaller chunks stay in cache, much smaller ones are slower).
_MAX_SCORES = 1 << 22


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
    return rotate_complex(x, torch.complex(cos.float(), sin.float()))


def rotate_complex(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    """:func:`rotate_pairs` with the rotations as complex numbers ``cis = cos + i·sin``, ``(N, d / 2)``
    complex64: ``x``'s pairs read as complex numbers and multiplied by them (one pass)."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())
    return torch.view_as_real(pairs * cis).flatten(-2).to(x.dtype)


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
        self._tables: dict[tuple[int, int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

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
        cos, sin, _ = self._table(num_tokens, device)
        return cos, sin

    def _cis(self, num_tokens: int, device: torch.device) -> torch.Tensor:
        """``cos + i·sin`` ``(num_tokens, head_dim / 2)`` complex64 of the query grid (cached)."""
        return self._table(num_tokens, device)[2]

    def _table(
        self, num_tokens: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        width, height = self._grid(num_tokens)
        key = (width, height, str(device))
        table = self._tables.get(key)
        if table is None:
            angles = axial_rope_angles(self.head_dim, width, height, theta=self.rope_theta).to(device)
            cos, sin = torch.cos(angles), torch.sin(angles)
            table = (cos, sin, torch.complex(cos, sin))
            self._tables[key] = table
        return table

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, N, heads · d)`` → ``(B, heads, N, d)``."""
        return x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    @property
    def values_after_softmax(self) -> bool:
        """Whether :meth:`forward` applies the value projection after the softmax: when that takes
        fewer multiply-adds (``num_heads · kv_in_dim < internal_dim``) and no dropout is active."""
        dropout = self.training and self.dropout_p > 0
        return not dropout and self.num_heads * self.kv_in_dim < self.internal_dim

    def rotated_keys(self, k: torch.Tensor, *, grid_tokens: int) -> torch.Tensor:
        """Project keys and rotate them, each whole grid of them like the queries.

        Parameters
        ----------
        k
            ``(B, r · grid_tokens, kv_in_dim)``: ``r`` frames of the query grid, one after the other.
        grid_tokens
            Tokens of the query grid.

        Returns
        -------
        torch.Tensor
            ``(B, num_heads, r · grid_tokens, head_dim)`` float32, as :meth:`forward` uses them.
        """
        num_keys = k.shape[-2]
        if num_keys % grid_tokens:
            raise ValueError(f"{num_keys} keys are not whole repeats of a {grid_tokens}-token grid")
        kh = self._split_heads(self.k_proj(k))
        frames = kh.unflatten(2, (num_keys // grid_tokens, grid_tokens))
        return rotate_complex(frames, self._cis(grid_tokens, k.device)).flatten(2, 3)

    def rotated_offset(self, offset: torch.Tensor, *, grid_tokens: int) -> torch.Tensor:
        """The part of :meth:`rotated_keys` that a ``(kv_in_dim,)`` vector added to every key token gives
        (its projection without the bias, rotated at each grid position): ``rotated_keys(k + offset)``
        equals ``rotated_keys(k) + rotated_offset(offset)`` up to rounding.

        Returns
        -------
        torch.Tensor
            ``(1, num_heads, grid_tokens, head_dim)`` float32.
        """
        projected = F.linear(offset.reshape(1, 1, self.kv_in_dim).float(), self.k_proj.weight)
        return rotate_complex(self._split_heads(projected), self._cis(grid_tokens, offset.device))

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        num_k_exclude_rope: int = 0,
        *,
        rotated_keys: torch.Tensor | None = None,
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
        rotated_keys
            ``(B, num_heads, r·Nq, head_dim)``: the rotated keys already projected and rotated
            (:meth:`rotated_keys`); ``k``'s first ``r·Nq`` tokens are then not used.

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
        batch = q.shape[0]
        if rotated_keys is None:
            rotated_keys = self.rotated_keys(k[:, :num_rotated], grid_tokens=num_queries)
        elif tuple(rotated_keys.shape) != (batch, self.num_heads, num_rotated, self.head_dim):
            raise ValueError(
                f"rotated_keys must be {(batch, self.num_heads, num_rotated, self.head_dim)}, "
                f"got {tuple(rotated_keys.shape)}"
            )
        qh = rotate_complex(self._split_heads(self.q_proj(q)), self._cis(num_queries, q.device))
        keys = [rotated_keys]
        if num_k_exclude_rope:
            keys.append(self._split_heads(self.k_proj(k[:, num_rotated:])))

        if not self.values_after_softmax:
            kh = torch.cat(keys, dim=2) if len(keys) > 1 else keys[0]
            vh = self._split_heads(self.v_proj(v))
            dropout_p = self.dropout_p if self.training else 0.0
            out = F.scaled_dot_product_attention(qh, kh, vh, dropout_p=dropout_p)
        else:
            out = self._attend_values_after(qh, keys, v)
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def _attend_values_after(
        self, qh: torch.Tensor, keys: list[torch.Tensor], v: torch.Tensor
    ) -> torch.Tensor:
        """Softmax attention of ``qh`` ``(B, heads, Nq, d)`` to the keys (concatenated along the tokens)
        with values ``v`` ``(B, Nk, kv_in_dim)`` projected after the softmax → ``(B, heads, Nq, d)``.

        The keys are padded with masked ones to a multiple of :data:`_KEY_BLOCK`, and the queries go in
        chunks whose weights hold at most :data:`_MAX_SCORES` elements.
        """
        batch, heads, _, head_dim = qh.shape
        num_keys = v.shape[-2]
        pad = -num_keys % _KEY_BLOCK
        values = v.float()
        if pad:
            keys = [*keys, qh.new_zeros(batch, heads, pad, head_dim)]
            values = torch.cat([values, values.new_zeros(batch, pad, self.kv_in_dim)], dim=1)
        kh_t = (torch.cat(keys, dim=2) if len(keys) > 1 else keys[0]).transpose(-1, -2)
        values = values.unsqueeze(1)  # (B, 1, Nk', kv_in_dim): shared by the heads
        rows = max(1, _MAX_SCORES // (batch * heads * (num_keys + pad)))
        mixed = []
        for chunk in (qh * head_dim**-0.5).split(rows, dim=2):
            scores = torch.matmul(chunk, kh_t)  # (B, heads, rows, Nk')
            if pad:
                scores[..., num_keys:] = float("-inf")
            mixed.append(torch.matmul(torch.softmax(scores, dim=-1, out=scores), values))
        attended = torch.cat(mixed, dim=2) if len(mixed) > 1 else mixed[0]  # (B, heads, Nq, kv_in_dim)
        weight = self.v_proj.weight.view(heads, head_dim, self.kv_in_dim)
        return torch.matmul(attended, weight.transpose(-1, -2)) + self.v_proj.bias.view(heads, 1, head_dim)
