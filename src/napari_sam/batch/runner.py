"""Running a batch: items, their outcome, and the loop that runs them here or on a dask.distributed cluster.

A batch is a list of :class:`BatchItem` (an input file and the output it makes). :func:`run_batch`
skips items whose output is already complete, runs the rest, records the failure of one item (with
its message) and goes on with the others, and returns a :class:`BatchSummary`. With
``scheduler=`` the items run as tasks on a dask.distributed cluster; the workers read the inputs and
write the outputs themselves, so inputs and outputs must be on storage every worker sees.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.steps import Progress
from ..errors import UsageError

__all__ = [
    "CONNECT_TIMEOUT",
    "UNPROMPTED",
    "BatchItem",
    "BatchSummary",
    "Done",
    "ProcessFn",
    "ProgressFn",
    "output_exists",
    "run_batch",
]

#: ``progress(done, total)``: called as the work of one item advances.
ProgressFn = Callable[[int, int], None]
#: ``process(item, progress)`` does one item's work and writes ``item.output``; it may return
#: ``"skipped"`` when there was nothing left to do, :data:`UNPROMPTED` when no prompt names the
#: item (nothing to do, not a failure), or a :class:`Done` with something to report.
ProcessFn = Callable[["BatchItem", "ProgressFn | None"], Any]
#: A job's answer for an item that no row of the prompt table names.
UNPROMPTED = "no prompts"
#: How long to try to reach a dask scheduler before giving up.
CONNECT_TIMEOUT = "10s"


@dataclass(frozen=True)
class BatchItem:
    """One unit of a batch: read ``source``, write ``output``."""

    source: Path
    output: Path

    @property
    def name(self) -> str:
        return self.source.name


@dataclass(frozen=True)
class Done:
    """A job's result for an item it did, with something to report about it.

    Attributes
    ----------
    empty
        Which prompted objects got no pixels (``"objects 4, 7 empty"``); the others were segmented.
    """

    empty: str = ""


@dataclass
class BatchSummary:
    """What a batch did: item names that were done now, skipped as already done, and failed (→ reason).

    ``empty`` names the items done (they are in ``ok`` too) where some prompted objects got no pixels
    (→ which ones); such an item is done, not failed.
    """

    ok: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    empty: dict[str, str] = field(default_factory=dict)
    unprompted: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when no item failed, else 1 (items without prompts do not count: see :meth:`exit_status`)."""
        return self.exit_status()

    def exit_status(self, strict: bool = False) -> int:
        """1 when an item failed, or with ``strict`` when an item had no prompts; else 0."""
        return 1 if self.failed or (strict and self.unprompted) else 0

    def text(self) -> str:
        done = f"{len(self.ok)} done" + (f" ({len(self.empty)} with empty objects)" if self.empty else "")
        parts = [done, f"{len(self.skipped)} skipped (already done)"]
        if self.unprompted:
            parts.append(f"{len(self.unprompted)} skipped (no prompts)")
        lines = [", ".join([*parts, f"{len(self.failed)} failed"])]
        if self.unprompted:
            lines.append("  no prompts (no row of the table names them): " + ", ".join(self.unprompted))
        lines += [f"  {name}: done ({what})" for name, what in self.empty.items()]
        lines += [f"  FAILED {name}: {reason}" for name, reason in self.failed.items()]
        return "\n".join(lines)


def _describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return text if isinstance(exc, (ValueError, OSError)) else f"{type(exc).__name__}: {text}"


def _run_item(
    process: ProcessFn,
    item: BatchItem,
    is_done: Callable[[BatchItem], bool] | None,
    progress: ProgressFn | None = None,
) -> tuple[str, str]:
    """Run one item; never raises (but for interrupts): ``("ok" | "skipped" | "failed", message)``.

    The message says why an item failed, or what to report about an item done (see :class:`Done`).
    """
    try:
        if is_done is not None and is_done(item):
            return "skipped", ""
        status = process(item, progress)
    except Exception as exc:
        return "failed", _describe(exc)
    if isinstance(status, Done):
        return "ok", status.empty
    return (status, "") if status in ("skipped", UNPROMPTED) else ("ok", "")


def output_exists(item: BatchItem) -> bool:
    """Default done test: the output exists (outputs are written atomically, so it is complete)."""
    return item.output.exists()


class _ItemProgress:
    """``progress(done, total)`` of the work inside one item: a second bar, below the batch's bar of
    files (a nested :class:`~napari_sam.engine.steps.Progress`), made at the first call, when the
    total is known.

    ``unit`` is what it counts; ``compute_embeddings`` sets it (``"tile"`` for a tiled image).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.unit = "slice"
        self.reporter: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self.reporter is None:
            self.reporter = Progress(True, total, unit=self.unit, what=f"  {self.name}", nested=True)
        self.reporter.update(done, total)

    def close(self) -> None:
        if self.reporter is not None:
            self.reporter.close()


def run_batch(
    items: Sequence[BatchItem],
    process: ProcessFn,
    *,
    is_done: Callable[[BatchItem], bool] | None = output_exists,
    scheduler: Any = None,
    progress: bool = True,
    desc: str = "files",
) -> BatchSummary:
    """Run ``process`` on every item not done yet; one item's failure does not stop the others.

    Parameters
    ----------
    items
        What to do; ``item.output`` is where ``process`` writes.
    process
        ``process(item, progress)``: does one item and writes its output; ``progress`` is None or a
        ``progress(done, total)`` callable for work inside the item. Must be picklable (a module-level
        function or a dataclass instance) when a ``scheduler`` is used.
    is_done
        ``is_done(item)``: True skips the item. Default: its output exists. None: never skip.
    scheduler
        None: a plain loop in this process. A dask.distributed scheduler address (``"tcp://host:8786"``),
        a ``distributed.Client`` or a cluster object (``LocalCluster`` …): every item becomes a task
        run by the cluster's workers. A ``process`` with a ``split(item)`` method may split an item
        into several jobs there: the first runs first, the others after it, side by side.
    progress
        Show a tqdm progress bar (on stderr).

    Returns
    -------
    BatchSummary
    """
    if scheduler is not None:
        return _run_distributed(items, process, is_done, scheduler, progress, desc)
    from tqdm.auto import tqdm

    summary = BatchSummary()
    with tqdm(total=len(items), desc=desc, unit="file", disable=not progress) as bar:
        for item in items:
            bar.set_postfix_str(item.name, refresh=True)
            inner = _ItemProgress(item.name) if progress else None
            try:
                status, message = _run_item(process, item, is_done, inner)
            finally:
                if inner is not None:
                    inner.close()
            _record(summary, item, status, message, bar)
            bar.update()
    return summary


def _record(summary: BatchSummary, item: BatchItem, status: str, message: str, bar: Any) -> None:
    if status == "ok":
        summary.ok.append(item.name)
        if message:
            summary.empty[item.name] = message
            bar.write(f"napari-sam: {item.name} done ({message})", file=sys.stderr)
    elif status == "skipped":
        summary.skipped.append(item.name)
    elif status == UNPROMPTED:
        summary.unprompted.append(item.name)
    else:
        summary.failed[item.name] = message
        bar.write(f"napari-sam: {item.name} failed: {message}", file=sys.stderr)


def _connect(scheduler: Any) -> tuple[Any, bool]:
    """``(client, close_it)`` for a scheduler address, Client or cluster."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise UsageError(
            "scheduler= needs dask.distributed: pip install 'napari-sam-pipeline[distributed]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    address = getattr(scheduler, "scheduler_address", scheduler)
    if not isinstance(address, str):
        raise TypeError(
            "scheduler must be an address string, a distributed.Client or a cluster, got "
            f"{type(scheduler).__name__}"
        )
    try:
        return Client(address, timeout=CONNECT_TIMEOUT), True
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the dask scheduler at {address}: {exc}") from exc


def _run_after(
    first: tuple[str, str], process: ProcessFn, item: BatchItem, is_done: Callable[[BatchItem], bool] | None
) -> tuple[str, str]:
    """A later part of an item: runs after its first part (which creates the output), unless that failed."""
    if first[0] == "failed":
        return "failed", first[1]
    return _run_item(process, item, is_done)


def _parts(process: ProcessFn, item: BatchItem) -> list[ProcessFn]:
    """The jobs one item is split into on a cluster (``process.split(item)``; default: one)."""
    split = getattr(process, "split", None)
    if split is None:
        return [process]
    try:
        return list(split(item)) or [process]
    except Exception:  # unreadable here: let the worker report it
        return [process]


def _combine(results: list[tuple[str, str]]) -> tuple[str, str]:
    failed = [message for status, message in results if status == "failed"]
    if failed:
        return "failed", failed[0]
    for quiet in ("skipped", UNPROMPTED):
        if all(status == quiet for status, _ in results):
            return quiet, ""
    return "ok", next((message for status, message in results if status == "ok" and message), "")


def _cancel(client: Any, futures: list[Any]) -> None:
    """Stop this batch's tasks on the cluster (those running finish their item; no new one starts)."""
    with contextlib.suppress(Exception):
        client.cancel(futures)


def _submit(
    client: Any,
    items: Sequence[BatchItem],
    process: ProcessFn,
    is_done: Callable[[BatchItem], bool] | None,
    owner: dict[Any, int],
) -> list[int]:
    """Submit every item's jobs to the cluster; fills ``owner`` (future → item index) as it goes, so
    that an interrupt meanwhile can cancel what was submitted. Returns the number of jobs per item."""
    tag = os.urandom(4).hex()
    expected = [0] * len(items)
    for i, item in enumerate(items):
        first, *rest = _parts(process, item)
        head = client.submit(_run_item, first, item, is_done, None, pure=False, key=f"napari-sam-{tag}-{i}-0")
        owner[head] = i
        for j, job in enumerate(rest, start=1):
            key = f"napari-sam-{tag}-{i}-{j}"
            owner[client.submit(_run_after, head, job, item, is_done, pure=False, key=key)] = i
        expected[i] = 1 + len(rest)
    return expected


def _collect(
    owner: dict[Any, int], expected: list[int], items: Sequence[BatchItem], summary: BatchSummary, bar: Any
) -> None:
    """Record each item in ``summary`` once all its jobs have finished, in the order they finish."""
    from distributed import as_completed

    results: list[list[tuple[str, str]]] = [[] for _ in items]
    for future in as_completed(list(owner)):
        i = owner[future]
        try:
            result = future.result()
        except Exception as exc:  # the task itself died (worker lost, unpicklable job …)
            result = ("failed", f"task failed on the cluster: {_describe(exc)}")
        results[i].append(result)
        if len(results[i]) == expected[i]:
            _record(summary, items[i], *_combine(results[i]), bar)
            bar.update()


def _in_item_order(summary: BatchSummary, items: Sequence[BatchItem]) -> BatchSummary:
    """``summary`` with every list in the order of ``items`` (a cluster finishes them in any order)."""
    order = {item.name: i for i, item in enumerate(items)}
    summary.ok.sort(key=order.__getitem__)
    summary.skipped.sort(key=order.__getitem__)
    summary.unprompted.sort(key=order.__getitem__)
    summary.failed = dict(sorted(summary.failed.items(), key=lambda kv: order[kv[0]]))
    summary.empty = dict(sorted(summary.empty.items(), key=lambda kv: order[kv[0]]))
    return summary


def _run_distributed(
    items: Sequence[BatchItem],
    process: ProcessFn,
    is_done: Callable[[BatchItem], bool] | None,
    scheduler: Any,
    progress: bool,
    desc: str,
) -> BatchSummary:
    client, close = _connect(scheduler)  # first: it explains a missing dask.distributed
    from tqdm.auto import tqdm

    summary = BatchSummary()
    owner: dict[Any, int] = {}
    try:
        expected = _submit(client, items, process, is_done, owner)
        with tqdm(total=len(items), desc=desc, unit="file", disable=not progress) as bar:
            _collect(owner, expected, items, summary, bar)
    except KeyboardInterrupt:
        _cancel(client, list(owner))
        raise
    finally:
        if close:
            client.close()
    return _in_item_order(summary, items)
