"""Messages in the viewer instead of traceback dialogs."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from ..errors import NapariSamError

LOG = logging.getLogger("napari_sam")

#: errors that are the user's to fix: shown as a warning, no traceback
USER_ERRORS = (NapariSamError, ValueError, TypeError, FileNotFoundError, NotImplementedError)


def tell(viewer: Any, text: str, *, warning: bool = False) -> None:
    """Show ``text`` in the viewer's status bar and as a notification."""
    from napari.utils.notifications import show_info, show_warning

    if viewer is not None:
        viewer.status = text
    (show_warning if warning else show_info)(text)


@contextlib.contextmanager
def reported(viewer: Any, what: str) -> Iterator[None]:
    """Turn an error raised in the block into a viewer message ``"<what>: <error>"``.

    Errors the user can fix (wrong layer, bad prompt, …) become warnings; anything else is logged with
    its traceback and shown as a warning too, so no data is lost and the viewer keeps working.
    """
    try:
        yield
    except USER_ERRORS as exc:
        tell(viewer, f"{what}: {exc}", warning=True)
    except Exception as exc:
        LOG.exception("%s failed", what)
        tell(viewer, f"{what} failed: {type(exc).__name__}: {exc}", warning=True)


def failure_text(what: str, exc: BaseException) -> str:
    """``"<what> failed: <reason>"`` for an error a worker raised (the type named unless it is the user's)."""
    reason = str(exc) if isinstance(exc, (NapariSamError, ValueError)) else f"{type(exc).__name__}: {exc}"
    return f"{what} failed: {reason}"


def show_progress(bar: Any, step: tuple[int, int]) -> None:
    """Set a ``QProgressBar`` to ``step = (done, total)`` as a worker yields it."""
    done, total = step
    bar.setRange(0, max(total, 1))
    bar.setValue(done)


def unwrap_viewer(viewer: Any) -> Any:
    """The viewer itself when napari hands plugins a public-only proxy of it.

    The widgets keep layers as dictionary keys and compare them by identity; proxies are new objects on
    every access, so the widgets work on the real viewer (through its public API only).
    """
    return getattr(viewer, "__wrapped__", viewer)
