"""Driving the engine's step generators: they yield ``(done, total)`` and return their result."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from .embeddings import Cancelled

T = TypeVar("T")


def drain_steps(
    steps: Generator[tuple[int, int], None, T],
    *,
    progress: Callable[[int, int], Any] | None = None,
    cancel: threading.Event | None = None,
    what: str = "run",
) -> T:
    """Run ``steps`` to its end and return its result, reporting each ``(done, total)`` to ``progress``.

    With ``cancel`` set, the generator is closed before its next step and :class:`Cancelled`
    (``"<what> cancelled"``) is raised.
    """
    while True:
        if cancel is not None and cancel.is_set():
            steps.close()
            raise Cancelled(f"{what} cancelled")
        try:
            done, total = next(steps)
        except StopIteration as stop:
            return stop.value
        if progress is not None:
            progress(done, total)
