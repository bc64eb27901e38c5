"""Inference kernels of the instance decoder: the same maps as its layer graph, with less work.

:class:`~napari_sam.model.instance_decoder.InstanceDecoder` runs these in eval mode without autograd
(``torch.no_grad`` / ``torch.inference_mode``); training keeps the plain layer-by-layer graph. Every
rewrite is exact in real arithmetic, so the maps differ from the layer graph by float rounding only:

- eval-mode batch norm is folded into the convolution before it (a per-channel affine map);
- a 1×1 convolution after a bilinear ×2 up-sampling runs before it, on a quarter of the pixels (bilinear
  weights sum to one, so channel mixing and the bias commute with the interpolation), as a matrix product;
- where it is cheaper (fewer input than output channels), that 1×1 convolution is merged into the 3×3
  convolution that follows; the 1×1 bias, constant over the image, then reaches the 3×3 convolution's
  zero-padded border only partly, which :func:`_add_border_bias` restores exactly;
- instance norm of a channel concatenation normalises each part straight into its channels of the
  result (one pass per part after a two-pass mean/variance), without the un-normalised concatenation;
- 3×3 convolutions on CPU use NNPACK's Winograd kernels where available (about 2× fewer operations than
  direct convolution; a relative error ~1e-5 per layer, ≤ 1e-5 on the maps as measured, see
  ``tests/model/test_instance_decoder.py``); :func:`set_winograd` turns them off;
- resizes to the size a map already has are skipped (:func:`resize_maps`).

All tensors are ``(B, C, H, W)`` float32, contiguous.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "conv1x1",
    "conv3x3_relu",
    "fold_batch_norm",
    "instance_norm_",
    "instance_norm_cat",
    "resize_maps",
    "set_winograd",
    "upsample_conv1x1",
    "upsample_conv1x1_conv3x3_relu",
    "winograd_enabled",
]

#: elements of one chunk in :func:`_instance_stats`' second pass (4 MB: stays in cache)
_STATS_CHUNK = 1 << 20

_winograd = {"wanted": True, "works": True}


def set_winograd(enabled: bool) -> None:
    """Use (True, default) NNPACK's Winograd 3×3 convolutions on CPU when available, or oneDNN's direct
    convolutions (False: slower, rounding like the layer graph's)."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    _winograd["wanted"] = enabled


def winograd_enabled() -> bool:
    """Whether 3×3 convolutions on CPU currently go through NNPACK's Winograd kernels."""
    return _winograd["wanted"] and _winograd["works"] and bool(torch._nnpack_available())


def fold_batch_norm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight ``(O, I, k, k)`` and bias ``(O,)`` of ``bn(conv(x))`` as one convolution (eval-mode ``bn``)."""
    if bn.running_var is None or bn.running_mean is None:
        raise ValueError("bn: batch norm without running statistics cannot be folded")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
    shift = (bias - bn.running_mean) * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return conv.weight * scale[:, None, None, None], shift


def _conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Zero-padded 3×3 convolution ``(B, I, H, W)`` → ``(B, O, H, W)``."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and winograd_enabled():
        try:
            x, weight = x.contiguous(), weight.contiguous()
            return torch._nnpack_spatial_convolution(x, weight, bias, [1, 1], [1, 1])
        except RuntimeError:  # NNPACK refused (no supported ISA, out of memory): direct from now on
            _winograd["works"] = False
    return F.conv2d(x, weight, bias, padding=1)


def conv3x3_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``relu(conv3x3(x))`` with zero padding: ``(B, I, H, W)`` → ``(B, O, H, W)``."""
    return _conv3x3(x, weight, bias).relu_()


def conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """1×1 convolution as a matrix product: ``(B, I, H, W)`` → ``(B, O, H, W)``."""
    batch, _, height, width = x.shape
    matrix = weight.flatten(1)
    if batch == 1 and bias is not None:
        out = torch.addmm(bias[:, None], matrix, x.reshape(x.shape[1], -1))
    else:
        out = torch.matmul(matrix, x.reshape(batch, x.shape[1], -1))
        if bias is not None:
            out += bias[:, None]
    return out.view(batch, matrix.shape[0], height, width)


def _upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def upsample_conv1x1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv1x1(upsample×2(x))`` as ``upsample×2(conv1x1(x))``: ``(B, I, H, W)`` → ``(B, O, 2H, 2W)``."""
    return _upsample2(conv1x1(x, weight, bias))


def _ones_response(kernel: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The zero-padded 3×3 convolution with ``kernel`` ``(O, 3, 3)`` of a ``min(height, 3) × min(width, 3)``
    map of ones: ``(O, ≤3, ≤3)``, its first/middle/last rows and columns those of the top/interior/bottom
    rows and left/interior/right columns of a ``height × width`` map."""
    ones = torch.ones(1, 1, min(height, 3), min(width, 3), dtype=kernel.dtype, device=kernel.device)
    return F.conv2d(ones, kernel[:, None], padding=1)[0]


def _add_border_bias(out: torch.Tensor, kernel: torch.Tensor) -> None:
    """Add, in place, what the zero-padded 3×3 convolution with ``kernel`` ``(O, 3, 3)`` of a map of ones
    gives on the border of ``out`` ``(B, O, H, W)`` *minus its interior value* (which the caller put in
    the convolution's bias). Only the outermost rows and columns change."""
    height, width = out.shape[-2:]
    response = _ones_response(kernel, height, width)
    if height < 3 or width < 3:  # no interior: the whole response, less the centre tap sum (in the bias)
        rows = [0] + [1] * (height - 2) + [2] if height >= 3 else list(range(height))
        cols = [0] + [1] * (width - 2) + [2] if width >= 3 else list(range(width))
        full = response[:, rows][:, :, cols]
        out += full - kernel.sum(dim=(1, 2))[:, None, None]
        return
    delta = response - response[:, 1:2, 1:2]  # (O, 3, 3), zero in the middle

    def row(index: int) -> torch.Tensor:  # (O, W): delta's row over a full image row
        middle = delta[:, index, 1:2].expand(-1, width - 2)
        return torch.cat([delta[:, index, :1], middle, delta[:, index, 2:]], dim=1)

    out[:, :, 0] += row(0)
    out[:, :, -1] += row(2)
    out[:, :, 1:-1, 0] += delta[:, 1, 0][:, None]
    out[:, :, 1:-1, -1] += delta[:, 1, 2][:, None]


def upsample_conv1x1_conv3x3_relu(
    x: torch.Tensor,
    weight1: torch.Tensor,
    bias1: torch.Tensor | None,
    weight3: torch.Tensor,
    bias3: torch.Tensor,
) -> torch.Tensor:
    """``relu(conv3x3(conv1x1(upsample×2(x))))``, the cheapest exact way for these channel counts.

    ``weight1`` ``(M, I, 1, 1)``, ``weight3`` ``(O, M, 3, 3)``; ``(B, I, H, W)`` → ``(B, O, 2H, 2W)``.
    With ``I < M`` the two convolutions are one 3×3 convolution ``I → O`` of the up-sampled input (fewer
    multiply-adds than ``M → O``) whose bias carries the 1×1 bias through the 3×3 weights, corrected on
    the border (:func:`_add_border_bias`). Otherwise the 1×1 convolution runs before the up-sampling.
    """
    mid, inp = weight1.shape[:2]
    if inp >= mid:
        return conv3x3_relu(upsample_conv1x1(x, weight1, bias1), weight3, bias3)
    merged = torch.einsum("omkl,mi->oikl", weight3, weight1[:, :, 0, 0])
    if bias1 is None:
        return conv3x3_relu(_upsample2(x), merged, bias3)
    kernel = torch.einsum("omkl,m->okl", weight3, bias1)  # the 1×1 bias seen through each 3×3 tap
    out = _conv3x3(_upsample2(x), merged, bias3 + kernel.sum(dim=(1, 2)))
    _add_border_bias(out, kernel)
    return out.relu_()


def _instance_stats(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and ``1 / sqrt(var + eps)`` of ``x``, both ``(B, C, 1, 1)``.

    Two passes (the sum, then the sum of squared deviations a few channels at a time in a reused
    buffer), each a cascade sum: as precise as torch's instance norm, and faster.
    """
    batch, channels, height, width = x.shape
    count = height * width
    rows = x.reshape(batch * channels, count)
    mean = rows.sum(dim=1, keepdim=True) / count
    squares = torch.empty_like(mean)
    step = max(1, _STATS_CHUNK // count)
    buffer = torch.empty((min(step, rows.shape[0]), count), dtype=x.dtype, device=x.device)
    for start in range(0, rows.shape[0], step):
        chunk = rows[start : start + step]
        deviations = buffer[: chunk.shape[0]]
        torch.sub(chunk, mean[start : start + step], out=deviations).square_()
        squares[start : start + step] = deviations.sum(dim=1, keepdim=True)
    rstd = torch.rsqrt(squares / count + eps)
    return mean.view(batch, channels, 1, 1), rstd.view(batch, channels, 1, 1)


def instance_norm_(x: torch.Tensor, eps: float) -> torch.Tensor:
    """Instance norm (no affine) of ``x`` ``(B, C, H, W)`` in place; returns ``x``."""
    mean, rstd = _instance_stats(x, eps)
    return torch.addcmul(-mean * rstd, x, rstd, out=x)


def instance_norm_cat(parts: list[torch.Tensor], eps: float) -> torch.Tensor:
    """Instance norm (no affine) of the channel concatenation of ``parts`` ``(B, C_i, H, W)`` (not
    modified): each part is normalised straight into its channels of the result."""
    batch, _, height, width = parts[0].shape
    channels = sum(part.shape[1] for part in parts)
    out = torch.empty((batch, channels, height, width), dtype=parts[0].dtype, device=parts[0].device)
    start = 0
    for part in parts:
        mean, rstd = _instance_stats(part, eps)
        stop = start + part.shape[1]
        torch.addcmul(-mean * rstd, part, rstd, out=out[:, start:stop])
        start = stop
    return out


def resize_maps(
    maps: torch.Tensor,
    side: int | tuple[int, int],
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """Maps ``(B, C, h, w)`` → ``(B, C, H, W)``: resize to the canvas they cover (``side``², or
    ``(rows, cols)`` for maps of part of the canvas), crop to ``input_size``, resize to ``original_size``
    (SAM's post-processing); a resize to the size a map already has is skipped (a bilinear resize to the
    same size is the identity)."""
    canvas = (side, side) if isinstance(side, int) else (int(side[0]), int(side[1]))
    if tuple(maps.shape[-2:]) != canvas:
        maps = F.interpolate(maps, canvas, mode="bilinear", align_corners=False)
    maps = maps[..., : input_size[0], : input_size[1]]
    if tuple(maps.shape[-2:]) != tuple(original_size):
        maps = F.interpolate(maps, tuple(original_size), mode="bilinear", align_corners=False)
    return maps.contiguous()
