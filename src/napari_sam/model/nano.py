"""The nano image encoder: a small convolutional network with SAM's embedding interface.

Input ``(B, 3, S, S)`` normalised, padded images (``S`` a multiple of 16; 1024 at inference), output
``(B, out_chans, S/16, S/16)`` embeddings — ``(B, 256, 64, 64)`` for a 1024² input, like the ViT
encoders, so SAM's prompt encoder and mask decoder work on it unchanged. Being convolutional, it can
be trained on crops of the inference canvas.

Layout: a stride-4 patchify stem, one block at stride 4, one at stride 8, then ``depth`` blocks at
stride 16 with growing dilation for a receptive field of several hundred pixels, and a SAM-style
neck (1×1 convolution + LayerNorm2d).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .common import LayerNorm2d


class InvertedResidual(nn.Module):
    """Depthwise 3×3 (dilated) → pointwise expand → GELU → pointwise project, with a residual."""

    def __init__(self, *, channels: int, expansion: int = 2, dilation: int = 1) -> None:
        super().__init__()
        hidden = channels * expansion
        self.dw = nn.Conv2d(
            channels, channels, 3, padding=dilation, dilation=dilation, groups=channels, bias=False
        )
        self.norm = nn.BatchNorm2d(channels)
        self.expand = nn.Conv2d(channels, hidden, 1)
        self.act = nn.GELU()
        self.project = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.project(self.act(self.expand(self.norm(self.dw(x)))))


class Downsample(nn.Module):
    """2×2 stride-2 convolution with a normalisation: halves the resolution, changes the width."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 2, stride=2, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class NanoEncoder(nn.Module):
    """Small convolutional image encoder producing SAM embeddings.

    Parameters
    ----------
    widths
        Channels at strides 4, 8 and 16.
    depth
        Blocks at stride 16.
    dilations
        Dilation of each stride-16 block (cycled).
    out_chans
        Embedding channels (256 for SAM's decoder).
    img_size
        Side of the inference canvas (only used for validation messages and ``img_size``).
    """

    patch_size = 16

    def __init__(
        self,
        *,
        widths: Sequence[int] = (32, 64, 160),
        depth: int = 6,
        dilations: Sequence[int] = (1, 2, 4, 8, 1, 2),
        out_chans: int = 256,
        img_size: int = 1024,
    ) -> None:
        super().__init__()
        c4, c8, c16 = widths
        self.img_size = img_size
        self.in_chans = 3
        self.stem = nn.Sequential(nn.Conv2d(3, c4, 4, stride=4, bias=False), nn.BatchNorm2d(c4), nn.GELU())
        self.stage4 = InvertedResidual(channels=c4)
        self.down8 = Downsample(c4, c8)
        self.stage8 = InvertedResidual(channels=c8)
        self.down16 = Downsample(c8, c16)
        self.stage16 = nn.Sequential(
            *(InvertedResidual(channels=c16, dilation=dilations[i % len(dilations)]) for i in range(depth))
        )
        self.neck = nn.Sequential(nn.Conv2d(c16, out_chans, 1, bias=False), LayerNorm2d(out_chans))
        # channels-last convolutions: ~30 % faster on CPUs (measured on 2 EPYC cores, 1024² canvas);
        # loading weights copies into these tensors and keeps their layout
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[-1] % 16 or x.shape[-2] % 16:
            raise ValueError(
                f"nano encoder input must have shape (B, 3, H, W) with H and W multiples of 16, "
                f"got {tuple(x.shape)}"
            )
        x = self.stage4(self.stem(x.contiguous(memory_format=torch.channels_last)))
        x = self.stage8(self.down8(x))
        x = self.stage16(self.down16(x))
        return self.neck(x).contiguous()  # (B, C, h, w) in the usual layout for the decoder
