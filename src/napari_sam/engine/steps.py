"""The one progress / cancel protocol of the engine.

Long work (embedding a stack, automatic segmentation, propagation, training) is written as a *step
generator*: it yields ``(done, total)`` after each step and returns its result. One driver,
:func:`run_steps`, runs such a generator for scripts; napari's ``thread_worker`` runs the same generator
in the viewer (yielded values → progress bar, return value → result).

Everywhere in the package ``progress=`` means the same thing (:data:`ProgressLike`):

- ``False`` or ``None``: no report;
- ``True``: a tqdm progress bar on stderr;
- a callable ``progress(done, total)``: called after every step (and once with ``(0, total)`` first).
  A callable with a ``unit`` attribute (a progress bar of its own) has the unit of counting
  (``"slice"``, ``"tile"``, ``"step"`` …) written there before its first call.

``cancel=`` is a :class:`threading.Event` (anything with ``is_set()``); once it is set, the work stops
before its next step and :class:`~napari_sam.errors.Cancelled` is raised.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from typing import Any, TypeVar

from ..errors import Cancelled

T = TypeVar("T")

#: What ``progress=`` accepts everywhere (see the module docstring).
ProgressLike = bool | Callable[[int, int], Any] | None

__all__ = ["Progress", "ProgressLike", "run_steps"]


class Progress:
    """Reports ``done`` of ``total`` to what ``progress=`` asked for, and checks ``cancel``.

    Parameters
    ----------
    progress
        See :data:`ProgressLike`.
    total
        Number of units the work counts to.
    cancel
        A :class:`threading.Event` (or anything with ``is_set()``), or None.
    unit
        What one unit is (``"slice"``, ``"tile"``, ``"step"`` …), for bars and messages.
    what
        What the work is (``"embedding"``, ``"propagation"`` …), for the bar and the
        :class:`~napari_sam.errors.Cancelled` message.
    nested
        With ``progress=True``: the bar sits below another one (an outer loop's, such as a batch's bar
        of files) and is removed when closed.

    Raises
    ------
    TypeError
        ``progress`` is neither a bool, None nor a callable; ``cancel`` has no ``is_set()``.
    """

    def __init__(
        self,
        progress: ProgressLike,
        total: int,
        *,
        cancel: Any = None,
        unit: str = "step",
        what: str = "run",
        nested: bool = False,
    ) -> None:
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(f"progress must be a bool or a callable(done, total), got {progress!r}")
        if cancel is not None and not callable(getattr(cancel, "is_set", None)):
            raise TypeError(f"cancel must be a threading.Event (or have is_set()), got {cancel!r}")
        self.total, self.done, self.cancel, self.unit, self.what = int(total), 0, cancel, unit, what
        self.nested = nested
        self.callback = progress if callable(progress) and not isinstance(progress, bool) else None
        self.bar: Any = None
        if progress is True:
            from tqdm.auto import tqdm

            below = {"leave": False, "position": 1} if nested else {}
            self.bar = tqdm(total=self.total, desc=what, unit=unit, **below)
        if self.callback is not None:
            if hasattr(self.callback, "unit"):
                with contextlib.suppress(AttributeError, TypeError):
                    self.callback.unit = unit
            self.callback(0, self.total)

    def check(self) -> None:
        """Raise :class:`~napari_sam.errors.Cancelled` when ``cancel`` is set."""
        if self.cancel is not None and self.cancel.is_set():
            # a total of 0: nothing counted yet (run_steps before the first step), so no "after 0 of 0"
            so_far = f" after {self.done} of {self.total} {self.unit}s" if self.total else ""
            raise Cancelled(f"{self.what} cancelled{so_far}")

    def advance(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        if n > 0:
            self.update(self.done + n, self.total)

    def update(self, done: int, total: int) -> None:
        """Set the count to ``done`` of ``total`` (a step generator's yielded pair)."""
        done, total = int(done), int(total)
        if done == self.done and total == self.total:
            return
        if self.bar is not None:
            if total != self.total:
                self.bar.total = total
            if self.nested:  # an inner bar is redrawn at every step (tqdm's rate limit would skip short ones)
                self.bar.n = done
                self.bar.refresh()
            else:
                self.bar.update(done - self.done)
        self.done, self.total = done, total
        if self.callback is not None:
            self.callback(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_steps(
    steps: Generator[tuple[int, int], None, T],
    *,
    progress: ProgressLike = None,
    cancel: Any = None,
    what: str = "run",
    unit: str = "step",
) -> T:
    """Run the step generator ``steps`` to its end and return its result.

    Each yielded ``(done, total)`` is reported to ``progress`` (see :data:`ProgressLike`). With
    ``cancel`` set, the generator is closed before its next step and
    :class:`~napari_sam.errors.Cancelled` (``"<what> cancelled …"``) is raised.

    Examples
    --------
    >>> def count(n):
    ...     for i in range(n):
    ...         yield i + 1, n
    ...     return "done"
    >>> seen = []
    >>> run_steps(count(3), progress=lambda done, total: seen.append(done))
    'done'
    >>> seen  # (0, total) first, then every step
    [0, 1, 2, 3]
    """
    checker = Progress(None, 0, cancel=cancel, unit=unit, what=what)
    reporter: Progress | None = None
    try:
        while True:
            try:
                checker.check()
            except Cancelled:
                steps.close()
                raise
            try:
                done, total = next(steps)
            except StopIteration as stop:
                return stop.value
            checker.done, checker.total = done, total
            if reporter is None and progress not in (None, False):
                reporter = Progress(progress, total, unit=unit, what=what)
            if reporter is not None:
                reporter.update(done, total)
    finally:
        if reporter is not None:
            reporter.close()
