"""TinyViT image encoder of MobileSAM (``vit_t``): a convolutional stage, then windowed attention.

The module and tensor names follow MobileSAM's published ``mobile_sam.pt`` and micro-sam's ``vit_t*``
files (``image_encoder.patch_embed.seq.0.c.weight``, ``image_encoder.layers.1.blocks.0.attn.qkv.weight``,
``image_encoder.neck.0.weight`` …), so those files load unchanged and strictly.

How the image flows (``vit_t`` at a 1024 canvas; ``B`` images)::

    (B, 3, 1024, 1024)
    patch_embed   two 3×3 stride-2 conv + batch-norm, GELU between  →  (B, 64, 256, 256)
    layers.0      MBConv blocks (inverted residuals), then merging  →  (B, 128, 128, 128)
    layers.1      attention blocks in 7×7 windows, then merging     →  (B, 160, 64, 64)
    layers.2      attention blocks in 14×14 windows, then merging   →  (B, 320, 64, 64)  (stride 1)
    layers.3      attention blocks in 7×7 windows                   →  (B, 320, 64, 64)
    neck          1×1 conv, LayerNorm2d, 3×3 conv, LayerNorm2d      →  (B, 256, 64, 64)

Every merging step halves the grid except the last, which keeps it (MobileSAM keeps the stride at 16,
the grid SAM's prompt encoder and mask decoder expect). Inference only: there is no stochastic depth or
dropout, and batch-norm uses its running statistics in eval mode. The classifier head of the ImageNet
TinyViT (``norm_head``, ``head``) is never used; it exists because the published files carry it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .configs import tiny_vit_stride
from .image_encoder import check_encoder_input, sam_neck, window_partition, window_unpartition

#: Hidden channels of an MBConv block per input channel (MobileSAM's ``mbconv_expand_ratio``).
MBCONV_EXPAND_RATIO = 4
#: Kernel size of the depthwise convolution between attention and MLP (``local_conv_size``).
LOCAL_CONV_SIZE = 3


class ConvBN(nn.Module):
    """A bias-free convolution followed by batch normalisation (MobileSAM's ``Conv2d_BN``).

    ``(B, in_chans, H, W)`` → ``(B, out_chans, ceil(H / stride), ceil(W / stride))``; padding is
    ``kernel_size // 2``. Keys: ``c.weight``, ``bn.weight``, ``bn.bias``, ``bn.running_mean``,
    ``bn.running_var``, ``bn.num_batches_tracked``.
    """

    def __init__(
        self, in_chans: int, out_chans: int, *, kernel_size: int = 1, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(
            in_chans,
            out_chans,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.c(x))


class ConvStem(nn.Module):
    """The patch embedding: ``(B, in_chans, H, W)`` → ``(B, dim, H/4, W/4)``.

    Two 3×3 stride-2 :class:`ConvBN` (``seq.0`` to ``dim / 2`` channels, ``seq.2`` to ``dim``) with a
    GELU (``seq.1``) between them.
    """

    def __init__(self, *, in_chans: int, dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, dim // 2, kernel_size=3, stride=2),
            nn.GELU(),
            ConvBN(dim // 2, dim, kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """An inverted residual block: ``(B, C, H, W)`` → ``(B, C, H, W)``.

    1×1 expansion to ``4 C`` (``conv1``), 3×3 depthwise (``conv2``), 1×1 projection back to ``C``
    (``conv3``); GELU after the first two, the shortcut added, then a last GELU.
    """

    def __init__(self, dim: int, *, expand_ratio: int = MBCONV_EXPAND_RATIO) -> None:
        super().__init__()
        hidden = dim * expand_ratio
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, kernel_size=3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv1(x))
        y = F.gelu(self.conv2(y))
        return F.gelu(self.conv3(y) + x)


class PatchMerging(nn.Module):
    """Between stages: ``(B, dim, H, W)`` → ``(B, out_dim, ceil(H / stride), ceil(W / stride))``.

    1×1 :class:`ConvBN` to ``out_dim`` (``conv1``), 3×3 depthwise with ``stride`` (``conv2``), 1×1
    (``conv3``); GELU after the first two.
    """

    def __init__(self, dim: int, out_dim: int, *, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, kernel_size=3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv1(x))
        x = F.gelu(self.conv2(x))
        return self.conv3(x)


def window_offset_index(window: int) -> torch.Tensor:
    """For every (query, key) pair of a ``window × window`` window, its column in the bias table.

    A pair whose positions (row-major) differ by ``(|dy|, |dx|)`` reads column ``|dy| * window + |dx|``
    — the order in which MobileSAM numbers the offsets, so published ``attention_biases`` keep their
    meaning.

    Returns
    -------
    torch.Tensor
        ``(window², window²)`` int64.
    """
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    rows, cols = rows.reshape(-1), cols.reshape(-1)
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window + dx


class WindowAttention(nn.Module):
    """Multi-head attention inside windows, with a learned bias per head and per offset.

    Input and output ``(B', N, dim)`` with ``N = window²`` tokens per window (``B'`` windows); the
    layer normalises its input itself (``norm``). ``qkv`` gives, per head, ``[q, k, v]`` of
    ``dim / heads`` channels each. ``attention_biases`` ``(heads, window²)`` holds one bias per head
    and offset ``(|dy|, |dx|)`` (see :func:`window_offset_index`).
    """

    attention_bias_idxs: torch.Tensor

    def __init__(self, dim: int, *, num_heads: int, window: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        self.register_buffer("attention_bias_idxs", window_offset_index(window), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(self.norm(x)).view(b, n, self.num_heads, 3 * self.head_dim).transpose(1, 2)
        q, k, v = qkv.split(self.head_dim, dim=-1)  # each (B', heads, N, head_dim)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype)  # (heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class TinyMLP(nn.Module):
    """Pre-norm MLP: ``(..., dim)`` → ``(..., dim)`` through ``hidden`` channels (``norm``, ``fc1``,
    GELU, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention, a depthwise convolution, an MLP: ``(B, H, W, C)`` → ``(B, H, W, C)``.

    The grid is zero-padded at the bottom and right to whole windows *before* the attention's own
    layer norm (as in MobileSAM: padded tokens take part as keys), attention and shortcut, then the
    3×3 depthwise :class:`ConvBN` ``local_conv`` (no shortcut), then the MLP with a shortcut.
    """

    def __init__(self, dim: int, *, num_heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads=num_heads, window=window)
        self.mlp = TinyMLP(dim, int(dim * mlp_ratio))
        self.local_conv = ConvBN(dim, dim, kernel_size=LOCAL_CONV_SIZE, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, c = x.shape
        windows, padded = window_partition(x, self.window)  # (B * nW, window, window, C)
        n = windows.shape[0]
        attended = self.attn(windows.reshape(n, -1, c)).view(n, self.window, self.window, c)
        x = x + window_unpartition(attended, self.window, padded, (h, w))
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class ConvStage(nn.Module):
    """The first stage: :class:`MBConv` ``blocks``, then an optional ``downsample``.

    ``(B, dim, H, W)`` → ``(B, out_dim, H', W')`` (``H' = H`` without a downsample).
    """

    def __init__(self, dim: int, *, depth: int, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class AttentionStage(nn.Module):
    """A later stage: :class:`TinyViTBlock` ``blocks``, then an optional ``downsample``.

    ``(B, dim, H, W)`` → ``(B, out_dim, H', W')``; the blocks work channels-last.
    """

    def __init__(
        self,
        dim: int,
        *,
        depth: int,
        num_heads: int,
        window: int,
        mlp_ratio: float,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads=num_heads, window=window, mlp_ratio=mlp_ratio) for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


class TinyViTEncoder(nn.Module):
    """MobileSAM's TinyViT image encoder.

    Input ``(B, 3, S, S)`` float images already normalised and padded (``S = img_size``); output
    ``(B, out_chans, S/s, S/s)`` embeddings with ``s = tiny_vit_stride(len(widths))`` —
    ``(B, 256, 64, 64)`` for ``vit_t``.

    Parameters
    ----------
    img_size
        Side of the square input canvas; a multiple of the stride.
    widths
        Channels per stage (``vit_t``: 64, 128, 160, 320); at least two stages.
    depths
        Blocks per stage (``vit_t``: 2, 2, 6, 2).
    num_heads, windows
        Attention heads and window sides of the attention stages, i.e. stages 2 onwards
        (``vit_t``: 4, 5, 10 and 7, 14, 7).
    mlp_ratio
        MLP hidden channels per channel in the attention blocks.
    out_chans
        Channels of the embedding (the neck's output).
    num_classes
        Outputs of the unused ImageNet classifier ``head`` (MobileSAM's files carry 1000); 0 for none.
    in_chans
        Input channels.
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        widths: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (4, 5, 10),
        windows: Sequence[int] = (7, 14, 7),
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        num_classes: int = 1000,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        stages = len(widths)
        if stages < 2 or len(depths) != stages or len(num_heads) != stages - 1 or len(windows) != stages - 1:
            raise ValueError(
                "TinyViTEncoder needs widths and depths for every stage (at least 2) and num_heads and "
                f"windows for the attention stages: got {len(widths)} widths, {len(depths)} depths, "
                f"{len(num_heads)} num_heads, {len(windows)} windows"
            )
        stride = tiny_vit_stride(stages)
        if img_size % stride:
            raise ValueError(f"img_size ({img_size}) must be a multiple of the encoder's stride ({stride})")
        self.img_size = img_size
        self.in_chans = in_chans
        self.stride = stride
        self.patch_embed = ConvStem(in_chans=in_chans, dim=widths[0])
        self.layers = nn.ModuleList()
        for i in range(stages):
            downsample = None
            if i < stages - 1:
                merge_stride = 1 if i == stages - 2 else 2
                downsample = PatchMerging(widths[i], widths[i + 1], stride=merge_stride)
            stage: nn.Module
            if i == 0:
                stage = ConvStage(widths[0], depth=depths[0], downsample=downsample)
            else:
                stage = AttentionStage(
                    widths[i],
                    depth=depths[i],
                    num_heads=num_heads[i - 1],
                    window=windows[i - 1],
                    mlp_ratio=mlp_ratio,
                    downsample=downsample,
                )
            self.layers.append(stage)
        self.norm_head = nn.LayerNorm(widths[-1])
        self.head: nn.Module = nn.Linear(widths[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = sam_neck(widths[-1], out_chans)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_encoder_input(x, self.in_chans, self.img_size)
        x = self.patch_embed(x)
        for stage in self.layers:
            x = stage(x)
        return self.neck(x)
