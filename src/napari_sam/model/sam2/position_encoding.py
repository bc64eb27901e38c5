"""Fixed sine/cosine position encoding of a feature grid (SAM 2's FPN neck and memory encoder)."""

from __future__ import annotations

import math

import torch
from torch import nn


class PositionEmbeddingSine(nn.Module):
    """Sine/cosine encoding of each cell's (row, column) position, normalised to the grid's extent.

    Half the channels encode the row, half the column; within each half, channel pairs ``(2i, 2i + 1)``
    are ``sin`` / ``cos`` of the position divided by ``temperature ** (2i / half)``. It has no weights.

    Parameters
    ----------
    num_pos_feats
        Output channels ``C`` (even): ``C / 2`` for rows, then ``C / 2`` for columns.
    temperature
        Base of the geometric progression of wavelengths.
    normalize
        Scale positions so the last row / column sits at ``scale`` (the official models use it).
    scale
        Extent of the normalised positions; ``2π`` when ``None``. Only with ``normalize``.
    """

    def __init__(
        self,
        num_pos_feats: int,
        *,
        temperature: float = 10000,
        normalize: bool = True,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        if scale is not None and not normalize:
            raise ValueError("scale is only used with normalize=True")
        self.half_channels = num_pos_feats // 2
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale
        self._grids: dict[tuple[int, int, str], torch.Tensor] = {}

    def _grid(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``(C, height, width)`` float32 encoding, computed once per size and device."""
        key = (height, width, str(device))
        cached = self._grids.get(key)
        if cached is not None:
            return cached
        rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
        cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
        if self.normalize:
            rows = rows / (rows[-1] + 1e-6) * self.scale
            cols = cols / (cols[-1] + 1e-6) * self.scale
        index = torch.arange(self.half_channels, dtype=torch.float32, device=device)
        wavelengths = self.temperature ** (
            2 * torch.div(index, 2, rounding_mode="floor") / self.half_channels
        )

        def waves(positions: torch.Tensor) -> torch.Tensor:
            phase = positions[:, None] / wavelengths  # (L, half)
            # channel 2i is sin, 2i + 1 is cos (of the same wavelength)
            return torch.stack((phase[:, 0::2].sin(), phase[:, 1::2].cos()), dim=2).flatten(1)

        row_code = waves(rows).T[:, :, None].expand(self.half_channels, height, width)
        col_code = waves(cols).T[:, None, :].expand(self.half_channels, height, width)
        grid = torch.cat((row_code, col_code), dim=0).contiguous()
        self._grids[key] = grid
        return grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, *, H, W)`` feature map → ``(B, C, H, W)`` float32 encoding of its grid (values only
        depend on ``H`` and ``W``)."""
        height, width = x.shape[-2], x.shape[-1]
        return self._grid(height, width, x.device)[None].expand(x.shape[0], -1, -1, -1)
