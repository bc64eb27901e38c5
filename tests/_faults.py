"""Fault injection for tests: Python children that are killed with SIGKILL (``kill -9``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

#: Prepend to a child's code: ``die()`` kills the child at once, as ``kill -9`` would.
DIE = "import os as _os, signal as _signal\ndef die():\n    _os.kill(_os.getpid(), _signal.SIGKILL)\n"


def child_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a child: one torch thread (same results as the parent), private weight cache."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "NAPARI_SAM_CACHE": str(tmp_path / "weights-cache")}


def spawn(code: str, tmp_path: Path, **popen: object) -> subprocess.Popen:
    """Run ``code`` (dedented, with :data:`DIE`) in a new Python process; stdout and stderr piped."""
    return subprocess.Popen(
        [sys.executable, "-c", DIE + textwrap.dedent(code)],
        env=child_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[arg-type]
    )


def read_line(proc: subprocess.Popen, expected: str, timeout: float = 60.0) -> None:
    """Wait until the child prints the line ``expected`` (fails with its stderr if it ends first)."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == expected:
            return
        assert time.monotonic() < deadline, f"no {expected!r} from the child in {timeout} s"
    proc.wait()
    raise AssertionError(f"the child ended ({proc.returncode}) before {expected!r}: {proc.stderr.read()}")


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 60.0) -> None:
    """SIGKILL the child as soon as ``ready()``; it must still be running then."""
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, f"the child ended before it could be killed: {proc.stderr.read()}"
            assert time.monotonic() < deadline, f"not ready to kill within {timeout} s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str, str]:
    """Wait for the child: ``(returncode, stdout, stderr)``; killed after ``timeout``."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


def assert_killed(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """The child killed itself with ``die()``."""
    code, _, err = finish(proc, timeout)
    assert code == -signal.SIGKILL, f"expected death by SIGKILL, got {code}: {err}"
