"""The options of automatic mask generation: :class:`AutomaticOptions`, checked once when made.

Which values a run uses (presets, the caller's values) is resolved by
:func:`napari_sam.engine.automatic.options.resolve_options`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import check_choice, check_field, check_flag, check_int, check_number

#: Largest prompt grid side accepted (a million single-point prompts per crop already takes hours).
MAX_POINTS_PER_SIDE = 1024

#: ``preset=`` values of automatic segmentation: ``"auto"`` (the model's own preset for AMG: ``"nuclei"``
#: for nano), a preset name, or None (the official thresholds).
PRESET_CHOICES: tuple[str | None, ...] = ("auto", "nuclei", None)

#: Who keeps a pixel several masks cover (:attr:`AutomaticOptions.overlap`).
OVERLAP_RULES = ("score", "area")


@dataclass(frozen=True)
class AutomaticOptions:
    """Options of the automatic mask generator, checked when made; the defaults are the official
    ``SamAutomaticMaskGenerator``'s.

    Attributes
    ----------
    points_per_side
        Grid points along each side of the image (``n × n`` prompts on the whole image), at most
        :data:`MAX_POINTS_PER_SIDE`.
    points_per_batch
        Prompts decoded together (memory vs speed; does not change the result).
    pred_iou_thresh
        Keep masks whose predicted IoU is above this, in [0, 1].
    stability_score_thresh
        Keep masks whose stability score is at least this, in [0, 1].
    stability_score_offset
        Logit offset of the two thresholds compared by the stability score.
    mask_threshold
        Logit above which a pixel belongs to a mask.
    box_nms_thresh
        Box IoU above which the lower-scoring of two masks of one crop is dropped, in [0, 1].
    crop_n_layers
        Extra layers of crops (layer ``i`` has ``2**i × 2**i`` crops), 0 = whole image only.
    crop_nms_thresh
        Box IoU for suppression across crops, in [0, 1].
    crop_overlap_ratio
        Overlap of neighbouring crops as a fraction of the shorter image side, in [0, 1).
    crop_n_points_downscale_factor
        Layer ``i`` uses ``points_per_side / factor**i`` points per side.
    min_mask_region_area
        Fill holes and remove islands smaller than this many pixels (0 = off).
    max_area_fraction
        Drop masks covering more than this fraction of their crop (1 = off; not an official option —
        useful against "background" masks in microscopy).
    min_area
        Drop masks with fewer pixels (0 = off; not an official option).
    point_in_mask
        Drop masks that do not contain the grid point that prompted them (not an official option;
        with models never trained on background clicks such masks are mostly spurious).
    mask_nms_thresh
        After the box suppression, drop a mask when its overlap with a higher-scoring kept mask
        (intersection over the smaller of the two) exceeds this (1 = off; not an official option).
        Unlike boxes, masks of touching round objects hardly overlap, while duplicates and parts
        of one object do.
    overlap
        Who keeps a pixel covered by several masks: ``"score"`` the higher predicted IoU, ``"area"``
        the smaller mask (a mask merging several objects cannot swallow them).

    Raises
    ------
    ValueError
        A value of the wrong type or outside its range, or a crop layer left without grid points.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0
    max_area_fraction: float = 1.0
    min_area: int = 0
    point_in_mask: bool = False
    mask_nms_thresh: float = 1.0
    overlap: str = "score"

    def __post_init__(self) -> None:
        check_field(self, "points_per_side", check_int, 1)
        if self.points_per_side > MAX_POINTS_PER_SIDE:
            raise ValueError(
                f"points_per_side must be an integer >= 1 and <= {MAX_POINTS_PER_SIDE} "
                f"({MAX_POINTS_PER_SIDE}² prompts per crop), got {self.points_per_side!r}"
            )
        check_field(self, "points_per_batch", check_int, 1)
        check_field(self, "crop_n_layers", check_int, 0)
        check_field(self, "crop_n_points_downscale_factor", check_int, 1)
        check_field(self, "min_mask_region_area", check_int, 0)
        check_field(self, "min_area", check_int, 0)
        check_field(self, "point_in_mask", check_flag)
        check_choice(self.overlap, "overlap", OVERLAP_RULES)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            check_field(self, name, check_number, 0.0, 1.0)
        check_field(self, "crop_overlap_ratio", check_number, 0.0, 1.0, open_high=True)
        check_field(self, "max_area_fraction", check_number, 0.0, 1.0, open_low=True)
        check_field(self, "mask_nms_thresh", check_number, 0.0, 1.0)
        check_field(self, "stability_score_offset", check_number, 0.0, math.inf, open_high=True)
        check_field(self, "mask_threshold", check_number, -math.inf, math.inf, open_low=True, open_high=True)
        last = int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers)
        if last < 1:
            raise ValueError(
                f"points_per_side={self.points_per_side} with crop_n_points_downscale_factor="
                f"{self.crop_n_points_downscale_factor} leaves no points on crop layer {self.crop_n_layers}"
            )
