"""Type checking is part of the test run: mypy on the packages that pyproject.toml's [tool.mypy] lists.

mypy runs in a subprocess from the repository root with that configuration (``files``, the incremental
cache in ``.mypy_cache``), as ``python -m mypy`` would on the command line; the test fails with mypy's
report when it finds an error. mypy comes with the ``dev`` extra.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_errors() -> None:
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if result.returncode != 0:
        if "No module named mypy" in result.stderr:
            pytest.fail('mypy is not installed: pip install -e ".[dev]"', pytrace=False)
        pytest.fail(f"mypy (exit status {result.returncode}):\n{result.stdout}{result.stderr}", pytrace=False)
