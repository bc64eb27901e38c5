"""The options of 3D propagation: :class:`PropagationOptions`, how each slice is prompted from the previous
one and when an object stops; checked once when made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .checks import check_field, check_flag, check_int, check_number, keep

#: What a propagation step may prompt the decoder with, from the object on the previous slice.
PROPAGATION_PROMPT_KINDS = ("box", "points", "mask")


@dataclass(frozen=True)
class PropagationOptions:
    """How each slice is prompted from the previous one, and when an object stops.

    Attributes
    ----------
    prompt
        Prompt kinds taken from the previous slice's mask, any of ``"box"`` (its bounding box grown
        by ``box_margin``), ``"points"`` (``n_points`` interior points) and ``"mask"`` (the previous
        prediction's low-resolution logits; a seed's binary mask on the first step). One name or a
        sequence of them; kept as a tuple.
    n_points
        Interior points sampled when ``"points"`` is used, >= 1.
    box_margin
        Growth of the box on each side, as a fraction of its extent along that axis (at least 1 pixel
        when > 0), so that a growing object is not cut by its previous box.
    multimask
        Decode 3 candidates and keep the best-scoring one (else a single mask).
    iou_threshold
        Stop when the predicted IoU falls below this, in [0, 1].
    min_area
        Stop when the mask (the part not owned by other objects) has fewer pixels than this.
    max_area_change
        Stop when the area grows or shrinks by more than this factor from one slice to the next, >= 1.
    max_centroid_shift
        Stop when the centroid moves by more than this fraction of the previous mask's equivalent
        diameter (``2 * sqrt(area / pi)``), > 0.
    min_contrast
        Stop when the object's contrast on the image (mean intensity inside the mask minus the
        slice's 5th percentile) falls below this fraction of the highest contrast it had on the slices
        so far, in [0, 1]; 0 turns the rule off. Out-of-focus light makes objects visible some slices
        beyond their end (the decoder keeps finding them there); 0.5 cuts them about where their signal
        halves. Needs the image (not only its embeddings).
    min_intensity
        Drop the pixels of each propagated mask whose intensity lies less than this fraction of the
        way from the object's surroundings to the object itself, both measured on its seed slice
        (medians inside the seed mask and in a ring around it; see
        :class:`~napari_sam.engine.volume.steps.SeedIntensity`); holes this opens inside the mask are
        filled back. Bright and dark objects are both handled; an
        object not clearly brighter or darker than its ring is left untrimmed. In [0, 1); 0 turns it
        off. Out-of-focus light makes the slices near an object's end show a blurred, dimmer and
        larger copy of it, and the decoder follows that halo; 0.5 keeps what is at least
        half-way bright. Needs the image.
    clip_to_box
        With ``"box"`` prompts: drop the parts of a prediction outside its box (the decoder often
        spills past small or faint objects); growth and drift from slice to slice are then at most
        ``box_margin`` per side, so it suits objects that shrink away from their seed (off by default).
    connected
        Keep only the parts of a prediction (8-connected regions) that overlap the object on the
        previous slice: pieces that leaked onto other objects are dropped before the checks.
    """

    prompt: str | Sequence[str] = ("box", "mask")
    n_points: int = 1
    box_margin: float = 0.0
    multimask: bool = False
    iou_threshold: float = 0.5
    min_area: int = 4
    max_area_change: float = 3.0
    max_centroid_shift: float = 0.5
    min_contrast: float = 0.5
    min_intensity: float = 0.5
    clip_to_box: bool = False
    connected: bool = True

    def __post_init__(self) -> None:
        kinds = (self.prompt,) if isinstance(self.prompt, str) else tuple(self.prompt)
        unknown = [k for k in kinds if k not in PROPAGATION_PROMPT_KINDS]
        if not kinds or unknown or len(set(kinds)) != len(kinds):
            raise ValueError(
                f"prompt must be a non-empty selection of {PROPAGATION_PROMPT_KINDS} without repeats, got "
                f"{self.prompt if isinstance(self.prompt, str) else kinds!r}"
            )
        keep(self, "prompt", kinds)
        check_field(self, "n_points", check_int, 1)
        check_field(self, "min_area", check_int, 1)
        check_field(self, "box_margin", check_number, 0.0, math.inf)
        check_field(self, "iou_threshold", check_number, 0.0, 1.0)
        check_field(self, "max_area_change", check_number, 1.0, math.inf)
        check_field(self, "max_centroid_shift", check_number, 0.0, math.inf, open_low=True)
        check_field(self, "min_contrast", check_number, 0.0, 1.0)
        check_field(self, "min_intensity", check_number, 0.0, 1.0, open_high=True)
        for name in ("multimask", "clip_to_box", "connected"):
            check_field(self, name, check_flag)
