"""The masks automatic mask generation keeps between its steps, without holding them at full resolution.

A :class:`MaskCandidates` is a table of masks (one row per mask: predicted IoU, stability, box, area,
prompt point, crop) plus what rebuilds each mask at the image size when a step needs the pixels:
its low-resolution logits and the :class:`CropRun` they were decoded on, or — after the small-region
clean-up — a bool window around the mask. Rebuilding happens in chunks of at most
:data:`UPSCALE_BUDGET` float elements.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..preprocess import upscale_logits
from .grid import CropBox

__all__ = ["UPSCALE_BUDGET", "CropRun", "MaskCandidates", "coord_dtype", "upscale_to_crop"]

#: Float elements of up-sampled logits held at once (bounds the memory of the full-resolution steps).
UPSCALE_BUDGET = 1 << 25


@dataclass
class CropRun:
    """One crop's geometry in the model.

    Attributes
    ----------
    crop
        Where the crop lies in the image.
    input_size
        ``(rows, cols)`` of the crop resized inside the model's square input.
    image_size
        Side of the model's square input.
    """

    crop: CropBox
    input_size: tuple[int, int]
    image_size: int


def coord_dtype(device: torch.device) -> torch.dtype:
    """float64 for point coordinates, except on Apple's MPS, which has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


def upscale_to_crop(low_res: torch.Tensor, run: CropRun) -> torch.Tensor:
    """``(N, h, w)`` low-resolution logits → ``(N, rows, cols)`` float32 logits at the crop's size."""
    return upscale_logits(
        low_res[:, None], input_size=run.input_size, original_size=run.crop.shape, image_size=run.image_size
    )[:, 0]


@dataclass
class MaskCandidates:
    """Kept masks: per-mask records plus how to rebuild each mask at full resolution.

    Boxes are Segment Anything's inclusive ``(x0, y0, x1, y1)`` in the image frame (see
    :mod:`napari_sam.engine.automatic.masks`); points are ``(x, y)`` in the image frame.

    Attributes
    ----------
    image_shape
        ``(rows, cols)`` of the image.
    runs
        The crops, indexed by ``crop_index``.
    iou, stability
        ``(N,)`` float32 predicted IoU and stability score.
    boxes
        ``(N, 4)`` int64 inclusive ``(x0, y0, x1, y1)``.
    areas
        ``(N,)`` int64 pixel counts.
    points
        ``(N, 2)`` float64 (float32 on MPS) ``(x, y)`` of the prompt that found each mask.
    crop_index
        ``(N,)`` int64: the crop each mask was decoded on.
    low_res
        ``(N, h, w)`` float32 low-resolution logits, or None once ``windows`` hold the masks.
    mask_threshold
        Logit above which a pixel of ``low_res`` (up-sampled) belongs to the mask.
    windows
        After the clean-up: per mask, where its window lies in the image and the ``(h, w)`` bool window.
    """

    image_shape: tuple[int, int]
    runs: list[CropRun]
    iou: torch.Tensor
    stability: torch.Tensor
    boxes: torch.Tensor
    areas: torch.Tensor
    points: torch.Tensor
    crop_index: torch.Tensor
    low_res: torch.Tensor | None
    mask_threshold: float
    windows: list[tuple[tuple[slice, slice], np.ndarray]] | None = None

    @classmethod
    def empty(
        cls, image_shape: tuple[int, int], runs: list[CropRun], device: torch.device, mask_threshold: float
    ) -> MaskCandidates:
        """No masks, on ``device``."""
        return cls(
            image_shape=image_shape,
            runs=runs,
            iou=torch.zeros(0, device=device),
            stability=torch.zeros(0, device=device),
            boxes=torch.zeros((0, 4), dtype=torch.int64, device=device),
            areas=torch.zeros(0, dtype=torch.int64, device=device),
            points=torch.zeros((0, 2), dtype=coord_dtype(device), device=device),
            crop_index=torch.zeros(0, dtype=torch.int64, device=device),
            low_res=None,
            mask_threshold=mask_threshold,
        )

    @classmethod
    def concat(
        cls,
        parts: Sequence[MaskCandidates],
        image_shape: tuple[int, int],
        runs: list[CropRun],
        mask_threshold: float,
        device: torch.device,
    ) -> MaskCandidates:
        """The masks of ``parts`` (each still holding its low-resolution logits) one after another."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty(image_shape, runs, device, mask_threshold)
        return replace(
            parts[0],
            runs=runs,
            iou=torch.cat([p.iou for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            boxes=torch.cat([p.boxes for p in parts]),
            areas=torch.cat([p.areas for p in parts]),
            points=torch.cat([p.points for p in parts]),
            crop_index=torch.cat([p.crop_index for p in parts]),
            low_res=torch.cat([p.low_res for p in parts if p.low_res is not None]),
        )

    def __len__(self) -> int:
        return int(self.iou.shape[0])

    def take(self, index: torch.Tensor) -> MaskCandidates:
        """The masks ``index`` (``(K,)`` int64), in that order."""
        index = index.to(self.iou.device)
        windows = None if self.windows is None else [self.windows[i] for i in index.tolist()]
        return replace(
            self,
            iou=self.iou[index],
            stability=self.stability[index],
            boxes=self.boxes[index],
            areas=self.areas[index],
            points=self.points[index],
            crop_index=self.crop_index[index],
            low_res=None if self.low_res is None else self.low_res[index],
            windows=windows,
        )

    def chunk_size(self) -> int:
        """Masks rebuilt at once so that at most :data:`UPSCALE_BUDGET` elements are held."""
        side = max(run.image_size for run in self.runs) if self.runs else 1
        per_mask = max(side * side, self.image_shape[0] * self.image_shape[1])
        return max(1, UPSCALE_BUDGET // per_mask)

    def dense(self, index: torch.Tensor) -> torch.Tensor:
        """``(C, H, W)`` bool masks ``index`` (in that order) at the image size, on the device."""
        device = self.iou.device
        out = torch.zeros((int(index.shape[0]), *self.image_shape), dtype=torch.bool, device=device)
        if self.windows is not None:
            for j, i in enumerate(index.tolist()):
                where, window = self.windows[i]
                out[j][where] = torch.from_numpy(window).to(device)
            return out
        assert self.low_res is not None  # one of the two storages is always set
        crops = self.crop_index[index]
        for c in torch.unique(crops).tolist():
            rows = torch.nonzero(crops == c).flatten()
            run = self.runs[c]
            logits = upscale_to_crop(self.low_res[index[rows]], run)
            box = run.crop
            out[rows, box.y0 : box.y1, box.x0 : box.x1] = logits > self.mask_threshold
        return out

    def iter_dense(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(positions, masks)`` chunks of the masks in ``order``: ``(C,)`` positions in ``order`` and
        ``(C, H, W)`` bool masks."""
        step = self.chunk_size()
        for start in range(0, int(order.shape[0]), step):
            positions = torch.arange(start, min(start + step, int(order.shape[0])), device=order.device)
            yield positions, self.dense(order[positions])
