"""Figures as strict JSON: NaN and infinities (empty bands, open intervals) become ``null``."""

from __future__ import annotations

import math
from typing import Any


def strict(value: Any) -> Any:
    """``value`` with every non-finite float, inside dicts, lists and tuples too, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value
