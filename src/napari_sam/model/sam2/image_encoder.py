"""SAM 2's image encoder: the Hiera trunk followed by a feature-pyramid neck.

The neck projects every trunk stage to ``d_model`` channels with a 1×1 convolution and, on the levels named in
``fpn_top_down_levels``, adds the upsampled coarser level (top-down path, no output convolution). The encoder
drops the ``scalp`` coarsest levels and hands the rest to the SAM 2 heads: the coarsest kept level as
``vision_features`` (the image embedding), the finer ones as the high-resolution features of the mask decoder.

Names follow the official checkpoints: ``image_encoder.trunk.*`` and ``image_encoder.neck.convs.N.conv.*``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch
from torch import nn
from torch.nn import functional as F

from .hiera import Hiera
from .position_encoding import PositionEmbeddingSine

_INTERPOLATION_MODES = ("nearest", "bilinear", "bicubic")


class ImageEncoderOutput(TypedDict):
    """What :class:`Sam2ImageEncoder` returns (a plain ``dict`` at run time, keys as the official).

    ``backbone_fpn`` and ``vision_pos_enc`` list the kept pyramid levels fine to coarse, each
    ``(B, d_model, H_i, W_i)``; ``vision_features`` is the last (coarsest kept) level of ``backbone_fpn``.
    """

    vision_features: torch.Tensor
    vision_pos_enc: list[torch.Tensor]
    backbone_fpn: list[torch.Tensor]


class FpnNeck(nn.Module):
    """Feature pyramid over the trunk's stages (a detectron2-style FPN without output convolutions).

    Parameters
    ----------
    d_model
        Output channels of every level.
    backbone_channel_list
        Trunk channels, coarse to fine (``Hiera.channel_list``); ``convs[j]`` projects the ``j``-th of them.
    position_encoding
        Module mapping a level ``(B, d_model, H, W)`` to its position encoding of the same shape;
        :class:`PositionEmbeddingSine` with ``d_model`` features when ``None``.
    kernel_size, stride, padding
        Of the lateral convolutions (1, 1, 0 in every official model).
    fpn_interp_model
        Upsampling of the top-down path: ``"nearest"`` (SAM 2 / 2.1), ``"bilinear"`` or ``"bicubic"``.
    fuse_type
        ``"sum"`` adds the top-down features to the lateral ones, ``"avg"`` averages them.
    fpn_top_down_levels
        Levels (0 = finest) that receive the top-down path; all when ``None``. The others are the lateral
        projection alone (official SAM 2.1: ``[2, 3]``).
    """

    def __init__(
        self,
        *,
        d_model: int,
        backbone_channel_list: Sequence[int],
        position_encoding: nn.Module | None = None,
        kernel_size: int = 1,
        stride: int = 1,
        padding: int = 0,
        fpn_interp_model: str = "bilinear",
        fuse_type: str = "sum",
        fpn_top_down_levels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if fuse_type not in ("sum", "avg"):
            raise ValueError(f"fuse_type must be 'sum' or 'avg', got {fuse_type!r}")
        if fpn_interp_model not in _INTERPOLATION_MODES:
            raise ValueError(
                f"fpn_interp_model must be one of {_INTERPOLATION_MODES}, got {fpn_interp_model!r}"
            )
        levels = len(backbone_channel_list)
        top_down = (
            list(range(levels)) if fpn_top_down_levels is None else [int(i) for i in fpn_top_down_levels]
        )
        if any(not 0 <= i < levels for i in top_down):
            raise ValueError(f"fpn_top_down_levels {top_down} must index the {levels} levels")
        self.position_encoding = (
            PositionEmbeddingSine(d_model) if position_encoding is None else position_encoding
        )
        self.d_model = d_model
        self.backbone_channel_list = [int(c) for c in backbone_channel_list]
        self.convs = nn.ModuleList()
        for channels in self.backbone_channel_list:
            lateral = nn.Sequential()
            lateral.add_module(
                "conv",
                nn.Conv2d(channels, d_model, kernel_size=kernel_size, stride=stride, padding=padding),
            )
            self.convs.append(lateral)
        self.fpn_interp_model = fpn_interp_model
        self.fuse_type = fuse_type
        self.fpn_top_down_levels = top_down

    def forward(self, xs: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Trunk outputs fine to coarse, ``xs[i]``: ``(B, backbone_channel_list[-1 - i], H_i, W_i)`` →
        ``(features, positions)``: two lists fine to coarse of ``(B, d_model, H_i, W_i)``."""
        levels = len(self.convs)
        if len(xs) != levels:
            raise ValueError(f"the neck has {levels} levels but got {len(xs)} feature maps")
        features: list[torch.Tensor] = [xs[0]] * levels  # every entry is overwritten below
        positions: list[torch.Tensor] = [xs[0]] * levels
        previous: torch.Tensor | None = None
        for i in range(levels - 1, -1, -1):  # coarse to fine
            lateral = self.convs[levels - 1 - i](xs[i])
            if previous is not None and i in self.fpn_top_down_levels:
                upsampled = F.interpolate(
                    previous.to(torch.float32),
                    scale_factor=2.0,
                    mode=self.fpn_interp_model,
                    align_corners=None if self.fpn_interp_model == "nearest" else False,
                    antialias=False,
                )
                previous = lateral + upsampled
                if self.fuse_type == "avg":
                    previous = previous / 2
            else:
                previous = lateral
            features[i] = previous
            positions[i] = self.position_encoding(previous).to(previous.dtype)
        return features, positions


class Sam2ImageEncoder(nn.Module):
    """SAM 2's image encoder (the official ``ImageEncoder``): trunk, neck, and dropping ``scalp`` levels.

    Parameters
    ----------
    trunk
        The backbone; its ``channel_list`` (coarse to fine) must equal the neck's ``backbone_channel_list``.
    neck
        The feature pyramid.
    scalp
        How many of the coarsest levels to discard (1 in every official SAM 2 / 2.1 model).
    """

    def __init__(self, *, trunk: Hiera, neck: FpnNeck, scalp: int = 0) -> None:
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(
                f"the trunk's channels (coarse to fine) {list(trunk.channel_list)} do not match the neck's "
                f"backbone_channel_list {list(neck.backbone_channel_list)}"
            )
        if not 0 <= scalp < len(neck.backbone_channel_list):
            raise ValueError(f"scalp must be in [0, {len(neck.backbone_channel_list) - 1}], got {scalp}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp

    def forward(self, sample: torch.Tensor) -> ImageEncoderOutput:
        """``(B, 3, H, W)`` normalised image batch → the kept pyramid levels (see
        :class:`ImageEncoderOutput`); with the official 1024² input and ``scalp=1``: ``backbone_fpn`` of
        ``(B, 256, 256, 256)``, ``(B, 256, 128, 128)``, ``(B, 256, 64, 64)``."""
        features, positions = self.neck(self.trunk(sample))
        if self.scalp > 0:
            features, positions = features[: -self.scalp], positions[: -self.scalp]
        return {"vision_features": features[-1], "vision_pos_enc": positions, "backbone_fpn": features}
