"""Hiera: the hierarchical vision transformer trunk of SAM 2's image encoder.

A strided convolution cuts the image into a token grid (stride 4); four stages of transformer blocks follow.
The first block of each new stage halves the grid by max-pooling its queries ("q pooling") and widens the
channels and heads. Blocks attend inside square windows except a few global ones. Positions enter once, after
the patch embedding, as a learned background embedding resized to the grid plus a learned per-window one
tiled over it (the "windowed absolute" embedding of Bolya et al. 2023).

Attribute and parameter names follow the official SAM 2 / 2.1 checkpoints (``image_encoder.trunk.*``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..image_encoder import window_partition, window_unpartition


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: while training, zero a residual branch for a random ``rate`` of the samples
    (and rescale the others by ``1 / (1 - rate)``); the identity otherwise. ``x``: ``(B, ...)``."""
    if rate <= 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


def _pool_grid(x: torch.Tensor, stride: int | None) -> torch.Tensor:
    """Max-pool a ``(B, H, W, C)`` grid by ``stride`` (floor) → ``(B, H // s, W // s, C)``; ``None``: as
    is."""
    if stride is None:
        return x
    pooled = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return pooled.permute(0, 2, 3, 1)


class HieraPatchEmbed(nn.Module):
    """Overlapping patch projection (7×7 convolution, stride 4, padding 3): ``(B, 3, H, W)`` →
    ``(B, ⌊(H - 1) / 4⌋ + 1, ⌊(W - 1) / 4⌋ + 1, embed_dim)``."""

    def __init__(
        self,
        *,
        embed_dim: int,
        in_chans: int = 3,
        kernel_size: int = 7,
        stride: int = 4,
        padding: int = 3,
    ) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=kernel_size, stride=stride, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class HieraMLP(nn.Module):
    """``dim → hidden → dim_out`` with GELU between; the linear layers are ``layers.0`` and ``layers.1``
    as in the official checkpoints."""

    def __init__(self, *, dim: int, hidden_dim: int, dim_out: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(dim, hidden_dim), nn.Linear(hidden_dim, dim_out)])
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers[1](self.act(self.layers[0](x)))


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention over a ``(B, H, W, dim)`` grid whose queries may be max-pooled.

    With ``q_stride = s`` the output grid is ``(B, H // s, W // s, dim_out)``: every pooled query attends
    to all ``H * W`` keys. Without it the output is ``(B, H, W, dim_out)``. The heads split ``dim_out``.
    """

    def __init__(self, *, dim: int, dim_out: int, num_heads: int, q_stride: int | None = None) -> None:
        super().__init__()
        if dim_out % num_heads:
            raise ValueError(f"dim_out ({dim_out}) must be divisible by num_heads ({num_heads})")
        self.dim = dim
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        head_dim = self.dim_out // self.num_heads
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, head_dim)
        q, k, v = qkv.unbind(2)  # each (B, H*W, heads, head_dim)
        if self.q_stride is not None:
            q = _pool_grid(q.reshape(b, h, w, self.dim_out), self.q_stride)
            h, w = q.shape[1], q.shape[2]
            q = q.reshape(b, h * w, self.num_heads, head_dim)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(b, h, w, self.dim_out)  # (B, H', W', dim_out)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm Hiera block: (windowed) attention with optional query pooling, then a GELU MLP.

    ``(B, H, W, dim)`` → ``(B, H', W', dim_out)`` with ``H' = H // q_stride`` (``H`` without pooling).
    When ``dim != dim_out`` the residual path is a linear projection of the normalised input (pooled
    like the queries). ``window_size > 0`` restricts attention to ``window_size`` squares (the grid is
    zero-padded to a multiple); with pooling the output windows are ``window_size // q_stride`` wide.
    """

    def __init__(
        self,
        *,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        q_stride: int | None = None,
        window_size: int = 0,
    ) -> None:
        super().__init__()
        if q_stride is not None and q_stride < 1:
            raise ValueError(f"q_stride must be >= 1, got {q_stride}")
        if q_stride is not None and window_size > 0 and window_size % q_stride:
            raise ValueError(
                f"a query-pooling block needs a window size divisible by its stride, got window_size="
                f"{window_size} and q_stride={q_stride}"
            )
        self.dim = dim
        self.dim_out = dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim=dim, dim_out=dim_out, num_heads=num_heads, q_stride=q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = HieraMLP(dim=dim_out, hidden_dim=int(dim_out * mlp_ratio), dim_out=dim_out)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm1(x)
        shortcut = _pool_grid(self.proj(normed) if self.dim != self.dim_out else x, self.q_stride)
        window = self.window_size
        if window > 0:
            windows, (hp, wp) = window_partition(normed, window)
            out = self.attn(windows)  # (B * nW, window', window', dim_out)
            if self.q_stride is not None:
                window, hp, wp = window // self.q_stride, hp // self.q_stride, wp // self.q_stride
            out = window_unpartition(out, window, (hp, wp), (shortcut.shape[1], shortcut.shape[2]))
        else:
            out = self.attn(normed)
        x = shortcut + drop_path(out, self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class Hiera(nn.Module):
    """The Hiera trunk: ``(B, 3, H, W)`` image → one feature map per stage, fine to coarse.

    Stage ``i`` (0-based) outputs ``(B, embed_dim * dim_mul**i, H / 4 / 2**p, W / 4 / 2**p)`` where
    ``p = min(i, q_pool)``, e.g. 96/192/384/768 channels at 256/128/64/32 for SAM 2.1 tiny at 1024².

    Parameters
    ----------
    embed_dim, num_heads
        Channels and attention heads of the first stage.
    drop_path_rate
        Stochastic depth of the last block (linearly from 0 at the first); only used while training.
    q_pool
        How many stage transitions pool the grid by ``q_stride`` (the first ``q_pool`` of them).
    q_stride
        Pooling stride ``(sy, sx)``; square strides only.
    stages
        Blocks per stage.
    dim_mul, head_mul
        Factors applied to the channels and heads at every stage transition.
    window_pos_embed_bkg_spatial_size
        ``(h, w)`` of the learned background position embedding (bicubically resized to the grid).
    window_spec
        Attention window per stage. The first block of a stage still uses the previous stage's window
        (it pools that window's queries). ``window_spec[0]`` is also the tile of the window position
        embedding, so the token grid must be a multiple of it.
    global_att_blocks
        Indexes (over all blocks) of the blocks that attend globally.
    return_interm_layers
        Return every stage's output (``True``) or only the last.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 96,
        num_heads: int = 1,
        drop_path_rate: float = 0.0,
        q_pool: int = 3,
        q_stride: Sequence[int] = (2, 2),
        stages: Sequence[int] = (2, 3, 16, 3),
        dim_mul: float = 2.0,
        head_mul: float = 2.0,
        window_pos_embed_bkg_spatial_size: Sequence[int] = (14, 14),
        window_spec: Sequence[int] = (8, 4, 14, 7),
        global_att_blocks: Sequence[int] = (12, 16, 20),
        return_interm_layers: bool = True,
    ) -> None:
        super().__init__()
        stages = [int(s) for s in stages]
        window_spec = [int(w) for w in window_spec]
        if len(stages) != len(window_spec):
            raise ValueError(f"stages {stages} and window_spec {window_spec} must have the same length")
        if not stages or min(stages) < 1:
            raise ValueError(f"every stage needs at least one block, got stages={stages}")
        if min(window_spec) < 1:
            raise ValueError(f"window sizes must be >= 1, got window_spec={window_spec}")
        if not 0 <= q_pool <= len(stages) - 1:
            raise ValueError(
                f"q_pool must be in [0, {len(stages) - 1}] for {len(stages)} stages, got {q_pool}"
            )
        q_stride = tuple(int(s) for s in q_stride)
        if len(q_stride) != 2 or q_stride[0] != q_stride[1]:
            raise ValueError(f"q_stride must be a square stride (s, s), got {q_stride}")
        bkg_size = tuple(int(s) for s in window_pos_embed_bkg_spatial_size)
        if len(bkg_size) != 2:
            raise ValueError(f"window_pos_embed_bkg_spatial_size must be (h, w), got {bkg_size}")
        depth = sum(stages)
        global_blocks = sorted({int(i) for i in global_att_blocks})
        if global_blocks and not 0 <= global_blocks[0] <= global_blocks[-1] < depth:
            raise ValueError(f"global_att_blocks {global_blocks} must index the {depth} blocks")

        self.window_spec = window_spec
        self.q_stride = q_stride
        self.global_att_blocks = global_blocks
        self.window_pos_embed_bkg_spatial_size = bkg_size
        self.return_interm_layers = return_interm_layers
        #: index of each stage's last block
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        #: blocks that pool their queries: the first block of stages 2 .. q_pool + 1
        self.q_pool_blocks = [end + 1 for end in self.stage_ends[:-1]][:q_pool]

        self.patch_embed = HieraPatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *bkg_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, embed_dim, window_spec[0], window_spec[0]))

        # stochastic depth grows linearly over the blocks (plain floats: buildable on the meta device)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.ModuleList()
        dim, heads, stage = embed_dim, num_heads, 0
        for i in range(depth):
            # the first block of a stage keeps the previous stage's window (and pools it)
            window = 0 if i in global_blocks else window_spec[stage]
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = int(dim * dim_mul), int(heads * head_mul), stage + 1
            self.blocks.append(
                MultiScaleBlock(
                    dim=dim,
                    dim_out=dim_out,
                    num_heads=heads,
                    drop_path=rates[i],
                    q_stride=q_stride[0] if i in self.q_pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out
        ends = self.stage_ends[::-1] if return_interm_layers else self.stage_ends[-1:]
        #: output channels, coarse to fine (the order the FPN neck lists them)
        self.channel_list = [self.blocks[i].dim_out for i in ends]

    def _position_embedding(self, height: int, width: int) -> torch.Tensor:
        """``(1, height, width, embed_dim)``: background embedding resized to the grid, plus the window
        embedding tiled over it."""
        tile = self.window_spec[0]
        if height % tile or width % tile:
            raise ValueError(
                f"the token grid ({height}, {width}) must be a multiple of window_spec[0]={tile}: use an "
                f"image side that is a multiple of {4 * tile} (the patch stride 4 times the window)"
            )
        background = F.interpolate(self.pos_embed, size=(height, width), mode="bicubic", align_corners=False)
        windows = self.pos_embed_window.tile(1, 1, height // tile, width // tile)
        return (background + windows).permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` → list of ``(B, C_i, H_i, W_i)``, one per stage, fine to coarse (only the last
        stage's when ``return_interm_layers`` is off)."""
        if x.ndim != 4 or x.shape[1] != self.patch_embed.proj.in_channels:
            raise ValueError(
                f"expected a (B, {self.patch_embed.proj.in_channels}, H, W) image batch, got {tuple(x.shape)}"
            )
        x = self.patch_embed(x)  # (B, H/4, W/4, C)
        x = x + self._position_embedding(x.shape[1], x.shape[2])
        outputs = []
        last = self.stage_ends[-1]
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i == last or (self.return_interm_layers and i in self.stage_ends):
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
