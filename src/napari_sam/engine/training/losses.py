"""The losses of interactive SAM-style training, on soft masks of ``N`` objects with ``K`` candidates each.

Per mask: ``focal_weight × focal + dice``; the IoU head regresses :func:`mask_iou` (the true IoU of each
candidate) by squared error. Logits are ``(N, K, H, W)``, targets ``(N, 1, H, W)`` float in {0, 1}.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["dice_loss", "focal_loss", "mask_iou"]


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels.

    ``(N, K, H, W)`` logits and ``(N, 1, H, W)`` target → ``(N, K)``.
    """
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    weight = alpha * target + (1 - alpha) * (1 - target)
    return (weight * ce * (1 - p_t) ** gamma).mean(dim=(-1, -2))


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Dice`` of soft masks: ``(N, K, H, W)``, ``(N, 1, H, W)`` → ``(N, K)``."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(-1, -2))
    total = prob.sum(dim=(-1, -2)) + target.sum(dim=(-1, -2))
    return 1.0 - (2.0 * inter + 1.0) / (total + 1.0)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of thresholded masks (logit > 0, target > 0.5): ``(N, K, H, W)``, ``(N, 1, H, W)`` → ``(N, K)``;
    1 where both are empty."""
    pred = logits > 0
    gt = target > 0.5
    inter = (pred & gt).sum(dim=(-1, -2)).float()
    union = (pred | gt).sum(dim=(-1, -2)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
