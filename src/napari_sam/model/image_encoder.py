"""ViT image encoder of Segment Anything (windowed + global attention, decomposed relative positions).

Tensor names and shapes follow the official checkpoints so that ``sam_vit_{b,l,h}_*.pth`` load unchanged.
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention`, with the decomposed
relative-position term passed as an additive attention bias: the same mathematics as the official code.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .common import LayerNorm2d, MLPBlock


def resized_relative_table(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Return ``rel_pos`` ``(L, C)`` linearly resampled to ``(length, C)`` (unchanged if ``L == length``)."""
    if rel_pos.shape[0] == length:
        return rel_pos
    resized = F.interpolate(rel_pos.T[None], size=length, mode="linear")
    return resized[0].T


def relative_position_table(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Gather the relative-position embeddings for every (query, key) pair along one axis.

    Parameters
    ----------
    q_size, k_size
        Number of query and key positions along the axis.
    rel_pos
        ``(L, C)`` learned table, ``L = 2 * max(q_size, k_size) - 1`` after resampling.

    Returns
    -------
    torch.Tensor
        ``(q_size, k_size, C)``.
    """
    table = resized_relative_table(rel_pos, 2 * max(q_size, k_size) - 1)
    q_scale = max(k_size / q_size, 1.0)
    k_scale = max(q_size / k_size, 1.0)
    q_pos = torch.arange(q_size, device=rel_pos.device)[:, None] * q_scale
    k_pos = torch.arange(k_size, device=rel_pos.device)[None, :] * k_scale
    index = (q_pos - k_pos) + (k_size - 1) * k_scale
    return table[index.long()]


def relative_position_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """Additive attention bias of the decomposed relative positions.

    Parameters
    ----------
    q
        Unscaled queries ``(B, heads, H*W, C)``.
    rel_pos_h, rel_pos_w
        Learned tables ``(2H-1, C)`` and ``(2W-1, C)``.
    grid
        ``(H, W)`` of the token grid (rows, columns).

    Returns
    -------
    torch.Tensor
        ``(B, heads, H*W, H*W)`` bias, to be added to the scaled ``q @ k.T`` logits.
    """
    h, w = grid
    b, heads, _, c = q.shape
    table_h = relative_position_table(h, h, rel_pos_h)  # (H, H, C)
    table_w = relative_position_table(w, w, rel_pos_w)  # (W, W, C)
    q_grid = q.reshape(b, heads, h, w, c)
    bias_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, table_h)
    bias_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, table_w)
    bias = bias_h[..., :, None] + bias_w[..., None, :]  # (B, heads, H, W, H, W)
    return bias.reshape(b, heads, h * w, h * w)


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Split ``(B, H, W, C)`` into ``(B * nW, window, window, C)`` windows, zero-padding H and W.

    Returns the windows and the padded ``(Hp, Wp)``.
    """
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`: ``(B * nW, window, window, C)`` → ``(B, H, W, C)``."""
    hp, wp = padded
    h, w = size
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :].contiguous()
    return x


class Attention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, C)`` token grid, optionally with relative positions."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is required when use_rel_pos=True")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        n = h * w
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, N, head_dim)
        bias = None
        if self.use_rel_pos:
            bias = relative_position_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, h, w, c)
        return self.proj(out)


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size > 0`` restricts attention to local windows."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 0,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        attn_size = (window_size, window_size) if window_size > 0 else input_size
        self.attn = Attention(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=attn_size,
        )
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:
            size = (x.shape[1], x.shape[2])
            x, padded = window_partition(x, self.window_size)
            x = self.attn(x)
            x = window_unpartition(x, self.window_size, padded, size)
        else:
            x = self.attn(x)
        x = shortcut + x
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Non-overlapping patch projection: ``(B, C, H, W)`` → ``(B, H/p, W/p, D)``."""

    def __init__(self, *, patch_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def sam_neck(in_chans: int, out_chans: int) -> nn.Sequential:
    """SAM's neck: ``(B, in_chans, h, w)`` → ``(B, out_chans, h, w)`` (1×1 conv, LayerNorm2d, 3×3 conv,
    LayerNorm2d; keys ``0.weight``, ``1.weight``, ``1.bias``, ``2.weight``, ``3.weight``, ``3.bias``)."""
    return nn.Sequential(
        nn.Conv2d(in_chans, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )


def check_encoder_input(x: torch.Tensor, in_chans: int, img_size: int) -> None:
    """Raise ValueError unless ``x`` is a ``(B, in_chans, img_size, img_size)`` batch."""
    expected = (in_chans, img_size, img_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != expected:
        raise ValueError(
            f"image encoder input must have shape (B, {expected[0]}, {expected[1]}, "
            f"{expected[2]}), got {tuple(x.shape)}"
        )


class ImageEncoderViT(nn.Module):
    """SAM's ViT image encoder.

    Input ``(B, 3, S, S)`` float32 images already normalised and padded (``S = img_size``); output
    ``(B, out_chans, S/p, S/p)`` embeddings (``(B, 256, 64, 64)`` for the official models).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size ({img_size}) must be a multiple of patch_size ({patch_size})")
        self.img_size = img_size
        self.patch_size = patch_size
        self.in_chans = in_chans
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed: nn.Parameter | None = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        global_blocks = set(global_attn_indexes)
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_blocks else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = sam_neck(embed_dim, out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_encoder_input(x, self.in_chans, self.img_size)
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.neck(x.permute(0, 3, 1, 2))
