"""Two-way transformer of SAM's mask decoder: prompt tokens and image tokens attend to each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .common import MLPBlock


def _batched_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(Ba, n, k) @ (Bb, k, m)`` with ``Ba`` or ``Bb`` equal to 1 broadcast without copying.

    ``torch.matmul`` materialises the broadcast operand once per batch item; a shared operand is
    instead multiplied as one large matrix.
    """
    if a.shape[0] == b.shape[0]:
        return torch.bmm(a, b) if a.shape[0] > 1 else (a[0] @ b[0]).unsqueeze(0)
    if b.shape[0] == 1:  # (Ba·n, k) @ (k, m)
        return (a.reshape(-1, a.shape[-1]) @ b[0]).view(a.shape[0], a.shape[1], b.shape[-1])
    # a shared: (n, k) @ (k, Bb·m) → (n, Bb, m) → (Bb, n, m)
    flat = b.transpose(0, 1).reshape(b.shape[1], -1)
    return (a[0] @ flat).view(a.shape[1], b.shape[0], b.shape[2]).transpose(0, 1)


@dataclass(frozen=True)
class ImageTokens:
    """The image side of the two-way transformer, prepared once and shared by every prompt.

    Attributes
    ----------
    keys
        ``(1, H*W, D)`` image tokens (image embedding plus the dense prompt embedding).
    key_pe
        ``(1, H*W, D)`` their positional encoding.
    grid
        ``(H, W)``.
    first_layer
        Projections of the first block that depend on the image alone, each ``(heads, H*W, d)``:
        token→image keys and values and image→token queries; ``None`` when not prepared.
    """

    keys: torch.Tensor
    key_pe: torch.Tensor
    grid: tuple[int, int]
    first_layer: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


class Attention(nn.Module):
    """Multi-head attention with optional down-projection of the internal dimension.

    ``q``: ``(B, Nq, D)``, ``k`` and ``v``: ``(B or 1, Nk, D)`` → ``(B, Nq, D)``.

    Cross-attention between a handful of prompt tokens and thousands of image tokens is computed in
    an equivalent, cheaper order: the projections of the small side are folded into its operands, so
    that the image tokens are never projected (``Nq·H·Nk·D`` instead of ``Nk·D·D/r`` multiply-adds).
    The result is the same mathematics as the official layer; :meth:`forward` picks the cheapest order.
    """

    def __init__(self, *, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(
                f"internal dim {self.internal_dim} (embedding_dim / downsample_rate) must be "
                f"divisible by num_heads ({num_heads})"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def project_heads(self, x: torch.Tensor, projection: nn.Linear) -> torch.Tensor:
        """``(1, N, D)`` tokens through ``projection`` (one of this layer's) → ``(heads, N, d)``."""
        n = x.shape[1]
        return projection(x[0]).view(n, self.num_heads, -1).transpose(0, 1).contiguous()

    def attend_projected_keys(self, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
        """Attention of ``q`` ``(B, Nq, D)`` to keys and values already projected by this layer
        (:meth:`project_heads`, ``(heads, Nk, d)``, shared by the batch) → ``(B, Nq, D)``."""
        h, d = self.num_heads, self.internal_dim // self.num_heads
        b, nq = q.shape[:2]
        qh = self.q_proj(q).view(b, nq, h, d).permute(2, 0, 1, 3).reshape(h, b * nq, d)
        attn = torch.softmax(torch.bmm(qh, kh.transpose(1, 2)) * d**-0.5, dim=-1)  # (H, B·Nq, Nk)
        out = torch.bmm(attn, vh).view(h, b, nq, d).permute(1, 2, 0, 3).reshape(b, nq, self.internal_dim)
        return self.out_proj(out)

    def attend_projected_queries(
        self, qh: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor
    ) -> torch.Tensor:
        """Attention of queries already projected by this layer (``(heads, Nq, d)``, shared by the
        batch) to ``k``, ``v`` ``(B, Nk, D)`` → ``(B, Nq, D)``, plus ``residual`` (``(1 or B, Nq, D)``).

        Meant for few keys: ``out_proj`` is folded into the values, as in the small-key order.
        """
        h, d, dim = self.num_heads, self.internal_dim // self.num_heads, self.embedding_dim
        b, nk, nq = k.shape[0], k.shape[1], qh.shape[1]
        kh = self.k_proj(k).view(b, nk, h, d).permute(2, 0, 1, 3).reshape(h, b * nk, d)
        # scores laid out (H, B, nk, Nq): the softmax over nk runs along contiguous queries
        scores = torch.bmm(kh, qh.transpose(1, 2)).view(h, b, nk, nq)
        attn = torch.softmax(scores * d**-0.5, dim=2).transpose(0, 1).reshape(b, h * nk, nq)
        vh = self._split_heads(self.v_proj(v))  # (B, H, nk, d)
        w_o = self.out_proj.weight.view(dim, h, d).permute(1, 2, 0)  # (H, d, D)
        values = (vh @ w_o).reshape(b, h * nk, dim) + self.out_proj.bias / h  # (B, H·nk, D)
        return torch.baddbmm(residual.expand(b, nq, dim), attn.transpose(1, 2), values)

    def _costs(self, nq: int, nk: int) -> tuple[int, int, int]:
        """Multiply-adds of the (standard, small-query, small-key) orders."""
        d, di, h = self.embedding_dim, self.internal_dim, self.num_heads
        standard = 2 * d * di * (nq + nk) + 2 * nq * nk * di
        small_query = 4 * d * di * nq + 2 * h * nq * nk * d
        small_key = 4 * d * di * nk + 2 * h * nq * nk * d
        return standard, small_query, small_key

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Attention output ``(B, Nq, D)``, plus ``residual`` (same shape, or broadcastable) if given."""
        standard, small_query, small_key = self._costs(q.shape[1], k.shape[1])
        best = min(standard, small_query, small_key)
        if best == small_key:
            return self._attend_small_keys(q, k, v, residual)
        out = self._attend_standard(q, k, v) if best == standard else self._attend_small_queries(q, k, v)
        return out if residual is None else residual + out

    def _attend_standard(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b = max(q.shape[0], k.shape[0])
        qh = self._split_heads(self.q_proj(q)).expand(b, -1, -1, -1)
        kh = self._split_heads(self.k_proj(k)).expand(b, -1, -1, -1)
        vh = self._split_heads(self.v_proj(v)).expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(qh, kh, vh)
        n = out.shape[2]
        return self.out_proj(out.transpose(1, 2).reshape(b, n, self.internal_dim))

    def _attend_small_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Few queries, many keys: fold ``k_proj`` into the queries and ``v_proj`` after the average."""
        h, d = self.num_heads, self.internal_dim // self.num_heads
        b, nq = max(q.shape[0], k.shape[0]), q.shape[1]
        dim, nk = self.embedding_dim, k.shape[1]
        qh = self._split_heads(self.q_proj(q))  # (B, H, nq, d)
        w_k = self.k_proj.weight.view(h, d, dim)
        # q·(W k + c) = (q W)·k + q·c; the second term is constant along the keys: softmax drops it
        folded = (qh @ w_k).expand(b, -1, -1, -1)  # (B, H, nq, D)
        scores = _batched_matmul(folded.reshape(b, h * nq, dim), k.transpose(-1, -2))
        attn = torch.softmax(scores.view(b, h, nq, nk) * d**-0.5, dim=-1)
        context = _batched_matmul(attn.reshape(b, h * nq, nk), v).view(b, h, nq, dim)
        # rows of attn sum to 1, so the value projection can follow the average
        w_v = self.v_proj.weight.view(h, d, dim)
        out = context @ w_v.transpose(-1, -2) + self.v_proj.bias.view(h, 1, d)  # (B, H, nq, d)
        return self.out_proj(out.transpose(1, 2).reshape(b, nq, self.internal_dim))

    def _attend_small_keys(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Many queries, few keys: fold ``q_proj`` into the keys and ``out_proj`` into the values."""
        h, d, dim = self.num_heads, self.internal_dim // self.num_heads, self.embedding_dim
        b, nq, nk = max(q.shape[0], k.shape[0]), q.shape[1], k.shape[1]
        kh = self._split_heads(self.k_proj(k))  # (B, H, nk, d)
        vh = self._split_heads(self.v_proj(v))
        w_q = self.q_proj.weight.view(h, d, dim)
        keys = (kh @ w_q).reshape(-1, h * nk, dim)  # (B, H·nk, D): keys seen through q_proj
        key_bias = (kh @ self.q_proj.bias.view(h, d, 1)).reshape(-1, h * nk, 1)
        # scores laid out (B, H, nk, nq) so that the softmax over nk runs along contiguous queries
        scores = _batched_matmul(keys, q.transpose(-1, -2)) + key_bias  # (B, H·nk, nq)
        attn = torch.softmax((scores * d**-0.5).view(b, h, nk, nq), dim=2).view(b, h * nk, nq)
        w_o = self.out_proj.weight.view(dim, h, d).permute(1, 2, 0)  # (H, d, D)
        # each head's weights sum to 1, so adding bias / H to every value row adds the bias once
        values = (vh @ w_o).reshape(-1, h * nk, dim) + self.out_proj.bias / h  # (B, H·nk, D)
        if residual is None:
            return attn.transpose(1, 2) @ values
        residual = residual.expand(b, nq, dim)
        return torch.baddbmm(residual, attn.transpose(1, 2), values.expand(b, -1, -1))


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token→image cross-attention, token MLP, image→token cross-attention."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim=embedding_dim, num_heads=num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim=embedding_dim, mlp_dim=mlp_dim, act=activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def project_image(
        self, keys: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projections of ``keys`` ``(1, HW, D)`` this block would compute, ``(heads, HW, d)`` each:
        token→image keys and values, image→token queries. Valid while the image tokens are unchanged,
        i.e. for the first block."""
        k = keys + key_pe
        to_image, to_token = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        return (
            to_image.project_heads(k, to_image.k_proj),
            to_image.project_heads(keys, to_image.v_proj),
            to_token.project_heads(k, to_token.q_proj),
        )

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        projected_image: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``queries`` ``(B, Nt, D)`` tokens, ``keys`` ``(B, HW, D)`` image tokens, with their PEs.

        ``projected_image``: :meth:`project_image` of ``keys`` (then ``keys`` is ``(1, HW, D)``).
        """
        if self.skip_first_layer_pe:
            # The first layer replaces the tokens by their self-attention (no residual, no PE).
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        if projected_image is not None:
            key_k, key_v, image_q = projected_image
            queries = self.norm2(
                queries + self.cross_attn_token_to_image.attend_projected_keys(q, key_k, key_v)
            )
            queries = self.norm3(queries + self.mlp(queries))
            q = queries + query_pe
            to_token = self.cross_attn_image_to_token
            return queries, self.norm4(to_token.attend_projected_queries(image_q, q, queries, residual=keys))

        k = keys + key_pe  # the image tokens do not change until the end of the block: reused below
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(self.cross_attn_image_to_token(k, q, queries, residual=keys))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayAttentionBlock` plus a final token→image attention."""

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            downsample_rate=attention_downsample_rate,
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def prepare(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, *, project_first_layer: bool = True
    ) -> ImageTokens:
        """Flatten an image ``(1, D, H, W)`` and its PE ``(1, D, H, W)`` into :class:`ImageTokens`.

        With ``project_first_layer`` the first block's image-only projections are computed too: worth it
        when the image is decoded with several prompts or more than once.
        """
        if image_embedding.shape[0] != 1:
            raise ValueError(f"prepare takes one image (1, D, H, W), got {tuple(image_embedding.shape)}")
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        first = self._block(0).project_image(keys, key_pe) if project_first_layer and self.layers else None
        h, w = image_embedding.shape[-2:]
        return ImageTokens(keys, key_pe, (h, w), first)

    def _block(self, index: int) -> TwoWayAttentionBlock:
        """The attention block ``index`` of :attr:`layers`."""
        return cast(TwoWayAttentionBlock, self.layers[index])

    def forward(
        self,
        image_embedding: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor | None,
        point_embedding: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the transformer.

        Parameters
        ----------
        image_embedding, image_pe
            ``(B, D, H, W)``; or :class:`ImageTokens` from :meth:`prepare` (shared by the batch) and
            ``None``.
        point_embedding
            ``(B, Nt, D)`` prompt tokens.

        Returns
        -------
        queries
            ``(B, Nt, D)`` processed tokens.
        keys
            ``(B, H*W, D)`` processed image tokens.
        """
        first_layer = None
        if isinstance(image_embedding, ImageTokens):
            keys, key_pe, first_layer = (
                image_embedding.keys,
                image_embedding.key_pe,
                image_embedding.first_layer,
            )
        else:
            if image_pe is None:
                raise ValueError(
                    "image_pe: needed with a (B, D, H, W) image embedding (ImageTokens carry theirs)"
                )
            keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
            key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries = point_embedding
        for index, layer in enumerate(self.layers):
            projected = first_layer if index == 0 else None
            queries, keys = layer(queries, keys, point_embedding, key_pe, projected_image=projected)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
