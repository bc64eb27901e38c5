"""SAM 2's prompt encoder: SAM's, with box corners also accepted as labelled points.

SAM 2 passes a box to its decoder as two points, the top-left corner with label 2 and the bottom-right
corner with label 3, which get the learned corner embeddings (SAM only gives them to boxes). Everything
else — the weights, their state-dict keys, the box and mask paths — is SAM's :class:`PromptEncoder`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..prompt_encoder import PromptEncoder

#: Point labels of a box's top-left and bottom-right corners given as points.
BOX_TOP_LEFT_LABEL = 2
BOX_BOTTOM_RIGHT_LABEL = 3


class Sam2PromptEncoder(PromptEncoder):
    """Embeds point, box and mask prompts for :class:`~napari_sam.model.sam2.mask_decoder.Sam2MaskDecoder`.

    Point labels: 1 positive, 0 negative, 2 box top-left corner, 3 box bottom-right corner, -1 padding
    (any other label gets the positional encoding alone). The arguments are
    :class:`~napari_sam.model.prompt_encoder.PromptEncoder`'s, with the sam2.1 models' values as defaults.
    """

    def __init__(
        self,
        *,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__(
            embed_dim=embed_dim,
            image_embedding_size=image_embedding_size,
            input_image_size=input_image_size,
            mask_in_chans=mask_in_chans,
            activation=activation,
        )

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``(B, N, 2)`` points ``(x, y)`` and ``(B, N)`` labels → ``(B, N [+1], embed_dim)``."""
        emb = super()._embed_points(points, labels, pad)
        if pad:  # the padding point added above has label -1: no corner embedding
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        emb = emb + (labels == BOX_TOP_LEFT_LABEL)[..., None] * self._point_embedding(2)
        return emb + (labels == BOX_BOTTOM_RIGHT_LABEL)[..., None] * self._point_embedding(3)
