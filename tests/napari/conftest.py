"""GUI tests need napari, a Qt binding and a display; without them they are skipped, not failed.

The display comes from pytest-xvfb (a dev dependency) when Xvfb is installed (``.ci/run`` installs it);
``QT_QPA_PLATFORM=offscreen`` is not enough for napari's OpenGL canvas.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest

pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[dev]')")
pytest.importorskip("qtpy", reason="no Qt binding")


@functools.cache
def _qt_problem() -> str | None:
    """Why a Qt window cannot open here (None when it can); probed once in a subprocess because Qt
    aborts the process when its platform plugin cannot start."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no display (install xvfb: apt-get install xvfb libxcb-icccm4 libxcb-keysyms1)"
    probe = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"Qt probe failed: {exc}"
    if done.returncode != 0:
        return "Qt cannot open a window: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    return None


@pytest.fixture
def gui() -> None:
    """Skip the test when no Qt window can be opened."""
    problem = _qt_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture
def messages(monkeypatch):
    """Every notification the plugin shows: (level, text)."""
    import napari.utils.notifications as notifications

    seen: list[tuple[str, str]] = []
    monkeypatch.setattr(notifications, "show_info", lambda text: seen.append(("info", text)))
    monkeypatch.setattr(notifications, "show_warning", lambda text: seen.append(("warning", text)))
    return seen
