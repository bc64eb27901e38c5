"""mkdocs hooks of the documentation site.

* A line ``<!-- napari-sam-help: SUBCOMMAND -->`` in a page (an empty SUBCOMMAND: the top-level
  command) is replaced by a code block with that help text, so the page cannot drift from the parser.
* Sphinx cross-reference roles in docstrings (``:func:`name```, ``:class:`~a.b.C```) are rendered as
  code, linked to the object's entry when it is on the same page.
"""

from __future__ import annotations

import argparse
import os
import re
from typing import Any

_MARKER = re.compile(r"^<!-- napari-sam-help:\s*([\w-]*)\s*-->$", re.MULTILINE)
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


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


def _role(match: re.Match[str], html: str) -> str:
    tilde, target = match.groups()
    text = target.rsplit(".", 1)[-1] if tilde else target
    for anchor in (target, f"napari_sam.{target}", f"napari_sam.{target.rsplit('.', 1)[-1]}"):
        if f'id="{anchor}"' in html:
            return f'<a href="#{anchor}"><code>{text}</code></a>'
    return f"<code>{text}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    return _ROLE.sub(lambda m: _role(m, html), html)
