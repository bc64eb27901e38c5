"""``napari-sam segment --model <SAM 2>``: what a SAM 2 model takes, checked before any file is written.

A SAM 2 model (a ``sam2.1_hiera_*`` name or a weights file holding SAM 2 weights) follows the
prompted objects of a stack with its memory (:func:`napari_sam.segment` does the work); automatic
mode, ``--masks`` and 2D images are usage errors that name ``--model``. The parser is in
:mod:`napari_sam.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError

__all__ = ["check_sam2_segment", "is_sam2_model", "sam2_names"]


def sam2_names() -> tuple[str, ...]:
    """The SAM 2.1 model names ``--model`` takes for ``segment``."""
    from .model.sam2.configs import SAM2_CONFIGS

    return tuple(SAM2_CONFIGS)


def is_sam2_model(model: str) -> bool:
    """Whether ``--model`` names a SAM 2 model: a SAM 2.1 name, or a file of SAM 2 weights (read to
    tell; an unreadable file is left to the usual loading errors)."""
    from .model.sam2.configs import SAM2_CONFIGS

    if model in SAM2_CONFIGS:
        return True
    path = Path(model).expanduser()
    if not path.is_file():
        return False
    from .model.checkpoint import is_sam2_state_dict, read_checkpoint

    try:
        state, _ = read_checkpoint(path)
    except Exception:  # the batch run reports the file's own error
        return False
    return is_sam2_state_dict(state)


def check_sam2_segment(args: argparse.Namespace) -> bool:
    """For ``segment``: True when ``--model`` is a SAM 2 model and the inputs suit it.

    Raises
    ------
    UsageError
        With a SAM 2 ``--model``: ``--auto``, ``--masks``, no ``--boxes`` / ``--points``, an input that
        is not a stack, ``--no-propagate`` or ``--object-size``.
    """
    if not is_sam2_model(args.model):
        return False
    named = f"--model {args.model}"
    if args.auto:
        raise UsageError(
            f"{named} is a SAM 2 model: it follows prompted objects through stacks; automatic "
            "segmentation (--auto) needs a SAM 1 --model (nano, vit_b, micro-sam's models …)"
        )
    if args.masks:
        raise UsageError(f"{named} is a SAM 2 model: refining --masks needs a SAM 1 --model")
    if not args.boxes and not args.points:
        raise UsageError(f"{named} is a SAM 2 model: give the objects to follow with --boxes / --points")
    if args.propagate is False:
        raise UsageError(f"{named} is a SAM 2 model: it always follows objects through the stack")
    if args.object_size is not None:
        raise UsageError(f"{named} is a SAM 2 model: --object-size does not apply (frames fill its canvas)")
    _check_stacks(args, named)
    return True


def _check_stacks(args: argparse.Namespace, named: str) -> None:
    """Every input is a stack (read lazily; a channel axis as ``--channel`` sees it)."""
    from .batch.inputs import expand_inputs
    from .engine.embed.layout import image_layout
    from .io import read_image

    if getattr(args, "scheduler", None):
        return  # the workers read the files
    for path in expand_inputs(args.inputs):
        try:
            layout = image_layout(read_image(path), channel=args.channel)
        except (OSError, ValueError):
            continue  # the batch run reports the file's own error
        if not layout.is_volume:
            raise UsageError(
                f"{named} is a SAM 2 model: it follows objects through stacks, and {path.name} is a 2D "
                f"image {layout.shape}; segment 2D images with a SAM 1 --model (nano, vit_b …)"
            )
