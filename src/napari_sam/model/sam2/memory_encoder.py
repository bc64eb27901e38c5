"""SAM 2's memory encoder: a frame's image features and its predicted mask → that frame's spatial memory.

The mask (at the model's input resolution) is brought down to the feature grid by strided convolutions
(:class:`MaskDownSampler`), added to the projected image features, mixed by ConvNeXt blocks
(:class:`Fuser` of :class:`CXBlock`) and projected to the memory width (64 for the official models).
"""

from __future__ import annotations

import copy
import math
from typing import TypedDict

import torch
from torch import nn

from ..common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """Strided convolutions that shrink a mask by ``total_stride``, then a 1×1 projection to ``embed_dim``.

    Each of the ``log(total_stride) / log(stride)`` steps is conv (stride ``stride``, ``stride²`` times
    more channels) → :class:`LayerNorm2d` → activation. Module indices in ``encoder`` follow the
    official checkpoints.

    Parameters
    ----------
    embed_dim
        Output channels (the image feature width).
    kernel_size, stride, padding
        Of each strided convolution.
    total_stride
        Overall down-scaling; a power of ``stride``.
    activation
        Activation after each step.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 256,
        kernel_size: int = 3,
        stride: int = 2,
        padding: int = 1,
        total_stride: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        num_layers = round(math.log(total_stride) / math.log(stride)) if stride > 1 else 0
        if stride < 2 or stride**num_layers != total_stride:
            raise ValueError(f"total_stride ({total_stride}) must be a power of stride ({stride})")
        self.encoder = nn.Sequential()
        channels = 1
        for _ in range(num_layers):
            out_channels = channels * stride**2
            self.encoder.append(
                nn.Conv2d(channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding)
            )
            self.encoder.append(LayerNorm2d(out_channels))
            self.encoder.append(activation())
            channels = out_channels
        self.encoder.append(nn.Conv2d(channels, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` mask → ``(B, embed_dim, H / total_stride, W / total_stride)``."""
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv → :class:`LayerNorm2d` → pointwise MLP (×4, GELU) → scale → residual.

    Parameters
    ----------
    dim
        Channels.
    kernel_size, padding
        Of the (depthwise) convolution.
    drop_path
        Probability of dropping the residual branch per sample (stochastic depth, training only).
    layer_scale_init_value
        Initial per-channel scale ``gamma`` of the branch; no scale when ``<= 0``.
    use_dwconv
        Depthwise (grouped) convolution; a full convolution otherwise.
    """

    def __init__(
        self,
        *,
        dim: int = 256,
        kernel_size: int = 7,
        padding: int = 3,
        drop_path: float = 0.0,
        layer_scale_init_value: float = 1e-6,
        use_dwconv: bool = True,
    ) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(
            dim, dim, kernel_size=kernel_size, padding=padding, groups=dim if use_dwconv else 1
        )
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma: nn.Parameter | None = (
            nn.Parameter(torch.full((dim,), layer_scale_init_value)) if layer_scale_init_value > 0 else None
        )
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, dim, H, W)`` → ``(B, dim, H, W)``."""
        branch = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)  # channels last for the linear layers
        branch = self.pwconv2(self.act(self.pwconv1(branch)))
        if self.gamma is not None:
            branch = self.gamma * branch
        branch = branch.permute(0, 3, 1, 2)
        if self.training and self.drop_path > 0.0:
            keep = 1.0 - self.drop_path
            kept = torch.rand((x.shape[0], 1, 1, 1), device=x.device, dtype=x.dtype) < keep
            branch = branch * kept / keep
        return x + branch


class Fuser(nn.Module):
    """An optional 1×1 input projection, then ``num_layers`` copies of a block (each with its own weights).

    Parameters
    ----------
    layer
        The block to copy; by default the sam2.1 :class:`CXBlock` (256 channels).
    num_layers
        Number of copies.
    dim
        Channels of the input projection (needed with ``input_projection``).
    input_projection
        Start with a 1×1 convolution.
    """

    def __init__(
        self,
        *,
        layer: nn.Module | None = None,
        num_layers: int = 2,
        dim: int | None = None,
        input_projection: bool = False,
    ) -> None:
        super().__init__()
        if input_projection and dim is None:
            raise ValueError("input_projection needs dim")
        self.proj: nn.Module = nn.Identity()
        self.layers = nn.ModuleList(_copies(CXBlock() if layer is None else layer, num_layers))
        if input_projection and dim is not None:
            self.proj = nn.Conv2d(dim, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C, H, W)``."""
        x = self.proj(x)
        for layer in self.layers:
            x = layer(x)
        return x


def _copies(module: nn.Module, count: int) -> list[nn.Module]:
    """``count`` independent deep copies of ``module``."""
    return [copy.deepcopy(module) for _ in range(count)]


class MemoryEncoderOutput(TypedDict):
    """What :class:`MemoryEncoder` returns (the official dictionary's keys)."""

    #: ``(B, out_dim, H, W)`` the memory
    vision_features: torch.Tensor
    #: one ``(B, out_dim, H, W)`` positional encoding of the memory grid
    vision_pos_enc: list[torch.Tensor]


class MemoryEncoder(nn.Module):
    """Encode a frame's memory from its image features and mask.

    Parameters
    ----------
    out_dim
        Channels of the memory (64 for the official models); a 1×1 projection when it differs from
        ``in_dim``.
    mask_downsampler
        :class:`MaskDownSampler` to ``in_dim`` channels; by default the sam2.1 one.
    fuser
        :class:`Fuser` on ``in_dim`` channels; by default the sam2.1 one (two :class:`CXBlock`).
    position_encoding
        Encoding of the memory grid; by default :class:`PositionEmbeddingSine` of ``out_dim`` channels.
    in_dim
        Channels of the image features.
    """

    def __init__(
        self,
        *,
        out_dim: int = 64,
        mask_downsampler: MaskDownSampler | None = None,
        fuser: Fuser | None = None,
        position_encoding: nn.Module | None = None,
        in_dim: int = 256,
    ) -> None:
        super().__init__()
        self.mask_downsampler = (
            MaskDownSampler(embed_dim=in_dim) if mask_downsampler is None else mask_downsampler
        )
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        if fuser is None:
            fuser = Fuser(layer=CXBlock(dim=in_dim), num_layers=2)
        self.fuser = fuser
        self.position_encoding = (
            PositionEmbeddingSine(out_dim) if position_encoding is None else position_encoding
        )
        self.out_proj: nn.Module = nn.Identity()
        if out_dim != in_dim:
            self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> MemoryEncoderOutput:
        """Encode one memory per batch item.

        Parameters
        ----------
        pix_feat
            ``(B, in_dim, H, W)`` image features of the frame.
        masks
            ``(B, 1, s·H, s·W)`` mask logits (``s`` the down-sampler's ``total_stride``); with
            ``skip_mask_sigmoid`` already-squashed values that are used as they are.
        skip_mask_sigmoid
            Do not apply the sigmoid to ``masks``.

        Returns
        -------
        MemoryEncoderOutput
            ``"vision_features"``: ``(B, out_dim, H, W)`` the memory; ``"vision_pos_enc"``: a list
            with one ``(B, out_dim, H, W)`` positional encoding.
        """
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        mask_features = self.mask_downsampler(masks)
        pix_feat = pix_feat.to(mask_features.device)
        if pix_feat.shape[-2:] != mask_features.shape[-2:]:
            raise ValueError(
                f"masks {tuple(masks.shape)} down-sample to a {tuple(mask_features.shape[-2:])} grid, "
                f"the image features {tuple(pix_feat.shape)} are on a {tuple(pix_feat.shape[-2:])} grid"
            )
        x = self.pix_feat_proj(pix_feat) + mask_features
        x = self.out_proj(self.fuser(x))
        pos = self.position_encoding(x).to(x.dtype)
        return {"vision_features": x, "vision_pos_enc": [pos]}
