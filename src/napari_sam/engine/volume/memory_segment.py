""":func:`napari_sam.segment` on stacks with a SAM 2 model: the prompted objects followed with memory.

The glue between ``segment()``'s arguments and :func:`.memory_propagation.propagate_memory`: which of
its options apply to a SAM 2 model, and 4D stacks followed along one axis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ...model.sam2.sam2 import Sam2
from ..embed.sam2_frames import Sam2Frames
from ..preprocess import _check_dtype as check_dtype
from ..types import Prompts
from .memory_planes import is_plane_stack
from .memory_propagation import propagate_memory
from .seeds import RawPrompts

#: ``is_plane_stack``: whether segment() is given a 4D stack (then :func:`segment_planes`)
__all__ = ["is_plane_stack", "segment_planes", "segment_with_memory"]


#: segment()'s options that SAM 2 (memory propagation) takes, and the propagate_options keys it takes
_SAM2_PROPAGATE_OPTIONS = (
    "z_range",
    "t_range",
    "axis",
    "stop_after_absent",
    "corrections",
    "memory_dtype",
    "precision",
    "cache_dtype",
)


def segment_with_memory(
    image: Any,
    prompts: Prompts | RawPrompts,
    sam: Any,
    frames: Any,
    embedding: dict[str, Any],
    storage: dict[str, Any],
    propagate_options: dict[str, Any] | None,
) -> np.ndarray:
    """:func:`napari_sam.segment` on a stack with a SAM 2 model: the prompted objects tracked through
    the stack with memory (:func:`propagate_memory`); ``embedding`` / ``storage``: its preprocessing
    and cache keywords."""
    if embedding["tile"] is not None:
        raise ValueError(
            f"tile={embedding['tile']!r} does not apply to a SAM 2 model (frames fill its canvas)"
        )
    if embedding["object_size"] is not None:
        raise ValueError(
            f"object_size={embedding['object_size']!r} does not apply to a SAM 2 model: every frame is "
            "resized to its square canvas; leave it out"
        )
    if frames is not None and not isinstance(frames, Sam2Frames):
        raise TypeError(f"embeddings for a SAM 2 model must be Sam2Frames, got {type(frames).__name__}")
    options = dict(propagate_options or {})
    unknown = sorted(set(options) - set(_SAM2_PROPAGATE_OPTIONS))
    if unknown:
        raise ValueError(
            f"propagate_options {unknown} do not apply to a SAM 2 model; it takes "
            f"{', '.join(_SAM2_PROPAGATE_OPTIONS)}"
        )
    options["precision"] = _tracking_precision(embedding.get("precision", "auto"), options.get("precision"))
    result = propagate_memory(
        image,
        prompts,
        model=sam,
        frames=frames,
        cache=storage["cache"],
        overwrite=storage["overwrite"],
        normalize=embedding["normalize"],
        percentiles=embedding["percentiles"],
        contrast_limits=embedding["contrast_limits"],
        channel=embedding["channel"],
        channel_axis=embedding["channel_axis"],
        **options,
    )
    return result.labels


def _tracking_precision(given: str, option: str | None) -> str:
    """SAM 2 tracking's arithmetic from :func:`napari_sam.segment`'s ``precision`` (``"auto"`` and
    ``"fp32"``: float32, ``"bf16"``: bfloat16) and ``propagate_options["precision"]`` (which must agree)."""
    by_name = {"auto": None, "fp32": "float32", "bf16": "bfloat16"}
    if given not in by_name:
        raise ValueError(
            f"precision={given!r} does not apply to a SAM 2 model: 'auto' or 'fp32' track in float32, "
            "'bf16' in bfloat16"
        )
    implied = by_name[given]
    if implied is not None and option is not None and option != implied:
        raise ValueError(
            f"precision={given!r} and propagate_options['precision']={option!r} disagree: give one"
        )
    return option or implied or "float32"


#: segment()'s options that a 4D stack does not take, at their defaults (it only follows prompts)
_NOT_FOR_PLANES = {
    "masks": None,
    "point_objects": None,
    "mode": "auto",
    "propagate": True,
    "multimask": "auto",
    "batch_size": 32,
}


def segment_planes(image: Any, given: dict[str, Any]) -> np.ndarray:
    """:func:`napari_sam.segment` on a 4D stack ``(A0, A1, Y, X[, C])`` (``given``: its arguments):
    the prompted objects (``(N, 4)`` points, ``(M, 8)`` boxes) followed along
    ``propagate_options["axis"]`` (default 0) by a SAM 2 model (:func:`propagate_memory`); returns
    ``(A0, A1, Y, X)`` uint32 labels. Other modes are refused; with a SAM 1 model, the image is."""
    from ..embed.layout import image_layout
    from ..loading import is_sam2, load_any_model

    model, embeddings = given["model"], given["embeddings"]
    sam = getattr(embeddings, "model", None)
    if sam is None and (
        is_sam2(model) or (isinstance(model, (str, Path)) and Path(model).expanduser().is_file())
    ):
        sam = load_any_model(model, given["device"])  # a file: kept in memory, for a SAM 1 path too
    if not isinstance(sam, Sam2):  # SAM 1 models take 2D images and 3D stacks: the layout says so
        try:
            image_layout(image, given["channel_axis"], channel=given["channel"])
        except ValueError as exc:
            raise ValueError(
                f"{exc}; a SAM 2 model (model='sam2.1_hiera_tiny' …) follows the objects of a 4D stack "
                "(A0, A1, Y, X) along one axis (propagate_options={'axis': 0 or 1})"
            ) from None
    for name, default in _NOT_FOR_PLANES.items():
        value = given[name]
        if not (value is default or (type(value) is type(default) and value == default)):
            raise ValueError(f"{name}= does not apply to a 4D stack: only its prompts are followed (SAM 2)")
    if given["points"] is None and given["boxes"] is None:
        raise ValueError(
            f"a 4D stack of shape {np.shape(image)} needs prompts, points= (N, 4) or boxes= (M, 8), "
            "followed through it by a SAM 2 model; automatic segmentation takes 2D images and 3D stacks"
        )
    check_dtype(image if hasattr(image, "dtype") else np.asarray(image))
    names = ("normalize", "percentiles", "contrast_limits", "channel", "channel_axis", "tile", "object_size")
    embedding = {name: given[name] for name in names}
    storage = {"cache": given["cache"], "overwrite": given["overwrite"]}
    prompts = {"points": given["points"], "point_labels": given["point_labels"], "boxes": given["boxes"]}
    options = given["propagate_options"]
    return segment_with_memory(image, prompts, sam, embeddings, embedding, storage, options)
