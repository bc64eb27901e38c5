"""The options of decoder-based automatic segmentation (AIS and APG): :class:`InstanceOptions`.

The defaults are micro-sam's (``InstanceSegmentationWithDecoder.generate`` for AIS,
``AutomaticPromptGenerator.generate`` for APG), so that a micro-sam model gives the labels a micro-sam
user knows.
"""

from __future__ import annotations

from dataclasses import dataclass

from .checks import check_choice, check_field, check_flag, check_int, check_number

#: What :func:`napari_sam.automatic` can run: ``"auto"`` (APG / AIS with an instance decoder, AMG
#: without), ``"ais"`` (the decoder's maps → seeded watershed), ``"apg"`` (the watershed's seeds → point
#: prompts for the mask decoder → suppression), ``"amg"`` (a grid of point prompts).
AUTOMATIC_MODES = ("auto", "ais", "apg", "amg")

#: Modes that need an instance decoder.
DECODER_MODES = ("ais", "apg")

#: micro-sam's smallest object kept, per mode, when ``min_size`` is not given.
DEFAULT_MIN_SIZE = {"ais": 0, "apg": 25}


def check_mode(value: object, name: str = "mode") -> str:
    """``value`` when it is one of :data:`AUTOMATIC_MODES`, or ValueError naming ``name``."""
    return check_choice(value, name, AUTOMATIC_MODES)


@dataclass(frozen=True)
class InstanceOptions:
    """How the instance decoder's three maps become labels; checked when made.

    The maps are per-pixel values in ``[0, 1]``: foreground probability, distance to the object's
    centre and distance to its boundary (both small inside an object, near its centre).

    Attributes
    ----------
    foreground_threshold
        A pixel is foreground when its foreground map value is above this, in [0, 1].
    center_distance_threshold
        Seeds are where the (smoothed) centre distance is below this …, in [0, 1].
    boundary_distance_threshold
        … and the (smoothed) boundary distance is below this, in [0, 1].
    foreground_smoothing
        Gaussian sigma (pixels) applied to the foreground map before thresholding (0 = off).
    distance_smoothing
        Gaussian sigma (pixels) applied to both distance maps before seeding (0 = off).
    min_size
        Objects with fewer pixels are removed; None: micro-sam's default for the mode
        (:data:`DEFAULT_MIN_SIZE`: 0 for AIS, 25 for APG).
    nms_threshold
        APG: a mask overlapping a better one by more than this is dropped, in [0, 1].
    intersection_over_min
        APG: measure that overlap as intersection over the smaller mask instead of IoU.
    multimask
        APG: decode three masks per seed and keep the one with the best predicted IoU.
    batch_size
        APG: seeds decoded together (memory vs speed; same result).

    Raises
    ------
    ValueError
        A value of the wrong type or outside its range, naming the option.
    """

    foreground_threshold: float = 0.5
    center_distance_threshold: float = 0.5
    boundary_distance_threshold: float = 0.5
    foreground_smoothing: float = 1.0
    distance_smoothing: float = 1.6
    min_size: int | None = None
    nms_threshold: float = 0.9
    intersection_over_min: bool = False
    multimask: bool = False
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in (
            "foreground_threshold",
            "center_distance_threshold",
            "boundary_distance_threshold",
            "nms_threshold",
        ):
            check_field(self, name, check_number, 0.0, 1.0)
        for name in ("foreground_smoothing", "distance_smoothing"):
            check_field(self, name, check_number, 0.0, 100.0)
        if self.min_size is not None:
            check_field(self, "min_size", check_int, 0)
        check_field(self, "intersection_over_min", check_flag)
        check_field(self, "multimask", check_flag)
        check_field(self, "batch_size", check_int, 1)

    def min_size_for(self, mode: str) -> int:
        """``min_size``, or micro-sam's default for ``mode`` (``"ais"`` or ``"apg"``) when it is None."""
        if self.min_size is not None:
            return int(self.min_size)
        return DEFAULT_MIN_SIZE[check_choice(mode, "mode", tuple(DEFAULT_MIN_SIZE))]


#: The option names of :class:`InstanceOptions`, in field order.
INSTANCE_OPTION_NAMES = (
    "foreground_threshold",
    "center_distance_threshold",
    "boundary_distance_threshold",
    "foreground_smoothing",
    "distance_smoothing",
    "min_size",
    "nms_threshold",
    "intersection_over_min",
    "multimask",
    "batch_size",
)

__all__ = [
    "AUTOMATIC_MODES",
    "DECODER_MODES",
    "DEFAULT_MIN_SIZE",
    "INSTANCE_OPTION_NAMES",
    "InstanceOptions",
    "check_mode",
]
