"""The one progress / cancel protocol: run_steps and Progress."""

from __future__ import annotations

import threading

import pytest

from napari_sam.engine.steps import Progress, run_steps
from napari_sam.errors import Cancelled


def _count(n: int, seen: list[int]):
    for i in range(n):
        seen.append(i)
        yield i + 1, n
    return "done"


def test_progress_gets_zero_first_then_every_step():
    calls: list[tuple[int, int]] = []
    assert run_steps(_count(3, []), progress=lambda d, t: calls.append((d, t))) == "done"
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]


def test_cancel_before_the_first_step_says_so_without_a_count():
    # the total is not known before the first step: no "after 0 of 0 slices"
    cancel, seen = threading.Event(), []
    cancel.set()
    with pytest.raises(Cancelled, match=r"^propagation cancelled$"):
        run_steps(_count(3, seen), cancel=cancel, what="propagation", unit="slice")
    assert seen == []


def test_cancel_during_the_run_closes_the_generator_and_counts():
    cancel, seen = threading.Event(), []

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            cancel.set()

    steps = _count(5, seen)
    with pytest.raises(Cancelled, match=r"^training cancelled after 2 of 5 steps$"):
        run_steps(steps, progress=stop_after_two, cancel=cancel, what="training")
    assert seen == [0, 1]
    assert steps.gi_frame is None  # closed


def test_progress_refuses_what_it_cannot_report_to():
    with pytest.raises(TypeError, match="progress must be"):
        Progress("yes", 3)
    with pytest.raises(TypeError, match="cancel must be"):
        Progress(None, 3, cancel=3)
