"""The record beside every labels output: ``<labels>.napari-sam.json``.

Outputs and inputs are told apart by a record: beside every labels file or folder it writes,
``segment`` writes ``<output>.napari-sam.json`` naming the input it came from, the output's size
and modification time, the input's fingerprint and what was asked (prompts, mode, model …). An
existing output is "already done" only when its record names this input, the output is unchanged
since, and the input and the request are the same as now (:func:`foreign_output`,
:func:`outdated_output`); anything else at an output path is left alone unless ``overwrite``, and a
path that is one of the run's inputs, lies inside one or holds one is never written (see
:mod:`.inputs`). :func:`write_output` writes labels and their record, atomically.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._version import __version__
from ..io import OUTPUT_RECORD_SUFFIX, write_labels
from .inputs import file_identity
from .runner import BatchItem

__all__ = [
    "END_HASH_BYTES",
    "RECORD_FORMAT",
    "WHOLE_HASH_BYTES",
    "as_json",
    "foreign_output",
    "input_fingerprint",
    "outdated_output",
    "record_path",
    "write_output",
]

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
    if file_identity(named).isdisjoint(file_identity(item.source)):
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
        What is asked now (:meth:`.jobs.SegmentJob.request`): prompts digest, mode (and the automatic
        mode that runs), model, propagate, channel, object size, precision, format.

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
    changes = _request_changes(record["request"], as_json(request))
    try:
        now = input_fingerprint(item.source)
    except OSError:
        now = {}
    changes += _input_changes(record.get("input_fingerprint"), now, item.source)
    if not changes:
        return None
    return f"{item.output}: labels were made {', '.join(changes)}"


def as_json(value: Any) -> Any:
    """``value`` as it reads back from a record (tuples as lists …)."""
    return json.loads(json.dumps(value))


_MODES = {"auto": "automatic", "boxes": "boxes", "points": "points"}


def _automatic_mode(request: Mapping[str, Any]) -> str:
    """The automatic mode a request ran, in capitals (``"AIS"``); records from before the instance
    decoder's modes hold none: they ran the prompt grid, AMG."""
    return str(request.get("automatic_mode") or "amg").upper()


def _model_name(request: Mapping[str, Any]) -> str:
    """A model's name, or its weights file's name."""
    return Path(str(request.get("model"))).name


def _same_model(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Same weights (by sha256, or a published hash such as micro-sam's xxh128, when both records know
    it; else by name or path)."""
    for key in ("weights_sha256", "weights_hash"):
        if old.get(key) and new.get(key):
            return bool(old[key] == new[key])
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
    elif new.get("mode") == "auto" and _automatic_mode(old) != _automatic_mode(new):
        changes.append(f"by another method ({_automatic_mode(old)}; now {_automatic_mode(new)})")
    if not _same_model(old, new):
        changes.append(f"with another model ({_model_name(old)}; now {_model_name(new)})")
    if old.get("propagate") != new.get("propagate"):
        flag: dict[bool | None, str] = {True: "--propagate", False: "--no-propagate"}
        then, now = flag.get(old.get("propagate"), "?"), flag.get(new.get("propagate"), "?")
        changes.append(f"with {then} (now {now})")
    if old.get("channel") != new.get("channel"):
        then, now = (_channel_text(r.get("channel")) for r in (old, new))
        changes.append(f"from another channel ({then}; now {now})")
    if old.get("object_size") != new.get("object_size"):
        then, now = (_size_text(r.get("object_size")) for r in (old, new))
        changes.append(f"with another object size ({then}; now {now})")
    if old.get("precision", "auto") != new.get("precision", "auto"):  # absent: "auto" (older records)
        changes.append(
            f"in another precision ({old.get('precision', 'auto')}; now {new.get('precision', 'auto')})"
        )
    if old.get("format") != new.get("format"):
        changes.append(f"in another format ({old.get('format')}; now {new.get('format')})")
    return changes


def _size_text(size: Any) -> str:
    """``--object-size`` as written on the command line (``"default"`` when not given)."""
    if size is None:
        return "default"
    return f"{size:g} px" if isinstance(size, (int, float)) else str(size)


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
