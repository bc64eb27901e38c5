"""The inputs of a batch, and where its outputs may go.

:func:`expand_inputs` turns the paths a user gave into the list of input images (folders expanded,
repeats and napari-sam's own labels left out). An output never lands on an input: an output folder
that is an input or lies inside one is refused (:func:`check_output_folder`), and an item whose
output is, lies in or holds one of the run's inputs (:func:`input_conflicts`) is never written
(:func:`refuse_inputs`), with or without ``overwrite``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io import find_images, image_name, output_record
from .runner import BatchItem

__all__ = [
    "check_output_folder",
    "expand_inputs",
    "file_identity",
    "input_conflicts",
    "output_conflict",
    "refuse_folder_in_inputs",
    "refuse_inputs",
]


def file_identity(path: Path) -> set[tuple[Any, ...]]:
    """Keys equal for two names of one file: its resolved path, and (device, inode) when it exists."""
    keys: set[tuple[Any, ...]] = {("path", os.path.normcase(str(path.resolve())))}
    with contextlib.suppress(OSError):
        info = path.stat()
        keys.add(("inode", info.st_dev, info.st_ino))
    return keys


def output_conflict(output: Path, source: Path, owners: set[tuple[Any, ...]]) -> str | None:
    """How ``output`` collides with the input ``source`` (whose identity keys are ``owners``), or None."""
    if not owners.isdisjoint(file_identity(output)):
        return "is one of the inputs"
    target, place = _comparable(output), _comparable(source)
    if place in target.parents:
        return f"is inside the input {source}"
    if target in place.parents:
        return f"holds the input {source}"
    return None


def input_conflicts(items: Sequence[BatchItem], sources: Sequence[Path]) -> dict[str, str]:
    """``{output: how}`` for the items whose output is one of ``sources``, lies inside one or holds one
    (``how``: ``"is one of the inputs"``, ``"is inside the input …"``, ``"holds the input …"``)."""
    owners = [(source, file_identity(source)) for source in sources]
    conflicts = {}
    for item in items:
        how = next((h for s, keys in owners if (h := output_conflict(item.output, s, keys))), None)
        if how is not None:
            conflicts[str(item.output)] = how
    return conflicts


def refuse_inputs(item: BatchItem, conflicts: Mapping[str, str]) -> None:
    """Raise when ``item.output`` is, lies in or holds one of the run's inputs (see
    :func:`input_conflicts`): never written, with or without ``overwrite``."""
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


def check_output_folder(folder: Path, what: str, sources: Sequence[Path] = ()) -> Path:
    """Create ``folder`` if needed and check that files can be written in it.

    A folder that is one of ``sources`` or lies inside one (an OME-Zarr input, say) is refused before
    anything is created: napari-sam never writes into an input.
    """
    refuse_folder_in_inputs(folder, sources, what)
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


def refuse_folder_in_inputs(folder: Path, sources: Sequence[Path], what: str) -> None:
    """A :class:`UsageError` when ``folder`` is one of ``sources`` or lies inside one."""
    for source in sources:
        how = output_conflict(folder, source, file_identity(source))
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
        keys = file_identity(path)
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


def expand_inputs(inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Path]:
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
