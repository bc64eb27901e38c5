"""Instance decoder: a convolutional decoder on the image embedding for automatic instance segmentation.

It predicts, per pixel, three maps in ``[0, 1]``: foreground, distance to the object centre and distance to
the object boundary; a seeded watershed turns them into instances. The architecture and the state-dict layout
are those of micro-sam's ``decoder_state``: the decoder part of a torch_em ``UNETR`` built with
``backbone="sam"``, ``use_skip_connection=False``, ``resize_input=True``, ``out_channels=3``, a sigmoid output
and ``initial_features=64``, whose ``encoder.*`` keys are left out. Key prefixes: ``base.``,
``decoder.blocks.``, ``decoder.samplers.``, ``deconv1.`` – ``deconv4.``, ``deconv_out.``, ``decoder_head.``,
``out_conv.``.

Without skip connections the decoder only sees the image embedding ``(B, E, h, w)`` (the encoder's neck
output, ``E = 256`` for SAM): four ×2 up-sampling blocks make features at 2, 4, 8 and 16 times the
embedding's resolution, which feed a three-level U-Net decoder and its output head. As in torch_em, each
decoder level concatenates the up-sampled features with the *centre channels* of the matching up-sampling
block's output (torch_em crops the skip tensor to the up-sampled tensor's shape, channel axis included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from itertools import pairwise
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from .instance_decoder_fast import (
    conv1x1,
    conv3x3_relu,
    fold_batch_norm,
    instance_norm_,
    instance_norm_cat,
    resize_maps,
    upsample_conv1x1,
    upsample_conv1x1_conv3x3_relu,
)

#: levels of the U-Net decoder (torch_em's ``depth``) and the channel gain between levels
_DEPTH = 3
_GAIN = 2


@dataclass(frozen=True)
class InstanceDecoderConfig:
    """The architecture of an :class:`InstanceDecoder` (its constructor's arguments)."""

    embed_dim: int = 256
    image_size: int = 1024
    out_channels: int = 3
    initial_features: int = 64
    conv_transpose: bool = False
    full_resolution: bool = True
    batch_statistics: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> InstanceDecoderConfig:
        """The config written by :meth:`to_dict`; TypeError on unknown keys."""
        return cls(**dict(values))


class _ConvBlock(nn.Module):
    """Two (instance norm → 3×3 conv → ReLU) steps: ``(B, C_in, H, W)`` → ``(B, C_out, H, W)``.

    The instance norms have no parameters; the convolutions are ``block.1`` and ``block.4``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.InstanceNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.InstanceNorm2d(out_channels),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)

    def infer(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Inference forward of the channel concatenation of ``parts`` (exact up to float rounding)."""
        norm1, norm2 = cast(nn.InstanceNorm2d, self.block[0]), cast(nn.InstanceNorm2d, self.block[3])
        conv1, conv2 = cast(nn.Conv2d, self.block[1]), cast(nn.Conv2d, self.block[4])
        x = conv3x3_relu(instance_norm_cat(parts, norm1.eps), conv1.weight, conv1.bias)
        return conv3x3_relu(instance_norm_(x, norm2.eps), conv2.weight, conv2.bias)


class _Upsample(nn.Module):
    """×2 up-sampling with a channel change: ``(B, C_in, H, W)`` → ``(B, C_out, 2H, 2W)``.

    Either bilinear interpolation then a 1×1 convolution (parameters ``conv.*``), or, for decoders trained
    with ``use_conv_transpose=True``, a 2×2 stride-2 transposed convolution (parameters ``block.*``).
    """

    def __init__(self, in_channels: int, out_channels: int, *, transpose: bool) -> None:
        super().__init__()
        self.transpose = transpose
        if transpose:
            self.block = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=2, stride=2)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.transpose:
            return self.block(x)
        return self.conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Inference forward: the 1×1 convolution runs before the interpolation (exact up to rounding)."""
        if self.transpose:
            return self.block(x)
        return upsample_conv1x1(x, self.conv.weight, self.conv.bias)


class _Conv3x3(nn.Module):
    """One 3×3 convolution kept under the name ``block``: ``(B, C, H, W)`` → ``(B, C, H, W)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class _UpBlock(nn.Module):
    """Up-sample ×2, 3×3 conv, batch norm, ReLU: ``(B, C_in, H, W)`` → ``(B, C_out, 2H, 2W)``.

    ``batch_statistics``: outside training too, the batch norm normalises with the statistics of the batch
    it sees (each image's own when images come one at a time), as micro-sam runs its decoders (never put
    in eval mode); the running statistics are then neither used nor changed.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, transpose: bool, batch_statistics: bool
    ) -> None:
        super().__init__()
        self.batch_statistics = batch_statistics
        self.block = nn.Sequential(
            _Upsample(in_channels, out_channels, transpose=transpose),
            _Conv3x3(out_channels),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.batch_statistics and not self.training:
            return self._with_batch_statistics(self.block[0](x))
        return self.block(x)

    def _with_batch_statistics(self, upsampled: torch.Tensor) -> torch.Tensor:
        """3×3 conv, batch norm with the batch's own statistics, ReLU."""
        conv3, bn = cast(_Conv3x3, self.block[1]), cast(nn.BatchNorm2d, self.block[2])
        x = conv3(upsampled)
        x = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=bn.eps)
        return F.relu(x, inplace=True)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        """Inference forward with the (eval-mode) batch norm folded into the 3×3 convolution."""
        sampler = cast(_Upsample, self.block[0])
        if self.batch_statistics:
            return self._with_batch_statistics(sampler.infer(x))
        conv3, bn = cast(_Conv3x3, self.block[1]), cast(nn.BatchNorm2d, self.block[2])
        weight, bias = fold_batch_norm(conv3.block, bn)
        if sampler.transpose:
            return conv3x3_relu(sampler.block(x), weight, bias)
        return upsample_conv1x1_conv3x3_relu(x, sampler.conv.weight, sampler.conv.bias, weight, bias)


def _centre_channels(skip: torch.Tensor, channels: int) -> torch.Tensor:
    """The ``channels`` centre channels of ``skip`` ``(B, C, H, W)`` → ``(B, channels, H, W)``."""
    start = (skip.shape[1] - channels) // 2
    return skip[:, start : start + channels]


class _UNetDecoder(nn.Module):
    """Three levels of (up-sample, concatenate the skip's centre channels, conv block).

    ``(B, F0, h, w)`` and skips ``(B, F0, 2h, 2w)``, ``(B, F1, 4h, 4w)``, ``(B, F2, 8h, 8w)`` →
    ``(B, F3, 8h, 8w)``, with ``F = features``.
    """

    def __init__(self, features: list[int], *, transpose: bool) -> None:
        super().__init__()
        pairs = list(pairwise(features))
        self.blocks = nn.ModuleList(_ConvBlock(c_in, c_out) for c_in, c_out in pairs)
        self.samplers = nn.ModuleList(_Upsample(c_in, c_out, transpose=transpose) for c_in, c_out in pairs)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        for block, sampler, skip in zip(self.blocks, self.samplers, skips, strict=True):
            x = sampler(x)
            x = block(torch.cat([x, _centre_channels(skip, x.shape[1])], dim=1))
        return x

    def infer(self, x: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        """Inference forward (exact up to float rounding)."""
        for block, sampler, skip in zip(self.blocks, self.samplers, skips, strict=True):
            x = cast(_Upsample, sampler).infer(x)
            x = cast(_ConvBlock, block).infer([x, _centre_channels(skip, x.shape[1])])
        return x


class InstanceDecoder(nn.Module):
    """Foreground, centre-distance and boundary-distance maps from a SAM image embedding.

    Parameters
    ----------
    embed_dim
        Channels ``E`` of the image embedding (256 for SAM).
    image_size
        Side of the encoder's square input (1024 for SAM); the maps are first resized to it, as the padded
        model input, then cropped to the resized image and resized to the original image.
    out_channels
        Number of output maps (3: foreground, centre distance, boundary distance).
    initial_features
        Channels of the finest decoder level; the levels have ``8, 4, 2, 1`` times as many (coarse to fine).
    conv_transpose
        Up-sample with transposed convolutions instead of bilinear interpolation + 1×1 convolution
        (micro-sam tells the two apart by ``.block.`` in the ``decoder.samplers`` keys).
    full_resolution
        True (micro-sam's layout): the maps are made at 16× the embedding's resolution (the model input's).
        False: a lighter variant of our own that stops at 8× (no ``deconv4``, ``deconv_out``,
        ``decoder_head``; ``out_conv`` reads the U-Net decoder's output), about 20× cheaper at
        ``initial_features=16`` — for the nano model, whose input is at most 2× the image. It decodes
        only the embedding tokens that cover the image (:meth:`forward`), not the canvas's padding: a
        256² image on nano's 1024 canvas costs a quarter, and on held-out synthetic 256² and 300×512
        images F1 was as good or better than decoding the whole canvas (nuclei 0.983 / 0.983, wide
        0.709 → 0.749, 300×512 nuclei 0.905 → 0.951).
    batch_statistics
        Normalise the up-sampling blocks' batch norms with each batch's own statistics outside training
        too — what micro-sam does (it never puts its decoder in eval mode), so a micro-sam decoder gives
        micro-sam's maps; :func:`~napari_sam.model.instance_checkpoint.build_instance_decoder` sets it for
        decoders from micro-sam's files. Images are then decoded one at a time (:meth:`forward`), so that
        the result of one image does not depend on the others in its batch. False (our decoders): the
        running statistics, as usual in eval mode.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 256,
        image_size: int = 1024,
        out_channels: int = 3,
        initial_features: int = 64,
        conv_transpose: bool = False,
        full_resolution: bool = True,
        batch_statistics: bool = False,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.config = InstanceDecoderConfig(
            embed_dim=embed_dim,
            image_size=image_size,
            out_channels=out_channels,
            initial_features=initial_features,
            conv_transpose=conv_transpose,
            full_resolution=full_resolution,
            batch_statistics=batch_statistics,
        )
        feats = [initial_features * _GAIN**i for i in range(_DEPTH + 1)][::-1]  # coarse → fine
        self.decoder = _UNetDecoder(feats, transpose=conv_transpose)
        up = {"transpose": conv_transpose, "batch_statistics": batch_statistics}
        self.deconv1 = _UpBlock(embed_dim, feats[0], **up)
        self.deconv2 = _UpBlock(feats[0], feats[1], **up)
        self.deconv3 = _UpBlock(feats[1], feats[2], **up)
        # registered in torch_em's order, so that the state dict's keys come in micro-sam's order
        self.deconv4: _UpBlock | None = _UpBlock(feats[2], feats[3], **up) if full_resolution else None
        self.base = _ConvBlock(embed_dim, feats[0])
        self.out_conv = nn.Conv2d(feats[-1], out_channels, kernel_size=1)
        self.deconv_out: _Upsample | None = None
        self.decoder_head: _ConvBlock | None = None
        if full_resolution:
            self.deconv_out = _Upsample(feats[-1], feats[-1], transpose=conv_transpose)
            self.decoder_head = _ConvBlock(2 * feats[-1], feats[-1])

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """Maps at 16× (8× without ``full_resolution``) the embedding's resolution.

        ``(B, E, h, w)`` → ``(B, out_channels, 16h, 16w)`` (or ``(B, out_channels, 8h, 8w)``). In eval
        mode without autograd the inference kernels of :mod:`~napari_sam.model.instance_decoder_fast` run
        instead of the layer graph (same maps up to float rounding, about twice as fast on a CPU).
        """
        if not self.training and not torch.is_grad_enabled():
            return self._decode_inference(features)
        z9 = self.deconv1(features)
        z6 = self.deconv2(z9)
        z3 = self.deconv3(z6)
        x = self.decoder(self.base(features), [z9, z6, z3])
        if self.deconv4 is not None and self.deconv_out is not None and self.decoder_head is not None:
            z0 = self.deconv4(z3)
            x = self.decoder_head(torch.cat([self.deconv_out(x), z0], dim=1))
        return torch.sigmoid(self.out_conv(x))

    def _decode_inference(self, features: torch.Tensor) -> torch.Tensor:
        features = features.contiguous()
        z9 = self.deconv1.infer(features)
        z6 = self.deconv2.infer(z9)
        z3 = self.deconv3.infer(z6)
        x = self.decoder.infer(self.base.infer([features]), [z9, z6, z3])
        if self.deconv4 is not None and self.deconv_out is not None and self.decoder_head is not None:
            x = self.decoder_head.infer([self.deconv_out.infer(x), self.deconv4.infer(z3)])
        return torch.sigmoid_(conv1x1(x, self.out_conv.weight, self.out_conv.bias))

    @classmethod
    def from_state_dict_shapes(
        cls, state_dict: Mapping[str, torch.Tensor], *, image_size: int
    ) -> InstanceDecoder:
        """An (untrained) decoder whose architecture fits ``state_dict``'s keys and shapes.

        ``embed_dim``, ``out_channels`` and ``initial_features`` come from the shapes; transposed
        up-sampling from ``.block.`` in the ``decoder.samplers`` keys (micro-sam's rule); the half-resolution
        variant from the absence of ``decoder_head`` keys. ``image_size`` is the SAM model's.

        Raises
        ------
        KeyError
            A key every instance decoder has is missing (not an instance decoder state dict).
        """
        base = state_dict["base.block.1.weight"]  # (8F, E, 3, 3)
        out = state_dict["out_conv.weight"]  # (C_out, F, 1, 1)
        return cls(
            embed_dim=int(base.shape[1]),
            image_size=image_size,
            out_channels=int(out.shape[0]),
            initial_features=int(out.shape[1]),
            conv_transpose=any(".block." in k for k in state_dict if k.startswith("decoder.samplers")),
            full_resolution=any(k.startswith("decoder_head.") for k in state_dict),
        )

    def forward(
        self,
        features: torch.Tensor,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> torch.Tensor:
        """Predict the maps of one batch of images.

        Parameters
        ----------
        features
            Image embeddings ``(B, E, h, w)``, ``h = w = image_size / patch_size``.
        input_size
            ``(H', W')``: the image's size after resizing its longest side to ``image_size``, before padding.
        original_size
            ``(H, W)``: the image's original size.

        Returns
        -------
        torch.Tensor
            ``(B, out_channels, H, W)`` float maps in ``[0, 1]``. Without ``full_resolution`` only the
            first ``ceil(H' / patch)`` × ``ceil(W' / patch)`` tokens of ``features`` are read.
        """
        if self.config.batch_statistics and not self.training and features.shape[0] > 1:
            return torch.cat([self(one[None], input_size, original_size) for one in features])
        if self.config.full_resolution:
            return resize_maps(self.decode(features), self.image_size, input_size, original_size)
        # the half-resolution variant decodes only the tokens that cover the image, not the padding
        stride = self.image_size // features.shape[-1]
        rows, cols = -(-int(input_size[0]) // stride), -(-int(input_size[1]) // stride)
        maps = self.decode(features[..., :rows, :cols])
        return resize_maps(maps, (rows * stride, cols * stride), input_size, original_size)
