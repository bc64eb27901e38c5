"""Mask decoder of Segment Anything: two-way transformer, hypernetwork MLPs and IoU head."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from .common import MLP, LayerNorm2d
from .transformer import ImageTokens, TwoWayTransformer

#: the layers of ``MaskDecoder.output_upscaling``: conv-transpose, norm, activation, conv-transpose, act.
_Upscaling = tuple[nn.ConvTranspose2d, LayerNorm2d, nn.Module, nn.ConvTranspose2d, nn.Module]


def output_upscaling(transformer_dim: int, activation: type[nn.Module]) -> nn.Sequential:
    """The two transposed convolutions that take image tokens ``(B, C, H, W)`` to ``(B, C / 8, 4H, 4W)``
    (SAM 1 and SAM 2 alike; the official key names ``output_upscaling.0/1/3``)."""
    return nn.Sequential(
        nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
        LayerNorm2d(transformer_dim // 4),
        activation(),
        nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
        activation(),
    )


def hypernetwork_mlps(transformer_dim: int, num_mask_tokens: int) -> nn.ModuleList:
    """One 3-layer MLP per mask token: its output token ``(C,)`` → mask weights ``(C / 8,)``."""
    return nn.ModuleList(
        MLP(
            input_dim=transformer_dim,
            hidden_dim=transformer_dim,
            output_dim=transformer_dim // 8,
            num_layers=3,
        )
        for _ in range(num_mask_tokens)
    )


class MaskDecoder(nn.Module):
    """Predict masks and their IoU from an image embedding and prompt embeddings.

    Parameters
    ----------
    transformer_dim
        Channel dimension ``D`` of embeddings and tokens (256).
    transformer
        The :class:`TwoWayTransformer`.
    num_multimask_outputs
        Masks predicted for ambiguous prompts (3); one more token gives the single-mask output.
    iou_head_depth, iou_head_hidden_dim
        Shape of the IoU prediction MLP.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = output_upscaling(transformer_dim, activation)
        self.output_hypernetworks_mlps = hypernetwork_mlps(transformer_dim, self.num_mask_tokens)
        self.iou_prediction_head = MLP(
            input_dim=transformer_dim,
            hidden_dim=iou_head_hidden_dim,
            output_dim=self.num_mask_tokens,
            num_layers=iou_head_depth,
        )

    def forward(
        self,
        image_embeddings: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor | None,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor | None,
        multimask_output: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode masks.

        Parameters
        ----------
        image_embeddings
            ``(1, D, H, W)`` (shared by all prompts) or ``(B, D, H, W)``; or :meth:`prepare_image`'s
            result (then ``image_pe`` and ``dense_prompt_embeddings`` are not used).
        image_pe
            ``(1, D, H, W)`` dense positional encoding.
        sparse_prompt_embeddings
            ``(B, N, D)``.
        dense_prompt_embeddings
            ``(B, D, H, W)``.
        multimask_output
            True: the 3 ambiguity-aware masks; False: the single-mask output.

        Returns
        -------
        masks
            ``(B, K, 4H, 4W)`` logits, ``K`` = 3 or 1.
        iou_pred
            ``(B, K)``.
        """
        selected = slice(1, None) if multimask_output else slice(0, 1)
        return self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            mask_tokens=selected,
        )

    def prepare_image(
        self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, dense_prompt_embeddings: torch.Tensor
    ) -> ImageTokens:
        """The prompt-independent part of decoding one image, to reuse across calls.

        Parameters
        ----------
        image_embeddings, image_pe
            ``(1, D, H, W)``.
        dense_prompt_embeddings
            ``(1, D, H, W)`` (or a stride-0 broadcast of one), the same for every prompt decoded with
            the result — i.e. the "no mask" embedding.
        """
        src = image_embeddings + dense_prompt_embeddings[:1]
        return self.transformer.prepare(src, image_pe)

    def predict_masks(
        self,
        image_embeddings: torch.Tensor | ImageTokens,
        image_pe: torch.Tensor | None,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor | None,
        mask_tokens: slice = slice(None),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks ``(B, T, 4H, 4W)`` and IoU predictions ``(B, T)`` of the ``mask_tokens`` outputs.

        ``image_embeddings`` may be :meth:`prepare_image`'s result; ``image_pe`` and
        ``dense_prompt_embeddings`` are then unused.
        """
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings], dim=1)

        if isinstance(image_embeddings, ImageTokens):
            hs, image_tokens = self.transformer(image_embeddings, None, tokens)
            return self._outputs(hs, image_tokens, image_embeddings.grid, mask_tokens)
        if dense_prompt_embeddings is None or image_pe is None:
            raise ValueError("image_pe and dense_prompt_embeddings are needed with a tensor image embedding")
        if image_embeddings.shape[0] not in (1, b):
            raise ValueError(
                f"image_embeddings batch ({image_embeddings.shape[0]}) must be 1 or match the "
                f"number of prompts ({b})"
            )
        if dense_prompt_embeddings.shape[0] > 1 and dense_prompt_embeddings.stride(0) == 0:
            # the same dense embedding for every prompt (no mask input): keep one image copy, the
            # transformer broadcasts it until the image tokens start to differ per prompt
            dense_prompt_embeddings = dense_prompt_embeddings[:1]
        src = image_embeddings + dense_prompt_embeddings
        h, w = src.shape[-2:]

        hs, image_tokens = self.transformer(src, image_pe, tokens)
        return self._outputs(hs, image_tokens, (h, w), mask_tokens)

    def _outputs(
        self, hs: torch.Tensor, image_tokens: torch.Tensor, grid: tuple[int, int], mask_tokens: slice
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks and IoU from the transformer's tokens ``(B, Nt, D)`` and image tokens ``(B, HW, D)``."""
        b, (h, w) = hs.shape[0], grid
        iou_pred = self.iou_prediction_head(hs[:, 0, :])[:, mask_tokens]
        indices = range(self.num_mask_tokens)[mask_tokens]
        hyper_in = torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in indices], dim=1
        )  # (B, K, C')
        masks = self._upscale_masks(image_tokens.expand(b, -1, -1), (h, w), hyper_in)
        return masks, iou_pred

    def _upscale_masks(
        self, image_tokens: torch.Tensor, grid: tuple[int, int], hyper_in: torch.Tensor
    ) -> torch.Tensor:
        """``output_upscaling`` and the hypernetwork product, computed channels-last.

        A stride-2, 2×2 transposed convolution is one matrix product per pixel followed by a
        rearrangement; doing both up-scalings as matrix products on ``(B, H, W, …, C)`` tensors and
        rearranging only the final ``K`` masks is the same mathematics as the official
        ``nn.Sequential`` (whose modules and weights are used), at a fraction of the memory traffic.

        Parameters
        ----------
        image_tokens
            ``(B, H*W, D)`` image tokens from the transformer.
        grid
            ``(H, W)``.
        hyper_in
            ``(B, K, C')`` hypernetwork outputs.

        Returns
        -------
        torch.Tensor
            ``(B, K, 4H, 4W)`` mask logits.
        """
        up1, norm, act1, up2, act2 = cast(_Upscaling, tuple(self.output_upscaling))
        assert up1.bias is not None and up2.bias is not None  # built with bias (the checkpoints have it)
        b, (h, w), k = image_tokens.shape[0], grid, hyper_in.shape[1]
        c1, c2 = up1.out_channels, up2.out_channels
        w1 = up1.weight.permute(2, 3, 1, 0).reshape(4 * c1, up1.in_channels)
        x = F.linear(image_tokens, w1, up1.bias.repeat(4)).view(b, h * w * 4, c1)  # (i, j, p, q)
        x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, norm.eps))
        w2 = up2.weight.permute(2, 3, 1, 0).reshape(4 * c2, c1)
        x = act2(F.linear(x, w2, up2.bias.repeat(4)).view(b, h * w * 16, c2))  # (i, j, p, q, p2, q2)
        masks = x @ hyper_in.transpose(1, 2)  # (B, pixels, K)
        masks = masks.view(b, h, w, 2, 2, 2, 2, k).permute(0, 7, 1, 3, 5, 2, 4, 6)
        return masks.reshape(b, k, 4 * h, 4 * w)
