"""A range ``(min, max)`` of a synthetic config: checked from user input, and drawn from."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: ``(min, max)`` floats, ``min <= max``; a fixed value is ``(v, v)``
Range = tuple[float, float]


def as_range(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> Range:
    """``value`` (a number or a pair) → ``(lo, hi)`` floats, checked; errors name ``name``.

    Raises
    ------
    ValueError
        Not a number or a pair of numbers, not finite, ``min > max``, or outside ``[low, high]``.
    """
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        pair = (float(value), float(value))
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise ValueError(f"{name}: expected a number or a (min, max) pair, got {value!r}") from None
        if len(items) != 2:
            raise ValueError(f"{name}: expected a (min, max) pair, got {value!r}")
        try:
            pair = (float(items[0]), float(items[1]))
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected numbers, got {value!r}") from None
    lo, hi = pair
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: values must be finite, got {value!r}")
    if lo > hi:
        raise ValueError(f"{name}: min {lo:g} is larger than max {hi:g}")
    if low is not None and lo < low:
        raise ValueError(f"{name}: values must be >= {low:g}, got {value!r}")
    if high is not None and hi > high:
        raise ValueError(f"{name}: values must be <= {high:g}, got {value!r}")
    return pair


def draw(rng: np.random.Generator, r: Range) -> float:
    """One value drawn uniformly from ``r`` (one draw from ``rng``)."""
    return float(rng.uniform(r[0], r[1]))


def draw_log(rng: np.random.Generator, r: Range) -> float:
    """One value drawn log-uniformly from ``r`` (bounds clipped to >= 1e-6; one draw from ``rng``)."""
    lo, hi = max(r[0], 1e-6), max(r[1], 1e-6)
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
