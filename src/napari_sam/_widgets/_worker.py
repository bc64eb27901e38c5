"""Running a progress-yielding generator in a napari worker for a panel with Run / Cancel / progress."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ._messages import show_progress


def _run(steps: Generator[tuple[int, int], None, Any]) -> Generator[tuple[int, int], None, Any]:
    """A generator function for ``create_worker`` (it needs a function, not a generator)."""
    return (yield from steps)


def start_steps(
    panel: Any,
    steps: Generator[tuple[int, int], None, Any],
    *,
    on_done: Callable[[Any], None],
    on_error: Callable[[BaseException], None],
    on_finished: Callable[[], None],
    on_aborted: Callable[[], None] | None = None,
) -> Any:
    """Run ``steps`` (yielding ``(done, total)``, returning the result) in a napari worker.

    ``panel`` has ``run_button``, ``cancel_button``, ``progress`` (a ``QProgressBar``, set up by the
    caller) and ``worker``: progress goes to the bar, the buttons are switched for the run, and
    ``panel.worker`` holds the started worker (``on_finished`` should clear it). Returns the worker.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(_run, steps, _start_thread=False)
    worker.yielded.connect(lambda step: show_progress(panel.progress, step))
    worker.returned.connect(on_done)
    worker.errored.connect(on_error)
    if on_aborted is not None:
        worker.aborted.connect(on_aborted)
    worker.finished.connect(on_finished)
    panel.worker = worker
    panel.run_button.setEnabled(False)
    panel.cancel_button.setEnabled(True)
    panel.progress.setVisible(True)
    worker.start()
    return worker
