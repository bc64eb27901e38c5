"""Prompt encoder of Segment Anything: points, boxes and a mask → sparse and dense embeddings.

All coordinates here are SAM's: ``(x, y)`` pixel indices in the resized (model input) frame.
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from .common import LayerNorm2d

#: Label used for padding points; they get the ``not_a_point_embed`` embedding.
PAD_LABEL = -1


class PositionEmbeddingRandom(nn.Module):
    """Positional encoding with random Fourier features (a fixed Gaussian projection)."""

    #: ``(2, num_pos_feats)`` the projection (a buffer, in the state dict)
    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        if scale is None or scale <= 0.0:
            scale = 1.0
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` coordinates in ``[0, 1]`` → ``(..., 2 * num_pos_feats)`` features."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an ``(H, W)`` grid of cell centres → ``(C, H, W)``."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=matrix.dtype) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=matrix.dtype) + 0.5) / w
        grid = torch.stack(
            [xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1
        )  # (H, W, 2) as (x, y)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode ``(B, N, 2)`` pixel coordinates ``(x, y)`` of an ``(H, W)`` canvas → ``(B, N, C)``."""
        coords = coords_input.clone()
        coords[..., 0] = coords[..., 0] / image_size[1]
        coords[..., 1] = coords[..., 1] / image_size[0]
        return self._encode(coords.to(torch.float))


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for the mask decoder.

    Parameters
    ----------
    embed_dim
        Prompt embedding dimension (256 for the official models).
    image_embedding_size
        ``(H, W)`` of the image embedding grid (64, 64).
    input_image_size
        ``(H, W)`` of the padded model input (1024, 1024).
    mask_in_chans
        Hidden channels of the mask down-scaling network (16).
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = (input_image_size[0], input_image_size[1])
        self.image_embedding_size = (image_embedding_size[0], image_embedding_size[1])
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid, ``(1, embed_dim, H, W)``.

        It depends only on a fixed buffer, so it is computed once and reused until that buffer
        changes (new weights loaded, another device or dtype).
        """
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        key = (matrix.device, matrix.dtype, matrix.data_ptr(), matrix._version)
        cached = self.__dict__.get("_dense_pe_cache")
        if cached is None or cached[0] != key:
            with torch.no_grad():
                pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            cached = (key, pe)
            self.__dict__["_dense_pe_cache"] = cached
        return cached[1]

    def _point_embedding(self, kind: int) -> torch.Tensor:
        """``(1, embed_dim)`` the learned embedding of point kind ``kind`` (see ``point_embeddings``)."""
        return cast(nn.Embedding, self.point_embeddings[kind]).weight

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``(B, N, 2)`` points ``(x, y)`` and ``(B, N)`` labels → ``(B, N [+1], embed_dim)``."""
        points = points + 0.5  # pixel index → pixel centre
        if pad:
            pad_point = torch.zeros((points.shape[0], 1, 2), device=points.device)
            pad_label = torch.full((labels.shape[0], 1), PAD_LABEL, device=labels.device, dtype=labels.dtype)
            points = torch.cat([points, pad_point], dim=1)
            labels = torch.cat([labels, pad_label], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        is_pad = (labels == PAD_LABEL)[..., None]
        emb = torch.where(is_pad, torch.zeros_like(emb), emb)
        emb = emb + is_pad * self.not_a_point_embed.weight
        emb = emb + (labels == 0)[..., None] * self._point_embedding(0)
        emb = emb + (labels == 1)[..., None] * self._point_embedding(1)
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``(B, 4)`` boxes ``(x0, y0, x1, y1)`` → ``(B, 2, embed_dim)`` corner embeddings."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_type = torch.cat([self._point_embedding(2), self._point_embedding(3)])
        return emb + corner_type

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``(B, 1, 4H, 4W)`` mask logits → ``(B, embed_dim, H, W)``."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _batch_size(
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        Parameters
        ----------
        points
            ``(coords (B, N, 2) float (x, y), labels (B, N) int)`` or None. Labels: 1 positive,
            0 negative, -1 padding.
        boxes
            ``(B, 4)`` float ``(x0, y0, x1, y1)`` or None.
        masks
            ``(B, 1, 4H, 4W)`` float logits or None.

        Returns
        -------
        sparse
            ``(B, N_tokens, embed_dim)``.
        dense
            ``(B, embed_dim, H, W)``.
        """
        bs = self._batch_size(points, boxes, masks)
        device = self.no_mask_embed.weight.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], 1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
