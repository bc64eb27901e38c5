"""Batches of files: embed or segment many images, resumable, locally or on a dask.distributed cluster.

A batch is a list of :class:`BatchItem` (an input file and the output it makes). :func:`run_batch`
skips items whose output is already complete, runs the rest, records the failure of one item (with
its message) and goes on with the others, and returns a :class:`BatchSummary`. With
``scheduler=`` the items run as tasks on a dask.distributed cluster; the workers read the inputs and
write the outputs themselves, so inputs and outputs must be on storage every worker sees.

:func:`embed_files` and :func:`segment_files` are the batches behind ``napari-sam embed`` and
``napari-sam segment``; :func:`read_prompts_csv` reads their prompt tables. Every labels output of
:func:`segment_files` gets a record beside it (:func:`record_path`, written by :func:`write_output`)
naming its input: that is how an output is told from an input (:func:`foreign_output`). The record
also holds how the labels were made (the input's fingerprint, the prompts, mode, model and
options), so that labels count as done only for the same request (:func:`outdated_output`).
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import hashlib
import json
import os
import re
import shutil
import sys
import uuid
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ._version import __version__
from .errors import EmptyObjectsWarning, UsageError
from .io import (
    OUTPUT_RECORD_SUFFIX,
    find_images,
    image_name,
    is_ome_zarr,
    output_record,
    read_image,
    write_labels,
)

__all__ = [
    "BatchItem",
    "BatchSummary",
    "Done",
    "EmbedJob",
    "PromptTable",
    "SegmentJob",
    "UsageError",
    "cache_path",
    "embed_files",
    "foreign_output",
    "input_fingerprint",
    "model_identity",
    "outdated_output",
    "prompts_digest",
    "read_prompts_csv",
    "record_path",
    "run_batch",
    "segment_files",
    "write_output",
]

#: ``progress(done, total)``: called as the work of one item advances.
ProgressFn = Callable[[int, int], None]
#: ``process(item, progress)`` does one item's work and writes ``item.output``; it may return
#: ``"skipped"`` when there was nothing left to do, :data:`UNPROMPTED` when no prompt names the
#: item (nothing to do, not a failure), or a :class:`Done` with something to report.
ProcessFn = Callable[["BatchItem", "ProgressFn | None"], Any]
#: A job's answer for an item that no row of the prompt table names.
UNPROMPTED = "no prompts"

CACHE_SUFFIX = ".embeddings.zarr"
#: How long to try to reach a dask scheduler before giving up.
CONNECT_TIMEOUT = "10s"


# ---------------------------------------------------------------------------------------------- runner


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
            inner = _InnerBar(item.name) if progress else None
            try:
                status, message = _run_item(process, item, is_done, inner)
            finally:
                if inner is not None:
                    inner.close()
            _record(summary, item, status, message, bar)
            bar.update()
    return summary


class _InnerBar:
    """A second progress bar for the work inside one item, created on the first call.

    ``unit`` is what it counts; ``compute_embeddings`` sets it (``"tile"`` for a tiled image).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.unit = "slice"
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=f"  {self.name}", unit=self.unit, leave=False, position=1)
        self.bar.n = done
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def _run_distributed(
    items: Sequence[BatchItem],
    process: ProcessFn,
    is_done: Callable[[BatchItem], bool] | None,
    scheduler: Any,
    progress: bool,
    desc: str,
) -> BatchSummary:
    client, close = _connect(scheduler)  # first: it explains a missing dask.distributed
    from distributed import as_completed
    from tqdm.auto import tqdm

    summary = BatchSummary()
    tag = os.urandom(4).hex()
    try:
        owner: dict[Any, int] = {}
        results: list[list[tuple[str, str]]] = [[] for _ in items]
        expected = [0] * len(items)
        for i, item in enumerate(items):
            first, *rest = _parts(process, item)
            head = client.submit(
                _run_item, first, item, is_done, None, pure=False, key=f"napari-sam-{tag}-{i}-0"
            )
            owner[head] = i
            for j, job in enumerate(rest, start=1):
                key = f"napari-sam-{tag}-{i}-{j}"
                owner[client.submit(_run_after, head, job, item, is_done, pure=False, key=key)] = i
            expected[i] = 1 + len(rest)
        with tqdm(total=len(items), desc=desc, unit="file", disable=not progress) as bar:
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
    except KeyboardInterrupt:
        _cancel(client, list(owner))
        raise
    finally:
        if close:
            client.close()
    order = {item.name: i for i, item in enumerate(items)}
    summary.ok.sort(key=order.__getitem__)
    summary.skipped.sort(key=order.__getitem__)
    summary.unprompted.sort(key=order.__getitem__)
    summary.failed = dict(sorted(summary.failed.items(), key=lambda kv: order[kv[0]]))
    summary.empty = dict(sorted(summary.empty.items(), key=lambda kv: order[kv[0]]))
    return summary


# ---------------------------------------------------------------------------------------------- items


def _check_output_folder(folder: Path, what: str, sources: Sequence[Path] = ()) -> Path:
    """Create ``folder`` if needed and check that files can be written in it.

    A folder that is one of ``sources`` or lies inside one (an OME-Zarr input, say) is refused before
    anything is created: napari-sam never writes into an input.
    """
    _refuse_folder_in_inputs(folder, sources, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the {what} folder {folder}: {exc.strerror or exc}") from exc
    if not folder.is_dir():
        raise UsageError(f"the {what} path {folder} is not a folder")
    probe = folder / f".napari-sam-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write to the {what} folder {folder}: {exc.strerror or exc}") from exc
    return folder


def _comparable(path: Path) -> Path:
    """``path`` resolved (it need not exist), in the case the file system compares names in."""
    return Path(os.path.normcase(str(path.expanduser().resolve())))


def _refuse_folder_in_inputs(folder: Path, sources: Sequence[Path], what: str) -> None:
    """A :class:`UsageError` when ``folder`` is one of ``sources`` or lies inside one."""
    for source in sources:
        how = _conflict(folder, source, _identity(source))
        if how is not None and not how.startswith("holds"):  # a folder holding inputs is fine
            where = f"is the input {source}" if how == "is one of the inputs" else how
            raise UsageError(
                f"the {what} folder {folder} {where}; napari-sam never writes into an input: "
                "choose a folder outside it"
            )


def _unique_names(sources: Sequence[Path]) -> None:
    seen: dict[str, Path] = {}
    for source in sources:
        name = image_name(source)
        if name in seen:
            raise UsageError(
                f"inputs {seen[name]} and {source} would write the same output name {name!r}; "
                "rename one or run them separately"
            )
        seen[name] = source


def _input_list(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Any]:
    """``inputs`` as a list: one path (a ``str`` or ``Path``) is a list of one."""
    if isinstance(inputs, (str, os.PathLike)):
        return [inputs]
    return list(inputs)


def _distinct(paths: Sequence[Path]) -> list[Path]:
    """``paths`` without repeats (one file named twice, or once by a folder and once by name)."""
    seen: set[tuple[Any, ...]] = set()
    kept = []
    for path in paths:
        keys = _identity(path)
        if keys.isdisjoint(seen):
            kept.append(path)
        seen |= keys
    return kept


def _not_outputs(paths: Sequence[Path]) -> list[Path]:
    """``paths`` without the labels napari-sam wrote (those with a valid record), with a note for each.

    A folder scan leaves them out already; this drops those named one by one (a shell glob over a
    folder that is also ``--out``), so that rerunning the same command resumes.
    """
    kept = []
    for path in paths:
        record = output_record(path)
        if record is None:
            kept.append(path)
        else:
            print(
                f"napari-sam: {path.name}: labels napari-sam wrote for {record.get('input')}, not an input",
                file=sys.stderr,
            )
    return kept


def _expand(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Path]:
    """The input images: folders expanded, repeats and napari-sam's own labels left out."""
    try:
        found = _distinct(find_images(_input_list(inputs)))
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(str(exc)) from exc
    sources = _not_outputs(found)
    if not sources:
        raise UsageError(
            "no input images given" if not found else "every input is labels napari-sam wrote, not an image"
        )
    _unique_names(sources)
    return sources


# ---------------------------------------------------------------------------------------------- outputs
#
# Outputs and inputs are told apart by a record: beside every labels file or folder it writes,
# ``segment`` writes ``<output>.napari-sam.json`` naming the input it came from, the output's size
# and modification time, the input's fingerprint and what was asked (prompts, mode, model …). An
# existing output is "already done" only when its record names this input, the output is unchanged
# since, and the input and the request are the same as now; anything else at an output path is left
# alone unless ``overwrite``, and a path that is one of the run's inputs, lies inside one or holds
# one is never written.

#: Version of the record's fields (1: without the input's fingerprint and the request).
RECORD_FORMAT = 2
#: Input files up to this size are hashed whole for their fingerprint; bigger ones by their ends.
WHOLE_HASH_BYTES = 2 << 20
#: How much of each end of a bigger input file is hashed.
END_HASH_BYTES = 1 << 20


def record_path(output: str | os.PathLike[str]) -> Path:
    """Where the record of ``output`` is: ``<output>.napari-sam.json`` beside it."""
    path = Path(output)
    return path.with_name(path.name + OUTPUT_RECORD_SUFFIX)


def _identity(path: Path) -> set[tuple[Any, ...]]:
    """Keys equal for two names of one file: its resolved path, and (device, inode) when it exists."""
    keys: set[tuple[Any, ...]] = {("path", os.path.normcase(str(path.resolve())))}
    with contextlib.suppress(OSError):
        info = path.stat()
        keys.add(("inode", info.st_dev, info.st_ino))
    return keys


def _conflict(output: Path, source: Path, owners: set[tuple[Any, ...]]) -> str | None:
    """How ``output`` collides with the input ``source`` (whose identity keys are ``owners``), or None."""
    if not owners.isdisjoint(_identity(output)):
        return "is one of the inputs"
    target, place = _comparable(output), _comparable(source)
    if place in target.parents:
        return f"is inside the input {source}"
    if target in place.parents:
        return f"holds the input {source}"
    return None


def _input_conflicts(items: Sequence[BatchItem], sources: Sequence[Path]) -> dict[str, str]:
    """``{output: how}`` for the items whose output is one of ``sources``, lies inside one or holds one
    (``how``: ``"is one of the inputs"``, ``"is inside the input …"``, ``"holds the input …"``)."""
    owners = [(source, _identity(source)) for source in sources]
    conflicts = {}
    for item in items:
        how = next((h for s, keys in owners if (h := _conflict(item.output, s, keys))), None)
        if how is not None:
            conflicts[str(item.output)] = how
    return conflicts


def _refuse_inputs(item: BatchItem, conflicts: Mapping[str, str]) -> None:
    """Raise when ``item.output`` is, lies in or holds one of the run's inputs (see
    :func:`_input_conflicts`): never written, with or without ``overwrite``."""
    how = conflicts.get(str(item.output))
    if how is None:
        return
    if how == "is one of the inputs":
        why = " (an image of this run, not labels napari-sam wrote)"
    elif how.startswith("holds"):
        why = ", which napari-sam never deletes (not even with --overwrite)"
    else:
        why = ""
    raise FileExistsError(f"not written: its output {item.output} {how}{why}; choose another output folder")


def _fingerprint(path: Path) -> dict[str, int]:
    """Number of files, bytes and latest modification time (ns) of a file or of a folder's files."""
    files = [path] if not path.is_dir() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    return {
        "files": len(stats),
        "bytes": sum(info.st_size for info in stats),
        "mtime_ns": max((info.st_mtime_ns for info in stats), default=0),
    }


def _ends_sha256(path: Path, size: int) -> str:
    """sha256 of a file up to :data:`WHOLE_HASH_BYTES`, else of its first and last :data:`END_HASH_BYTES`."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        if size <= WHOLE_HASH_BYTES:
            digest.update(file.read())
        else:
            digest.update(file.read(END_HASH_BYTES))
            file.seek(size - END_HASH_BYTES)
            digest.update(file.read(END_HASH_BYTES))
    return digest.hexdigest()


def input_fingerprint(source: str | os.PathLike[str]) -> dict[str, Any]:
    """What tells one version of an input from another, as recorded with its labels.

    Size and modification time (ns) of the file, or of a folder's (zarr store's) files with their
    number; for a file also the sha256 of its content (whole up to 2 MiB, else of its first and last
    MiB), which tells apart another image of the same size copied with its timestamp kept.

    Parameters
    ----------
    source
        An input file or folder.

    Returns
    -------
    dict
        ``files``, ``bytes``, ``mtime_ns`` and, for a file, ``sha256_ends``.
    """
    path = Path(source)
    found: dict[str, Any] = dict(_fingerprint(path))
    if path.is_file():
        found["sha256_ends"] = _ends_sha256(path, found["bytes"])
    return found


def _input_reference(source: Path, folder: Path) -> str:
    """``source`` as a path relative to ``folder`` (absolute when there is none), with ``/``."""
    try:
        return Path(os.path.relpath(source.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive
        return source.resolve().as_posix()


def _load_record(output: Path) -> tuple[dict[str, Any] | None, str]:
    """The record of ``output``, or None and what is wrong with it (a phrase after "exists and")."""
    path = record_path(output)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, f"was not written by napari-sam (no {path.name} beside it)"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"its record {path.name} cannot be read ({getattr(exc, 'strerror', None) or exc})"
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, f"its record {path.name} cannot be read (not valid JSON: {exc})"
    if not isinstance(data, dict) or "napari_sam_output" not in data:
        return None, f"{path.name} beside it is not a napari-sam record"
    if data.get("output") != output.name:
        return None, f"its record {path.name} is the record of another output, {data.get('output')}"
    return data, ""


def foreign_output(item: BatchItem) -> str | None:
    """Why the existing ``item.output`` is not labels napari-sam made for ``item.source``, or None.

    Parameters
    ----------
    item
        ``item.output`` exists.

    Returns
    -------
    str or None
        None when its record names ``item.source`` and it is unchanged since it was written;
        otherwise a sentence saying what is there (no record, a damaged record, labels of another
        input, labels edited since). Whether they were made from the same prompts, model and
        version of the input is :func:`outdated_output`'s question.
    """
    output = item.output
    record, problem = _load_record(output)
    if record is None:
        return f"{output} exists and {problem}"
    named = output.parent / str(record.get("input", ""))
    if _identity(named).isdisjoint(_identity(item.source)):
        return f"{output} was written by napari-sam for another input, {record.get('input')}"
    try:
        unchanged = record.get("fingerprint") == _fingerprint(output)
    except OSError:
        unchanged = False
    if not unchanged:
        return f"{output} was changed since napari-sam wrote it"
    return None


def outdated_output(item: BatchItem, request: Mapping[str, Any]) -> str | None:
    """What differs between how ``item.output`` was made and what is asked now, or None.

    Parameters
    ----------
    item
        ``item.output`` exists and is labels napari-sam made for ``item.source``
        (:func:`foreign_output` is None).
    request
        What is asked now (:meth:`SegmentJob.request`): prompts digest, mode, model, propagate,
        channel, format.

    Returns
    -------
    str or None
        None when the record holds the same request and the input's fingerprint
        (:func:`input_fingerprint`) is the same as now; otherwise ``"<output>: labels were made from
        other prompts, with another model (…)"`` naming every difference. Records of earlier
        versions, which hold neither, are "made with unknown settings".
    """
    record, _ = _load_record(item.output)
    if record is None or not isinstance(record.get("request"), dict):
        written_by = (record or {}).get("written_by") or "an earlier napari-sam"
        return f"{item.output}: labels were made with unknown settings (recorded by {written_by})"
    changes = _request_changes(record["request"], _as_json(request))
    try:
        now = input_fingerprint(item.source)
    except OSError:
        now = {}
    changes += _input_changes(record.get("input_fingerprint"), now, item.source)
    if not changes:
        return None
    return f"{item.output}: labels were made {', '.join(changes)}"


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from a record (tuples as lists …)."""
    return json.loads(json.dumps(value))


_MODES = {"auto": "automatic", "boxes": "boxes", "points": "points"}


def _model_name(request: Mapping[str, Any]) -> str:
    """A model's name, or its weights file's name."""
    return Path(str(request.get("model"))).name


def _same_model(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Same weights (by sha256 when both records know it, else by name or path)."""
    if old.get("weights_sha256") and new.get("weights_sha256"):
        return bool(old["weights_sha256"] == new["weights_sha256"])
    return bool(old.get("model") == new.get("model"))


def _request_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Phrases (after "labels were made") for each difference between two requests."""
    changes = []
    if old.get("mode") != new.get("mode"):
        changes.append(
            f"in another mode ({_MODES.get(str(old.get('mode')), old.get('mode'))}; now "
            f"{_MODES.get(str(new.get('mode')), new.get('mode'))})"
        )
    elif old.get("prompts_sha256") != new.get("prompts_sha256"):
        changes.append("from other prompts (this file's rows of the table changed)")
    if not _same_model(old, new):
        changes.append(f"with another model ({_model_name(old)}; now {_model_name(new)})")
    if old.get("propagate") != new.get("propagate"):
        flag = {True: "--propagate", False: "--no-propagate"}
        then, now = flag.get(old.get("propagate"), "?"), flag.get(new.get("propagate"), "?")
        changes.append(f"with {then} (now {now})")
    if old.get("channel") != new.get("channel"):
        then, now = (_channel_text(r.get("channel")) for r in (old, new))
        changes.append(f"from another channel ({then}; now {now})")
    if old.get("format") != new.get("format"):
        changes.append(f"in another format ({old.get('format')}; now {new.get('format')})")
    return changes


def _channel_text(channel: Any) -> str:
    """``--channel`` as written on the command line (``"none"`` when not given)."""
    if channel is None:
        return "none"
    return ",".join(map(str, channel)) if isinstance(channel, list) else str(channel)


_FINGERPRINT_PARTS = {
    "bytes": "size",
    "mtime_ns": "modification time",
    "files": "number of files",
    "sha256_ends": "content",
}


def _input_changes(old: Any, new: Mapping[str, Any], source: Path) -> list[str]:
    """``["from another version of the image (a.tif changed since: size, content)"]``, or ``[]``."""
    if not isinstance(old, dict):
        return [f"from an unknown version of the image ({source.name}'s fingerprint is not recorded)"]
    parts = [name for key, name in _FINGERPRINT_PARTS.items() if old.get(key) != new.get(key)]
    if not parts:
        return []
    return [f"from another version of the image ({source.name} changed since: {', '.join(parts)})"]


def _write_record(item: BatchItem, written: Path, command: str, details: Mapping[str, Any]) -> None:
    """Write the record of ``item.output``, whose content is at ``written`` (moved there next)."""
    record = {
        "napari_sam_output": RECORD_FORMAT,
        "written_by": f"napari-sam {__version__}",
        "command": command,
        "output": item.output.name,
        "input": _input_reference(item.source, item.output.parent),
        "fingerprint": _fingerprint(written),
        "written_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **details,
    }
    target = record_path(item.output)
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        partial.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _move_into_place(new: Path, output: Path) -> None:
    """Move the finished ``new`` to ``output``, replacing what is there (only called when allowed)."""
    if not (output.exists() or output.is_symlink()):
        new.rename(output)
    elif output.is_dir() or new.is_dir():
        old = output.with_name(f".{output.name}.old-{uuid.uuid4().hex[:8]}")
        output.rename(old)
        new.rename(output)
        _remove_path(old)
    else:
        os.replace(new, output)


def write_output(
    item: BatchItem,
    labels: Any,
    *,
    like: Path | None = None,
    command: str = "segment",
    details: Mapping[str, Any] | None = None,
) -> None:
    """Write ``labels`` to ``item.output`` with its record, replacing what is there.

    The labels are written under a hidden name beside the output, the record is written, then the
    labels are moved to ``item.output``: a run stopped at any point leaves either the old output, or
    the new one with its record (a record without its output is ignored).

    Parameters
    ----------
    item
        The input and the output path (``.tif`` or ``.zarr``).
    labels
        ``(Y, X)`` or ``(Z, Y, X)`` integer array.
    like
        An OME-Zarr input the labels belong to (see :func:`napari_sam.io.write_labels`).
    command, details
        Recorded: the command that wrote it, and other fields (model …).
    """
    output = item.output
    partial = output.with_name(f".{output.stem}.partial-{uuid.uuid4().hex[:8]}{output.suffix}")
    try:
        write_labels(partial, labels, like=like)
        _write_record(item, partial, command, details or {})
        _move_into_place(partial, output)
    finally:
        if partial.exists() or partial.is_symlink():
            _remove_path(partial)


def _channel(channel: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    if channel is None or isinstance(channel, (int, np.integer)):
        return None if channel is None else int(channel)
    picks = tuple(int(c) for c in channel)
    if not 1 <= len(picks) <= 3:
        raise UsageError(f"channel must name 1 to 3 channels, got {channel!r}")
    return picks


def cache_path(folder: str | os.PathLike[str], source: str | os.PathLike[str]) -> Path:
    """The embedding cache of image ``source`` inside ``folder``: ``folder/<name>.embeddings.zarr``."""
    return Path(folder) / f"{image_name(source)}{CACHE_SUFFIX}"


# ---------------------------------------------------------------------------------------------- embed


@dataclass(frozen=True)
class EmbedJob:
    """Embed one image into its cache (resuming a half-done cache); see :func:`embed_files`."""

    model: str = "nano"
    device: str = "auto"
    channel: int | tuple[int, ...] | None = None
    tile: Any = None
    batch_size: int = 1
    precision: str = "auto"
    overwrite: bool = False
    slices_per_task: int = 0
    slices: tuple[int, ...] | None = None
    #: ``{output: how}``: items whose cache path is, lies in or holds an input (never written).
    conflicts: Mapping[str, str] = field(default_factory=dict)

    def split(self, item: BatchItem) -> list[EmbedJob]:
        """On a cluster: a stack is embedded in parts of ``slices_per_task`` slices (0: whole files).

        The first part creates (or, with ``overwrite``, replaces) the cache; the others only add
        their slices to it, so they run after it, side by side.
        """
        if self.slices_per_task <= 0:
            return [self]
        from .engine.embed.embeddings import image_layout

        layout = image_layout(read_image(item.source), channel=self.channel)
        n, k = layout.n_slices, self.slices_per_task
        if not layout.is_volume or n <= k:
            return [self]
        return [
            replace(
                self,
                slices=tuple(range(a, min(a + k, n))),
                slices_per_task=0,
                overwrite=self.overwrite and a == 0,
            )
            for a in range(0, n, k)
        ]

    def __call__(self, item: BatchItem, progress: ProgressFn | None = None) -> str:
        from .engine.embed.embeddings import compute_embeddings
        from .engine.embed.store import is_embedding_store, open_store

        _refuse_inputs(item, self.conflicts)
        was_complete = (
            not self.overwrite and is_embedding_store(item.output) and open_store(item.output).is_complete
        )
        image = read_image(item.source)
        compute_embeddings(
            image,
            self.model,
            device=self.device,
            channel=self.channel,
            cache=item.output,
            overwrite=self.overwrite,
            batch_size=self.batch_size,
            tile=self.tile,
            precision=self.precision,
            slices=list(self.slices) if self.slices is not None else None,
            progress=progress if progress is not None else False,
        )
        return "skipped" if was_complete else "ok"


def embed_files(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str = "nano",
    device: str = "auto",
    channel: int | Sequence[int] | None = None,
    tile: Any = None,
    batch_size: int = 1,
    precision: str = "auto",
    overwrite: bool = False,
    scheduler: Any = None,
    slices_per_task: int = 0,
    progress: bool = True,
) -> BatchSummary:
    """Embed images into one cache each, ``out/<name>.embeddings.zarr``, resuming half-done caches.

    Parameters
    ----------
    inputs
        Image files and folders of images (see :func:`napari_sam.io.find_images`), or one path. An
        input named twice is embedded once; labels napari-sam wrote (files with a record) are left
        out, with a note.
    out
        Folder of the caches (created; not inside an input).
    model, device, channel, tile, batch_size, precision
        As in :func:`napari_sam.compute_embeddings` (``channel``: the channel, or up to three mapped to
        RGB, of multi-channel images).
    overwrite
        Recompute caches from scratch (also caches made with another model or preprocessing, which
        are otherwise an error for that item).
    scheduler, progress
        See :func:`run_batch`.
    slices_per_task
        With a ``scheduler``: embed stacks in tasks of this many slices, spread over the workers
        (0, the default: one task per file). Without a scheduler it has no effect.

    Returns
    -------
    BatchSummary
        A complete, still valid cache counts as skipped.

    Raises
    ------
    UsageError
        Missing inputs, two inputs with the same name, an output folder that cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> import tifffile
    >>> from napari_sam.batch import embed_files
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tifffile.imwrite(f"{tmp}/cells.tif", nuclei_2d((128, 128), n_objects=4, seed=0)[0])
    ...     print(embed_files([tmp], f"{tmp}/cache", progress=False).text())
    ...     print(embed_files([tmp], f"{tmp}/cache", progress=False).text())  # again: nothing to do
    1 done, 0 skipped (already done), 0 failed
    0 done, 1 skipped (already done), 0 failed
    """
    if (
        isinstance(slices_per_task, bool)
        or not isinstance(slices_per_task, (int, np.integer))
        or slices_per_task < 0
    ):
        raise UsageError(f"slices_per_task must be an integer >= 0, got {slices_per_task!r}")
    sources = _expand(inputs)
    folder = _check_output_folder(Path(out).expanduser(), "output", sources)
    items = [BatchItem(source, cache_path(folder, source)) for source in sources]
    job = EmbedJob(
        conflicts=_input_conflicts(items, sources),
        model=str(model),
        device=str(device),
        channel=_channel(channel),
        tile=tile,
        batch_size=batch_size,
        precision=precision,
        overwrite=overwrite,
        slices_per_task=int(slices_per_task),
    )
    return run_batch(items, job, is_done=None, scheduler=scheduler, progress=progress, desc="embed")


# ---------------------------------------------------------------------------------------------- prompts

_FILE_COLUMNS = ("file", "filename", "image", "path")
_ALIASES = {"y": "row", "x": "col", "column": "col", "min_y": "min_row", "min_x": "min_col"}
_ALIASES |= {"max_y": "max_row", "max_x": "max_col", "min_column": "min_col", "max_column": "max_col"}
_BOX_LAYOUTS = {
    2: ("min_row", "min_col", "max_row", "max_col"),
    3: ("min_z", "min_row", "min_col", "max_z", "max_row", "max_col"),
}
PromptKind = Literal["boxes", "points"]
_KIND_COLUMNS = {
    "boxes": "box tables need columns [file,]min_row,min_col,max_row,max_col",
    "points": "point tables need columns [file,][z,]row,col[,label]",
}

CSV_HELP = """\
Prompt tables (CSV with a header row; column order free, names case-insensitive):
  boxes   2D:  file,min_row,min_col,max_row,max_col
          3D:  file,z,min_row,min_col,max_row,max_col          (a box drawn on slice z)
               file,min_z,min_row,min_col,max_z,max_row,max_col
  points       file,[z,]row,col[,label]                        (label 1 = object, 0 = background)
Coordinates are pixels in napari order (rows first, y before x); boxes are half-open like
scikit-image's regionprops bbox. 'file' names an input by file name (cells.tif), name without
suffix (cells) or path (absolute, or relative to the CSV), matched exactly (case too); one CSV
serves a whole batch. A table with a 'file' column that names none of the inputs is an error.
Without a 'file' column every row applies to every input. y / x are accepted for row / col; a
label may also be positive / negative, true / false, fg / bg (as napari's Points layers spell it).
Separators: comma, semicolon or tab (the one the lines agree on, or the one an Excel "sep=;"
first line names); with semicolons or tabs a decimal comma is read as a point (2,5 = 2.5).
Trailing separators, a UTF-8 BOM and lines starting with # are ignored.
napari layers saved as CSV (File > Save Selected Layers) are read as they are:
  Points (--points):  index,axis-0,axis-1[,axis-2][,features]: axis-0, axis-1 are row, col in 2D,
      axis-0 is z in 3D; a 'label' feature gives the point labels (else all 1).
  Shapes (--boxes):   index,shape-type,vertex-index,axis-0,axis-1[,axis-2]: each rectangle (the
      rows of one index) is one box around the pixels whose centres it covers, as the napari
      annotator reads it; 3D rectangles lie on one slice; other shapes are an error.
Such an export prompts one image, unless a 'file' column added to it names each row's image."""


@dataclass(frozen=True)
class PromptTable:
    """Prompts read from a CSV, by file.

    Attributes
    ----------
    kind
        ``"boxes"`` or ``"points"``.
    ndim
        2 or 3 (whether the prompts name a slice ``z``).
    rows
        ``{file key: (N, K) float array}``: boxes ``(N, 2 * ndim)``, points ``(N, ndim + 1)`` with the
        label last. The key is ``None`` for a table without a file column.
    path
        The CSV file.
    napari_export
        The table is a napari layer export without a 'file' column: it prompts one image only.
    napari_layer
        ``"Points"`` or ``"Shapes"`` for a napari layer export (with or without a 'file' column),
        ``""`` for other tables.
    """

    kind: PromptKind
    ndim: int
    rows: Mapping[str | None, np.ndarray]
    path: Path
    napari_export: bool = False
    napari_layer: str = ""

    def match(self, sources: Sequence[Path]) -> tuple[dict[Path, np.ndarray], list[str]]:
        """Prompts of each source (an empty array for a source no row names), and the file names of
        the table that name none of the sources (for example a typo, or a file left out of this run).
        """
        width = 2 * self.ndim if self.kind == "boxes" else self.ndim + 1
        empty = np.zeros((0, width))
        if None in self.rows:
            return dict.fromkeys(sources, self.rows[None]), []
        found: dict[Path, list[np.ndarray]] = {source: [] for source in sources}
        unmatched = []
        for key, values in self.rows.items():
            names = {str(key)}
            with contextlib.suppress(OSError):
                names.add(str((self.path.parent / str(key)).resolve()))  # a path relative to the CSV
            owners = [s for s in sources if names & _file_keys(s)]
            if not owners:
                unmatched.append(str(key))
            for owner in owners:
                found[owner].append(values)
        return {s: np.concatenate(v) if v else empty for s, v in found.items()}, unmatched

    def prompts(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Keyword arguments of :func:`napari_sam.segment` for one file's rows."""
        if self.kind == "boxes":
            return {"boxes": values}
        return {"points": values[:, :-1], "point_labels": values[:, -1].astype(np.int64)}


def _file_keys(source: Path) -> set[str]:
    keys = {str(source), source.name, image_name(source)}
    with contextlib.suppress(OSError):
        keys.add(str(source.resolve()))
    return keys


_SEPARATORS = ",;\t"
#: Excel's first line naming the separator (``sep=;``), sometimes quoted.
_EXCEL_SEPARATOR = re.compile(r'"?sep=(.)"?', re.IGNORECASE)
_NAPARI_AXIS = re.compile(r"axis-(\d+)")
_NAPARI_LAYOUTS = {2: ("row", "col"), 3: ("z", "row", "col")}


def _number(text: str, column: str, line: int, path: Path, decimal_comma: bool = False) -> float:
    value_text = text.strip()
    if decimal_comma and value_text.count(",") == 1 and "." not in value_text:
        value_text = value_text.replace(",", ".")
    try:
        value = float(value_text)
    except ValueError:
        raise UsageError(f"{path}, line {line}: column {column!r} must be a number, got {text!r}") from None
    if not np.isfinite(value):
        raise UsageError(f"{path}, line {line}: column {column!r} must be finite, got {text!r}")
    return value


def _label(text: str, line: int, path: Path, decimal_comma: bool) -> float:
    """A point label: 1 / 0, or a word of :data:`~napari_sam.engine.decode.coords.POINT_KIND_WORDS` (any case:
    positive / negative, true / false …), as napari's Points layers spell it."""
    from .engine.decode.coords import point_kind

    word = point_kind(text)
    label = float(word) if word is not None else _number(text, "label", line, path, decimal_comma)
    if label not in (0.0, 1.0):
        raise UsageError(f"{path}, line {line}: label must be 1 (object) or 0 (background), got {text!r}")
    return label


def _read_text(source: Path, kind: PromptKind) -> str:
    try:
        return source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"{kind} CSV not found: {source}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the {kind} CSV {source}: {exc}") from exc


def _separator(lines: Sequence[str]) -> str:
    """The separator of a table's lines: csv.Sniffer among comma, semicolon and tab; comma if unsure."""
    try:
        return csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=_SEPARATORS).delimiter
    except csv.Error:
        return ","


def _table_lines(text: str) -> tuple[list[tuple[int, list[str]]], str]:
    """``[(line number, cells)]`` of the header and data lines (blank and ``#`` lines skipped), and
    the separator."""
    numbered = [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    hint = _EXCEL_SEPARATOR.fullmatch(numbered[0][1].strip()) if numbered else None
    if hint is not None:  # Excel's "sep=;" line names the separator; it is not the header
        numbered = numbered[1:]
    separator = hint[1] if hint is not None else _separator([line for _, line in numbered])
    return [(n, next(csv.reader([line], delimiter=separator), [])) for n, line in numbered], separator


def _without_trailing_empties(cells: list[str], keep: int = 0) -> list[str]:
    """``cells`` without the empty cells at its end (a trailing separator), keeping ``keep`` cells."""
    end = len(cells)
    while end > keep and not cells[end - 1].strip():
        end -= 1
    return cells[:end]


@dataclass(frozen=True)
class _Columns:
    """Where a table's values are: ``index[name]`` is the cell of column ``name``."""

    index: Mapping[str, int]
    layout: tuple[str, ...]
    ndim: int
    file_col: int | None
    #: ``"Points"`` / ``"Shapes"`` for a napari layer export, ``""`` otherwise.
    napari_layer: str = ""


def _file_column(names: Sequence[str]) -> int | None:
    """Where the file names are (a ``file``, ``filename``, ``image`` or ``path`` column), or None."""
    return next((i for i, n in enumerate(names) if n in _FILE_COLUMNS), None)


def _napari_axes(names: Sequence[str], source: Path, layer: str) -> tuple[dict[str, int], tuple[str, ...]]:
    """``{coordinate: column}`` and the layout (row, col or z, row, col) of a napari export's axes."""
    axes = {int(m[1]): i for i, n in enumerate(names) if (m := _NAPARI_AXIS.fullmatch(n))}
    if sorted(axes) not in ([0, 1], [0, 1, 2]):
        raise UsageError(
            f"{source} is a napari {layer}-layer export with columns "
            f"{', '.join(f'axis-{k}' for k in sorted(axes))}; only 2D (axis-0, axis-1: row, col) and 3D "
            "(axis-0, axis-1, axis-2: z, row, col) coordinates can prompt an image"
        )
    layout = _NAPARI_LAYOUTS[len(axes)]
    return {name: axes[k] for k, name in enumerate(layout)}, layout


def _napari_columns(names: list[str], kind: PromptKind, source: Path) -> _Columns | None:
    """The columns of a napari Points-layer export (``index,axis-0,axis-1[,axis-2],features``) or
    Shapes-layer export (``index,shape-type,vertex-index,axis-0,axis-1[,axis-2]``); None for others.

    A ``file`` column (added by hand, or a feature of that name) says which image each row prompts.
    """
    if "index" not in names or not any(_NAPARI_AXIS.fullmatch(n) for n in names):
        return None
    layer = "Shapes" if "shape-type" in names else "Points"
    wanted = {"Shapes": ("boxes", "--boxes (boxes=)"), "Points": ("points", "--points (points=)")}[layer]
    if kind != wanted[0]:
        raise UsageError(
            f"{source} is a napari {layer}-layer export: pass it with {wanted[1]}; {_KIND_COLUMNS[kind]}"
        )
    index, layout = _napari_axes(names, source, layer)
    extras = ("label",) if layer == "Points" else ("index", "shape-type")
    index.update({name: names.index(name) for name in extras if name in names})
    return _Columns(index, layout, len(layout), _file_column(names), layer)


def _columns(header: list[str], kind: PromptKind, source: Path) -> _Columns:
    """Check the header row: which columns hold the file, the coordinates and the label."""
    names = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    napari = _napari_columns(names, kind, source)
    if napari is not None:
        return napari
    file_col = _file_column(names)
    present = {n for i, n in enumerate(names) if i != file_col}
    layout, ndim = _layout(kind, present, source)
    unknown = present - set(layout) - {"z", "label"}
    if unknown or len(present) != len(names) - (file_col is not None):
        extra = sorted(n or "(a column without a name)" for n in unknown) or ["(a repeated column)"]
        raise UsageError(
            f"{source}: unexpected columns {', '.join(extra)}; expected "
            f"{', '.join(('file', *layout))} (see --help)"
        )
    index = {n: i for i, n in enumerate(names) if i != file_col}
    return _Columns(index, layout, ndim, file_col)


def read_prompts_csv(path: str | os.PathLike[str], kind: PromptKind) -> PromptTable:
    """Read a box or point prompt table (the format is in ``CSV_HELP``).

    Comma-, semicolon- and tab-separated tables are read (with semicolons or tabs a decimal comma
    counts as a decimal point; an Excel ``sep=;`` first line names the separator), as are napari
    Points-layer exports (``index,axis-0,axis-1[,axis-2]``, as points) and Shapes-layer exports
    (``index,shape-type,vertex-index,axis-0,axis-1[,axis-2]``, each rectangle as a box), with or
    without a ``file`` column.

    Parameters
    ----------
    path
        The CSV file.
    kind
        ``"boxes"`` or ``"points"``.

    Returns
    -------
    PromptTable

    Raises
    ------
    UsageError
        A ``ValueError`` naming the file, line and column: missing file, unknown or missing columns,
        non-numbers, empty boxes, labels other than 0 / 1, a table without rows, a napari export
        given as the other kind, shapes other than rectangles, a rectangle across slices.
    """
    if kind not in ("boxes", "points"):
        raise ValueError(f"kind must be 'boxes' or 'points', got {kind!r}")
    source = Path(path).expanduser()
    lines, separator = _table_lines(_read_text(source, kind))
    if not lines:
        raise UsageError(f"{source} is empty; expected a header row, see --help")
    header = _without_trailing_empties(lines[0][1])
    columns = _columns(header, kind, source)
    rows = _data_rows(lines[1:], columns, len(header), source)
    decimal_comma = separator != ","
    if columns.napari_layer == "Shapes":
        by_file = _shape_boxes(rows, columns, source, decimal_comma)
    else:
        by_file = {}
        for line, key, row in rows:
            values = _row_values(row, columns, kind, line=line, source=source, decimal_comma=decimal_comma)
            by_file.setdefault(key, []).append(values)
    if not by_file:
        raise UsageError(f"{source} has a header but no {kind}")
    return PromptTable(
        kind=kind,
        ndim=columns.ndim,
        rows={k: np.asarray(v, dtype=float) for k, v in by_file.items()},
        path=source,
        napari_export=bool(columns.napari_layer) and columns.file_col is None,
        napari_layer=columns.napari_layer,
    )


def _data_rows(
    lines: Sequence[tuple[int, list[str]]], columns: _Columns, width: int, source: Path
) -> list[tuple[int, str | None, list[str]]]:
    """``[(line number, file key, cells)]`` of the data lines (the key is None without a file column)."""
    rows = []
    for line, cells in lines:
        row = _without_trailing_empties(cells, keep=width)
        if len(row) != width:
            raise UsageError(f"{source}, line {line}: {len(row)} values for {width} columns")
        key = row[columns.file_col].strip() if columns.file_col is not None else None
        if key == "":
            raise UsageError(f"{source}, line {line}: empty file name")
        rows.append((line, key, row))
    return rows


def _shape_boxes(
    rows: Sequence[tuple[int, str | None, list[str]]], columns: _Columns, source: Path, decimal_comma: bool
) -> dict[str | None, list[list[float]]]:
    """The boxes of a napari Shapes-layer export, by file: each rectangle (the vertices of one
    ``index``) is one box, read as the napari nodes read a Shapes layer
    (:func:`napari_sam.nodes.shapes_to_boxes`)."""
    shapes: dict[tuple[str | None, str], list[tuple[int, str, list[float]]]] = {}
    for line, key, row in rows:
        vertex = [_number(row[columns.index[c]], c, line, source, decimal_comma) for c in columns.layout]
        kind = row[columns.index["shape-type"]].strip().lower()
        shapes.setdefault((key, row[columns.index["index"]].strip()), []).append((line, kind, vertex))
    by_file: dict[str | None, list[list[float]]] = {}
    for (key, number), vertices in shapes.items():
        by_file.setdefault(key, []).append(_rectangle_box(number, vertices, source))
    return by_file


def _rectangle_box(
    number: str, vertices: Sequence[tuple[int, str, list[float]]], source: Path
) -> list[float]:
    """One rectangle's ``(line, shape type, vertex)`` rows → its half-open box (z first in 3D)."""
    from .nodes import shapes_to_boxes

    line = vertices[0][0]
    kind = next((k for _, k, _ in vertices if k != "rectangle"), "rectangle")
    if kind != "rectangle":
        article = "an" if kind[:1] in "aeiou" else "a"
        raise UsageError(
            f"{source}, line {line}: shape {number} is {article} {kind}; only rectangles are boxes "
            "(delete the other shapes from the layer, or draw boxes with the rectangle tool)"
        )
    points = np.array([v for _, _, v in vertices], dtype=float)
    if points.shape[1] == 3 and np.ptp(points[:, 0]) > 1e-6:
        raise UsageError(
            f"{source}, line {line}: rectangle {number} has vertices on slices {points[:, 0].min():g} to "
            f"{points[:, 0].max():g}; a box is drawn on one slice"
        )
    box = shapes_to_boxes([points])[0]
    half = len(box) // 2
    if np.any(box[half:] <= box[:half]):
        raise UsageError(
            f"{source}, line {line}: rectangle {number} covers no pixel centre (vertices from "
            f"{points.min(axis=0).tolist()} to {points.max(axis=0).tolist()})"
        )
    return box.tolist()


def _row_values(
    row: list[str], columns: _Columns, kind: PromptKind, *, line: int, source: Path, decimal_comma: bool
) -> list[float]:
    """One data line's prompt: a box ``(2 * ndim,)`` or a point ``(ndim + 1,)`` with its label."""
    values = [_number(row[columns.index[c]], c, line, source, decimal_comma) for c in columns.layout]
    if kind == "boxes":
        return _box_values(values, columns.layout, line, source)
    at = columns.index.get("label")
    return [*values, 1.0 if at is None else _label(row[at], line, source, decimal_comma)]


def _layout(kind: PromptKind, present: set[str], source: Path) -> tuple[tuple[str, ...], int]:
    """The value columns (in output order) and the number of spatial dimensions of a table."""
    if kind == "points":
        layout: tuple[str, ...] = ("z", "row", "col") if "z" in present else ("row", "col")
        missing = [c for c in layout if c not in present]
        if missing:
            raise UsageError(
                f"{source}: point tables need columns [file,][z,]row,col[,label]; missing {missing}"
            )
        return layout, len(layout)
    if "min_z" in present or "max_z" in present:
        layout = _BOX_LAYOUTS[3]
    elif "z" in present:
        layout = ("z", *_BOX_LAYOUTS[2])
    else:
        layout = _BOX_LAYOUTS[2]
    missing = [c for c in layout if c not in present]
    if missing:
        raise UsageError(
            f"{source}: box tables need columns [file,]min_row,min_col,max_row,max_col (3D: with z, or "
            f"min_z and max_z); missing {', '.join(missing)}"
        )
    return layout, 3 if "z" in layout or "min_z" in layout else 2


def _box_values(values: list[float], layout: tuple[str, ...], line: int, source: Path) -> list[float]:
    named = dict(zip(layout, values, strict=True))
    if "z" in named:
        named["min_z"], named["max_z"] = named["z"], named["z"] + 1
    dims = ("z", "row", "col") if "min_z" in named else ("row", "col")
    for d in dims:
        if named[f"max_{d}"] <= named[f"min_{d}"]:
            raise UsageError(
                f"{source}, line {line}: max_{d} ({named[f'max_{d}']:g}) must be greater than "
                f"min_{d} ({named[f'min_{d}']:g})"
            )
    return [named[f"min_{d}"] for d in dims] + [named[f"max_{d}"] for d in dims]


# ---------------------------------------------------------------------------------------------- segment


def prompts_digest(prompts: Mapping[str, Any]) -> str | None:
    """sha256 of one file's prompts (the keyword arrays of :func:`napari_sam.segment`), or None for none.

    The exact values count (as float64, in their order: it numbers the objects); how the table
    wrote them (``20`` or ``20.0``, separators) does not.
    """
    if not prompts:
        return None
    digest = hashlib.sha256()
    for key in sorted(prompts):
        values = np.ascontiguousarray(prompts[key], dtype="<f8")
        digest.update(f"{key}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def model_identity(model: str | os.PathLike[str]) -> dict[str, str | None]:
    """How the labels' model is recorded: ``{"model": name or weights path, "weights_sha256": …}``.

    A registered name gives its published (or shipped) sha256, a weights file its own (remembered
    by path, size and modification time, see :func:`napari_sam.model.registry.remembered_sha256`);
    two records name the same model when their sha256 agree. Nothing is downloaded.
    """
    from .model.registry import NANO_SHA256, OFFICIAL_WEIGHTS, remembered_sha256

    name = str(model)
    if name == "nano":
        return {"model": name, "weights_sha256": NANO_SHA256}
    if name in OFFICIAL_WEIGHTS:
        return {"model": name, "weights_sha256": OFFICIAL_WEIGHTS[name].sha256}
    path = Path(name).expanduser()
    if path.is_file():
        try:
            return {"model": str(path.resolve()), "weights_sha256": remembered_sha256(path)}
        except OSError:
            pass
    return {"model": name, "weights_sha256": None}


@dataclass(frozen=True)
class SegmentJob:
    """Segment one image from its prompts and write its labels; see :func:`segment_files`."""

    prompts: Mapping[str, Mapping[str, np.ndarray]]  # source path (str) → segment() prompt keywords
    model: str = "nano"
    device: str = "auto"
    channel: int | tuple[int, ...] | None = None
    cache_dir: str | None = None
    overwrite: bool = False
    propagate: bool = True
    #: ``{output: how}``: items whose labels path is, lies in or holds an input (never written).
    conflicts: Mapping[str, str] = field(default_factory=dict)
    #: The model as recorded: ``model`` and ``weights_sha256`` (see :func:`model_identity`).
    model_id: Mapping[str, Any] = field(default_factory=dict)

    def request(self, item: BatchItem, prompts: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """What is asked of ``item``, as recorded with its labels and compared on a rerun.

        ``mode`` (boxes, points or auto), ``prompts_sha256`` (the exact prompt values of this file
        after reading the table), the model, ``propagate``, ``channel`` and ``format``.
        """
        mode = "boxes" if "boxes" in prompts else "points" if "points" in prompts else "auto"
        return _as_json(
            {
                "mode": mode,
                "prompts_sha256": prompts_digest(prompts),
                "model": self.model_id.get("model", self.model),
                "weights_sha256": self.model_id.get("weights_sha256"),
                "propagate": self.propagate,
                "channel": self.channel,
                "format": item.output.suffix.lstrip(".").lower(),
            }
        )

    def __call__(self, item: BatchItem, progress: ProgressFn | None = None) -> str | Done:
        prompts = dict(self.prompts.get(str(item.source), {}))
        if prompts and all(len(v) == 0 for v in prompts.values()):
            return UNPROMPTED  # no row of the table names this file: nothing to segment, not a failure
        _refuse_inputs(item, self.conflicts)
        request = self.request(item, prompts)
        if (item.output.exists() or item.output.is_symlink()) and self._done(item, request):
            return "skipped"
        fingerprint = input_fingerprint(item.source)  # before reading: a change meanwhile shows next time
        image = read_image(item.source)
        if prompts:
            _check_prompt_dims(item.source, image, prompts, self.channel)
        options: dict[str, Any] = {}
        if self.cache_dir is not None:
            options["cache"] = cache_path(self.cache_dir, item.source)
        labels, empty = self._segment(image, prompts, options)
        like = item.source if is_ome_zarr(item.source) else None
        details = {"input_fingerprint": fingerprint, "request": request}
        write_output(item, labels, like=like, details=details)
        return Done(empty=_empty_text(empty)) if empty else "ok"

    def _done(self, item: BatchItem, request: Mapping[str, Any]) -> bool:
        """Whether the existing ``item.output`` is done: True to skip it, False to (re)do it.

        Raises
        ------
        FileExistsError
            Without ``overwrite``: it is not labels napari-sam made for this input, or they were made
            another way (other prompts, model … or another version of the input); it is kept.
        """
        if self.overwrite:
            return False
        problem = foreign_output(item)
        if problem is not None:
            raise FileExistsError(
                f"{problem}; it is kept: pass --overwrite (overwrite=True) to replace it, or choose "
                "another output folder"
            )
        outdated = outdated_output(item, request)
        if outdated is not None:
            raise FileExistsError(
                f"{outdated}; they are kept: pass --overwrite (overwrite=True) to redo them"
            )
        return True

    def _segment(
        self, image: Any, prompts: Mapping[str, np.ndarray], options: Mapping[str, Any]
    ) -> tuple[np.ndarray, list[EmptyObjectsWarning]]:
        """:func:`napari_sam.segment` and the :class:`EmptyObjectsWarning` it gave (reported per
        file instead, gathered for this thread only); its other warnings go on as usual."""
        from .api import segment
        from .engine.decode.objects import collect_empty_objects

        with collect_empty_objects() as empty:
            labels = segment(
                image,
                model=self.model,
                device=self.device,
                channel=self.channel,
                propagate=self.propagate,
                **prompts,
                **options,
            )
        return labels, empty


def _empty_text(found: Sequence[EmptyObjectsWarning]) -> str:
    """``"object 4 empty"``, ``"objects 4 (slice 2), 7 (slice 5) empty"``: the objects without pixels."""
    pairs = sorted({(k, z) for w in found for k, z in zip(w.objects, w.slices, strict=True)})
    names = [str(k) if z is None else f"{k} (slice {z})" for k, z in pairs]
    return f"object{'s' if len(names) != 1 else ''} {', '.join(names)} empty"


def _check_prompt_dims(
    source: Path, image: Any, prompts: Mapping[str, np.ndarray], channel: int | tuple[int, ...] | None
) -> None:
    """Stacks need prompts with a slice (``z``) column, 2D images prompts without."""
    from .engine.embed.embeddings import image_layout

    values = prompts["boxes"] if "boxes" in prompts else prompts["points"]
    has_z = values.shape[1] in (3, 6)
    is_volume = image_layout(image, channel=channel).is_volume
    if is_volume and not has_z:
        raise ValueError(
            f"{source.name} is a 3D stack of shape {tuple(image.shape)}: its CSV needs a z column (the "
            "slice of each prompt), or min_z and max_z for boxes"
        )
    if has_z and not is_volume:
        raise ValueError(
            f"{source.name} is a 2D image of shape {tuple(image.shape)}: its CSV must not have a z column"
        )


def _check_single_image_table(table: PromptTable, sources: Sequence[Path]) -> None:
    """A napari export without a 'file' column names no file: it prompts a run of one image only."""
    if table.napari_export and len(sources) > 1:
        raise UsageError(
            f"{table.path} is a napari {table.napari_layer}-layer export without a 'file' column, so it "
            f"prompts one image, but {len(sources)} inputs were given; segment them one at a time, or "
            "add a 'file' column naming each row's image"
        )


def _few(names: Sequence[str], at_most: int = 5) -> str:
    """``"a, b, c"``, or the first ``at_most`` names and ``…``."""
    return ", ".join(names[:at_most]) + (" …" if len(names) > at_most else "")


def _check_table_names_an_input(
    table: PromptTable, matched: Mapping[Path, np.ndarray], sources: Sequence[Path]
) -> None:
    """A table with a file column none of whose rows names an input is a usage error (a typo, most
    likely: everything would be "skipped (no prompts)")."""
    if None in table.rows or any(len(values) for values in matched.values()):
        return
    raise UsageError(
        f"{table.path} names none of the inputs: its files are {_few([str(k) for k in table.rows])}; "
        f"the inputs are {_few([s.name for s in sources])}. Names are matched exactly (case too): "
        "the file name (cells.tif), the name without suffix (cells) or the path"
    )


def _labels_path(folder: Path, source: Path, fmt: str | None) -> Path:
    if fmt is None:
        fmt = "zarr" if source.suffix.lower() == ".zarr" or source.is_dir() else "tif"
    if fmt not in ("tif", "zarr"):
        raise UsageError(f"format must be 'tif' or 'zarr', got {fmt!r}")
    return folder / f"{image_name(source)}_labels.{fmt}"


def segment_files(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    boxes: PromptTable | str | os.PathLike[str] | None = None,
    points: PromptTable | str | os.PathLike[str] | None = None,
    auto: bool = False,
    format: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    model: str = "nano",
    device: str = "auto",
    channel: int | Sequence[int] | None = None,
    overwrite: bool = False,
    scheduler: Any = None,
    progress: bool = True,
    propagate: bool = True,
) -> BatchSummary:
    """Segment images from prompt tables (or automatically) and write ``out/<name>_labels.<format>``.

    Parameters
    ----------
    inputs
        Image files and folders of images, or one path. An input named twice (or by its folder and
        by name) is segmented once. Labels napari-sam wrote (files with a record) are not inputs: a
        folder scan leaves them out, and those named one by one are left out with a note.
    out
        Folder of the labels (created; not inside an input). Beside each labels file goes a record,
        ``<labels>.napari-sam.json``, naming its input and how they were made (the input's
        fingerprint, :func:`input_fingerprint`; the request, :meth:`SegmentJob.request`). Labels
        whose record names this input, unchanged since and made from the same version of it with
        the same prompts, mode, model, ``propagate``, ``channel`` and format are skipped (already
        done) unless ``overwrite``; labels made another way, and any other file at a labels path,
        fail that item with a line saying why unless ``overwrite``. A labels path that is one of
        the inputs, lies inside one or holds one is never written. ``out`` may be the input folder.
    boxes, points
        Prompt tables (paths of CSV files, see ``CSV_HELP``, or :class:`PromptTable`); one of them,
        or ``auto=True``. A table with a file column that names none of the inputs is a
        :class:`UsageError`.
    auto
        Automatic segmentation: :func:`napari_sam.segment` without prompts.
    format
        ``"tif"`` or ``"zarr"``; default zarr for zarr inputs, tif otherwise. Labels of an OME-Zarr
        input in zarr format are an OME-Zarr label image with the input's axes and scale.
    cache
        Folder of embedding caches (as made by :func:`embed_files`), reused and completed per image
        (not inside an input).
    model, device, channel
        As in :func:`napari_sam.segment`; use the ``channel`` the caches were made with.
    overwrite
        Redo every item and replace what is at its labels path (never an input).
    scheduler, progress
        See :func:`run_batch`.
    propagate
        3D stacks, as in :func:`napari_sam.segment`: prompts are propagated through the stack (False:
        the prompted slices only); without prompts, the slices' objects are linked into 3D objects.

    Returns
    -------
    BatchSummary
        Names of the items done, skipped (their labels were done) and failed (with the reason);
        ``summary.text()`` reports them, ``summary.exit_code`` is 1 when any failed.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import tifffile
    >>> from napari_sam.batch import segment_files
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tifffile.imwrite(f"{tmp}/cells.tif", nuclei_2d((128, 128), n_objects=4, seed=0)[0])
    ...     with open(f"{tmp}/boxes.csv", "w") as table:  # one box on cells.tif
    ...         print("file,min_row,min_col,max_row,max_col", file=table)
    ...         print("cells.tif,0,55,29,95", file=table)
    ...     summary = segment_files([tmp], f"{tmp}/labels", boxes=f"{tmp}/boxes.csv", progress=False)
    ...     print(summary.text())
    ...     print(sorted(path.name for path in Path(f"{tmp}/labels").iterdir()))
    1 done, 0 skipped (already done), 0 failed
    ['cells_labels.tif', 'cells_labels.tif.napari-sam.json']
    """
    chosen = [boxes is not None, points is not None, bool(auto)]
    if sum(chosen) != 1:
        raise UsageError("give exactly one of boxes=, points= or auto=True")
    if format is not None and format not in ("tif", "zarr"):
        raise UsageError(f"format must be 'tif' or 'zarr', got {format!r}")
    sources = _expand(inputs)
    prompts: dict[str, dict[str, np.ndarray]] = {str(s): {} for s in sources}
    table = boxes if boxes is not None else points
    if table is not None:
        if not isinstance(table, PromptTable):
            table = read_prompts_csv(table, "boxes" if boxes is not None else "points")
        _check_single_image_table(table, sources)
        matched, unmatched = table.match(sources)
        _check_table_names_an_input(table, matched, sources)
        if unmatched:
            names = ", ".join(unmatched[:5]) + (" …" if len(unmatched) > 5 else "")
            warnings.warn(f"{table.path} names files that are not among the inputs: {names}", stacklevel=2)
        for source, values in matched.items():
            prompts[str(source)] = table.prompts(values)
    if cache is not None:
        _refuse_folder_in_inputs(Path(cache).expanduser(), sources, "cache")
    folder = _check_output_folder(Path(out).expanduser(), "output", sources)
    cache_dir = None
    if cache is not None:
        cache_dir = str(_check_output_folder(Path(cache).expanduser(), "cache", sources))
    items = [BatchItem(source, _labels_path(folder, source, format)) for source in sources]
    job = SegmentJob(
        conflicts=_input_conflicts(items, sources),
        prompts=prompts,
        model=str(model),
        device=str(device),
        channel=_channel(channel),
        cache_dir=cache_dir,
        overwrite=overwrite,
        propagate=bool(propagate),
        model_id=model_identity(model),
    )
    return run_batch(items, job, is_done=None, scheduler=scheduler, progress=progress, desc="segment")
