"""The checks every option goes through: an integer, a number in a range, a flag, one of a few names.

Each check returns the value in its one kept form (``int``, ``float``, ``bool``, the name) or raises
ValueError with a message that names the option and repeats the value given::

    batch_size must be an integer >= 1, got 0
    iou_threshold must be a number in [0.0, 1.0], got 2
    connected must be True or False, got 'yes'
    overlap must be 'score' or 'area', got 'size'

The option dataclasses (frozen) run them on their fields in ``__post_init__`` with :func:`check_field`,
which keeps the checked form.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["check_choice", "check_field", "check_flag", "check_int", "check_number", "keep", "one_of"]


def check_int(value: Any, name: str, low: int = 1) -> int:
    """``value`` as an int, or ValueError (``"<name> must be an integer >= <low>, got …"``).

    A bool is not an integer here; numpy integers are.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_number(
    value: Any,
    name: str,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """``value`` as a float from ``low`` to ``high``, or ValueError.

    Each end is included unless ``open_low`` / ``open_high``; so an infinite end admits infinity
    when it is closed (``max_area_change`` in ``[1.0, inf]``: no limit) and not when it is open
    (``mask_threshold`` in ``(-inf, inf)``: finite). NaN, bools and strings are never numbers.
    The message is ``"<name> must be a number in [<low>, <high>), got <value>"``, with brackets
    showing which ends are included.
    """
    is_number = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating))
    number = float(value) if is_number else math.nan  # NaN fails both comparisons
    above = number > low if open_low else number >= low
    below = number < high if open_high else number <= high
    if not (above and below):
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        raise ValueError(f"{name} must be a number in {left}{low}, {high}{right}, got {value!r}")
    return number


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool when it is a Python or numpy bool, or ValueError."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def one_of(choices: Sequence[Any]) -> str:
    """``"'a', 'b' or 'c'"``: the choices as a message lists them."""
    names = [repr(c) for c in choices]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """``value`` when it is one of the names ``choices``, or ValueError (``"<name> must be 'a' or 'b'"``)."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be {one_of(choices)}, got {value!r}")
    return value


def keep(owner: Any, name: str, value: Any) -> None:
    """Set field ``name`` of the frozen dataclass ``owner`` to its checked form ``value``."""
    object.__setattr__(owner, name, value)


def check_field(owner: Any, name: str, check: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Run ``check(owner.name, name, *args, **kwargs)`` and :func:`keep` the checked form it returns.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Options:
    ...     ratio: float = 0.5
    ...
    ...     def __post_init__(self) -> None:
    ...         check_field(self, "ratio", check_number, 0.0, 1.0, open_high=True)
    >>> Options(1).ratio
    Traceback (most recent call last):
    ...
    ValueError: ratio must be a number in [0.0, 1.0), got 1
    >>> Options(0).ratio
    0.0
    """
    keep(owner, name, check(getattr(owner, name), name, *args, **kwargs))
