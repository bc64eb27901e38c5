"""mkdocs hook: fills the CLI reference with the real ``--help`` of every ``napari-sam`` subcommand.

A line ``<!-- napari-sam-help: SUBCOMMAND -->`` in a page (an empty SUBCOMMAND: the top-level command)
is replaced by a code block with that help text, so the page cannot drift from the parser.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

_MARKER = re.compile(r"^<!-- napari-sam-help:\s*([\w-]*)\s*-->$", re.MULTILINE)


def _help(command: str) -> str:
    from napari_sam.cli import build_parser

    os.environ["COLUMNS"] = "100"  # argparse wraps at the terminal width: make the page reproducible
    parser = build_parser()
    if not command:
        return parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command].format_help()
    raise ValueError(f"docs: no napari-sam subcommand {command!r}")


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return _MARKER.sub(lambda m: "```text\n" + _help(m.group(1)).rstrip() + "\n```", markdown)
