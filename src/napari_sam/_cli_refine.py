"""The work of ``napari-sam segment IMAGE --masks LABELS`` (its parser is in :mod:`napari_sam.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError


def cmd_refine_masks(args: argparse.Namespace) -> int:
    """``segment IMAGE --masks LABELS``: refine the labels of one image (segment(masks=)), ids kept."""
    from .api import segment
    from .io import image_name, read_image, write_labels

    if len(args.inputs) != 1:
        raise UsageError("--masks refines the labels of one image: give one INPUT")
    options = {
        "channel": args.channel,
        "object_size": args.object_size,
        "device": args.device,
        "precision": args.precision,
    }
    refined = segment(read_image(args.inputs[0]), masks=read_image(args.masks), model=args.model, **options)
    out = Path(args.out) / f"{image_name(args.inputs[0])}_labels.{args.format or 'tif'}"
    out.parent.mkdir(parents=True, exist_ok=True)  # as the batch run makes its output folder
    print(write_labels(out, refined, overwrite=args.overwrite))
    return 0
