"""Named option sets of automatic mask generation, and how given values become one :class:`AutomaticOptions`.

The options themselves (names, defaults, checks) are :class:`napari_sam.engine.types.AutomaticOptions`;
this module only resolves *which* values a run uses: the official defaults, then a preset, then the
values the caller gave.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ..types import AutomaticOptions

__all__ = ["OPTION_NAMES", "PRESETS", "auto_preset", "resolve_options"]

#: The option names, in the order of :class:`AutomaticOptions`'s fields.
OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(AutomaticOptions))

#: Named option sets. ``"nuclei"``: chosen for the shipped nano model on fluorescence nuclei by
#: ``benchmarks/bench_automatic.py tune`` (synthetic ``nuclei`` images, seeds 20000+; docs/benchmarks.md):
#: nano's IoU head and logits are less sharp than the official models' (lower IoU and stability
#: thresholds), touching nuclei give overlapping partial masks (suppression by mask overlap: a mask
#: mostly inside a better one goes), and background clicks give tiny or image-sized masks (area limits).
PRESETS: dict[str, dict[str, Any]] = {
    "nuclei": {
        "pred_iou_thresh": 0.5,
        "stability_score_thresh": 0.5,
        "box_nms_thresh": 1.0,
        "mask_nms_thresh": 0.5,
        "min_area": 50,
        "max_area_fraction": 0.02,
        "overlap": "score",
    },
}


def auto_preset(model: Any) -> str | None:
    """What ``preset="auto"`` means for ``model`` (a name, path or loaded model): ``"nuclei"`` for the
    shipped nano model (with the official thresholds its masks almost never survive), else ``None``
    (the official defaults)."""
    name = model if isinstance(model, str) else getattr(model, "name", None)
    return "nuclei" if name == "nano" else None


def resolve_options(preset: str | None = None, **options: Any) -> AutomaticOptions:
    """Options from the official defaults, then ``preset``, then the given (non-None) values.

    Raises
    ------
    ValueError
        An unknown preset or option name, or an invalid value.

    Examples
    --------
    >>> opts = resolve_options("nuclei", points_per_side=8, min_area=None)  # None: not given
    >>> opts.points_per_side, opts.min_area, opts.pred_iou_thresh
    (8, 50, 0.5)
    """
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be None or one of {sorted(PRESETS)}, got {preset!r}")
        values.update(PRESETS[preset])
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise ValueError(f"unknown automatic segmentation option(s) {unknown}; known: {sorted(OPTION_NAMES)}")
    values.update({k: v for k, v in options.items() if v is not None})
    return AutomaticOptions(**values)
