"""Prompt tables: the CSV files of boxes or points that ``napari-sam segment`` reads (``CSV_HELP``).

:func:`read_prompts_csv` reads a table into a :class:`PromptTable` (prompts by file). Comma-,
semicolon- and tab-separated tables are read, with an Excel ``sep=`` line, a decimal comma, a BOM,
trailing separators and ``#`` comments; so are napari Points- and Shapes-layer exports (File > Save
Selected Layers).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from ..engine.decode.coords import point_kind, vertices_to_box
from ..errors import UsageError
from ..io import image_name

__all__ = ["CSV_HELP", "PromptKind", "PromptTable", "read_prompts_csv"]

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
    (:func:`~napari_sam.engine.decode.coords.vertices_to_box`)."""
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
    box = vertices_to_box(points)
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
