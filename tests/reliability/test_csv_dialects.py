"""Prompt tables as spreadsheets and napari write them (issue 16, item 11).

Semicolon- and tab-separated files (Excel in many locales, with decimal commas), a trailing
separator on every line, a UTF-8 byte-order mark and Windows line ends are read as the plain comma
table; napari's Points-layer CSV export (``index,axis-0,axis-1[,axis-2]``) prompts a single image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam.batch import read_prompts_csv
from napari_sam.cli import main
from napari_sam.errors import UsageError

BOXES = [["a.tif", "3", "1", "2.5", "10", "20"], ["b.tif", "0", "5", "5", "9", "9.25"]]
BOX_HEADER = ["file", "z", "min_row", "min_col", "max_row", "max_col"]
POINTS = [["a.tif", "10.5", "20", "1"], ["a.tif", "3", "4", "0"]]
POINT_HEADER = ["file", "row", "col", "label"]


def _table(header: list[str], rows: list[list[str]], sep: str, *, trailing: bool = False) -> str:
    def cell(value: str) -> str:  # Excel writes semicolons where the decimal mark is a comma
        return value.replace(".", ",") if sep == ";" and not value.endswith(".tif") else value

    lines = [sep.join(header)] + [sep.join(cell(v) for v in row) for row in rows]
    return "".join(line + (sep if trailing else "") + "\n" for line in lines)


DIALECTS = {
    "semicolon-decimal-comma": {"sep": ";"},
    "tab": {"sep": "\t"},
    "trailing-comma": {"sep": ",", "trailing": True},
    "trailing-semicolon": {"sep": ";", "trailing": True},
    "trailing-tab": {"sep": "\t", "trailing": True},
}


@pytest.mark.parametrize("name", list(DIALECTS))
@pytest.mark.parametrize(
    ("kind", "header", "rows"), [("boxes", BOX_HEADER, BOXES), ("points", POINT_HEADER, POINTS)]
)
def test_spreadsheet_dialects_read_like_the_comma_table(tmp_path, name, kind, header, rows):
    plain = tmp_path / "plain.csv"
    plain.write_text(_table(header, rows, ","))
    other = tmp_path / f"{name}.csv"
    other.write_text(_table(header, rows, **DIALECTS[name]))
    want, got = read_prompts_csv(plain, kind), read_prompts_csv(other, kind)
    assert got.ndim == want.ndim and set(got.rows) == set(want.rows)
    for key in want.rows:
        np.testing.assert_array_equal(got.rows[key], want.rows[key])


def test_excel_utf8_bom_and_windows_line_ends(tmp_path):
    text = _table(BOX_HEADER, BOXES, ";", trailing=True).replace("\n", "\r\n")
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    table = read_prompts_csv(path, "boxes")
    np.testing.assert_array_equal(table.rows["a.tif"], [[3, 1, 2.5, 4, 10, 20]])


def test_a_comma_inside_a_value_of_a_semicolon_table(tmp_path):
    """The separator is the one every line agrees on, not any comma in sight."""
    path = tmp_path / "odd.csv"
    path.write_text("file;row;col\nx,y.tif;1;2\n")  # a comma inside a file name, semicolons between
    table = read_prompts_csv(path, "points")
    np.testing.assert_array_equal(table.rows["x,y.tif"], [[1, 2, 1]])


def test_empty_values_in_the_middle_are_still_an_error(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("row,col,label,\n1,,1,\n")
    with pytest.raises(UsageError, match="line 2: column 'col' must be a number"):
        read_prompts_csv(path, "points")


# ---------------------------------------------------------------------------------------------- napari


def _napari_export(path: Path, data: np.ndarray, features: dict | None = None) -> Path:
    """The CSV napari's own Points writer (File > Save Selected Layer) makes."""
    writer = pytest.importorskip("napari_builtins.io._write")
    written = writer.napari_write_points(str(path), data, {"properties": features or {}})
    assert written == str(path)
    return path


def test_napari_points_export_2d_and_3d(tmp_path):
    flat = _napari_export(tmp_path / "flat.csv", np.array([[10.0, 20.5], [30.0, 4.0]]))
    assert flat.read_text().splitlines()[0] == "index,axis-0,axis-1"
    table = read_prompts_csv(flat, "points")
    assert table.ndim == 2 and list(table.rows) == [None]
    np.testing.assert_array_equal(table.rows[None], [[10, 20.5, 1], [30, 4, 1]])

    labels = {"label": np.array(["positive", "negative", "positive"])}
    stack = _napari_export(tmp_path / "stack.csv", np.array([[2.0, 10, 20], [2, 15, 25], [3, 5, 6]]), labels)
    table = read_prompts_csv(stack, "points")
    assert table.ndim == 3
    np.testing.assert_array_equal(table.rows[None], [[2, 10, 20, 1], [2, 15, 25, 0], [3, 5, 6, 1]])


def test_point_kinds_are_read_as_the_annotator_reads_them(tmp_path):
    """A napari export carries the layer's own spellings of the kind (fg / bg …); the table reads
    every spelling the annotator accepts, and nothing else."""
    from napari_sam._napari.prompts import label_value
    from napari_sam.engine.decode.coords import POINT_KIND_WORDS

    words = list(POINT_KIND_WORDS)
    labels = {"label": np.array([w.upper() if k % 2 else w for k, w in enumerate(words)])}
    data = np.array([[float(k), 2.0] for k in range(len(words))])
    table = read_prompts_csv(_napari_export(tmp_path / "kinds.csv", data, labels), "points")
    assert table.rows[None][:, -1].tolist() == [label_value(w) for w in labels["label"]]
    odd = _napari_export(tmp_path / "odd.csv", np.array([[1.0, 2.0]]), {"label": np.array(["maybe"])})
    with pytest.raises(UsageError, match="label"):
        read_prompts_csv(odd, "points")


def test_napari_points_export_with_other_features_and_too_many_axes(tmp_path):
    features = {"confidence": np.array([0.5, 0.9])}
    table = read_prompts_csv(
        _napari_export(tmp_path / "f.csv", np.array([[1.0, 2], [3, 4]]), features), "points"
    )
    np.testing.assert_array_equal(table.rows[None], [[1, 2, 1], [3, 4, 1]])
    four = _napari_export(tmp_path / "t.csv", np.array([[0.0, 1, 2, 3]]))
    with pytest.raises(UsageError, match="axis-3"):
        read_prompts_csv(four, "points")


def _image(path: Path) -> Path:
    rng = np.random.default_rng(3)
    image = (rng.random((48, 64)) * 300).astype(np.uint16)
    image[12:30, 20:44] += 2000
    tifffile.imwrite(path, image)
    return path


def test_segment_takes_a_napari_export_for_one_image(tmp_path, small_weights, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "weights-cache"))
    image = _image(tmp_path / "cells.tif")
    export = _napari_export(
        tmp_path / "clicks.csv", np.array([[20.0, 30.0], [40.0, 5.0]]), {"label": np.array([True, False])}
    )
    plain = tmp_path / "plain.csv"
    plain.write_text("row,col,label\n20,30,1\n40,5,0\n")
    model = ["--model", str(small_weights), "--device", "cpu", "-q"]
    for table, out in ((export, "from_napari"), (plain, "from_plain")):
        argv = ["segment", str(image), "--points", str(table), "--out", str(tmp_path / out), *model]
        assert main(argv) == 0, capsys.readouterr().err
    napari_labels = tifffile.imread(tmp_path / "from_napari" / "cells_labels.tif")
    np.testing.assert_array_equal(
        napari_labels, tifffile.imread(tmp_path / "from_plain" / "cells_labels.tif")
    )
    assert napari_labels.any()


def test_a_napari_export_for_several_images_is_a_usage_error(tmp_path, capsys):
    a, b = _image(tmp_path / "a.tif"), _image(tmp_path / "b.tif")
    export = _napari_export(tmp_path / "clicks.csv", np.array([[20.0, 30.0]]))
    argv = ["segment", str(a), str(b), "--points", str(export), "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "napari Points-layer export" in err and "2 inputs" in err and "file" in err
    assert not (tmp_path / "o").exists()


def test_a_napari_export_with_a_file_column_prompts_each_image(tmp_path, small_weights, capsys, monkeypatch):
    """Issue F1: the 'file' column of a napari export is read: each image gets its own points."""
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "weights-cache"))
    export = tmp_path / "clicks.csv"
    export.write_text("index,axis-0,axis-1,file,label\n0,20,30,a.tif,positive\n1,40,5,b.tif,positive\n")
    table = read_prompts_csv(export, "points")
    assert not table.napari_export and sorted(table.rows) == ["a.tif", "b.tif"]
    np.testing.assert_array_equal(table.rows["b.tif"], [[40, 5, 1]])

    a, b = _image(tmp_path / "a.tif"), _image(tmp_path / "b.tif")
    plain = tmp_path / "plain.csv"
    plain.write_text("file,row,col\na.tif,20,30\nb.tif,40,5\n")
    model = ["--model", str(small_weights), "--device", "cpu", "-q"]
    for csv_file, out in ((export, "from_napari"), (plain, "from_plain")):
        argv = ["segment", str(a), str(b), "--points", str(csv_file), "--out", str(tmp_path / out), *model]
        assert main(argv) == 0, capsys.readouterr().err
    for name in ("a_labels.tif", "b_labels.tif"):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "from_napari" / name), tifffile.imread(tmp_path / "from_plain" / name)
        )
    # one input, rows for two: only its own rows prompt it
    argv = ["segment", str(b), "--points", str(export), "--out", str(tmp_path / "only_b"), *model]
    assert main(argv) == 0
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "only_b" / "b_labels.tif"),
        tifffile.imread(tmp_path / "from_plain" / "b_labels.tif"),
    )


def _shapes_export(path: Path, shapes: list, kinds: list[str] | None = None) -> Path:
    """The CSV napari's own Shapes writer (File > Save Selected Layer) makes."""
    writer = pytest.importorskip("napari_builtins.io._write")
    data = [np.asarray(s, dtype=float) for s in shapes]
    meta = {"shape_type": kinds or ["rectangle"] * len(data)}
    assert writer.napari_write_shapes(str(path), data, meta) == str(path)
    return path


RECTANGLES = [[[10, 20], [10, 60], [40, 60], [40, 20]], [[2.5, 3], [2.5, 9], [7, 9], [7, 3]]]


def test_a_napari_shapes_export_is_a_box_table(tmp_path):
    """Issue F2: each rectangle of a Shapes-layer export is one box, as the napari nodes read it."""
    from napari_sam.nodes import shapes_to_boxes

    flat = _shapes_export(tmp_path / "flat.csv", RECTANGLES)
    assert flat.read_text().splitlines()[0] == "index,shape-type,vertex-index,axis-0,axis-1"
    table = read_prompts_csv(flat, "boxes")
    assert table.ndim == 2 and list(table.rows) == [None] and table.napari_export
    np.testing.assert_array_equal(table.rows[None], shapes_to_boxes(RECTANGLES))

    on_slices = [[[3, *v] for v in RECTANGLES[0]], [[5, *v] for v in RECTANGLES[1]]]
    table = read_prompts_csv(_shapes_export(tmp_path / "stack.csv", on_slices), "boxes")
    assert table.ndim == 3
    np.testing.assert_array_equal(table.rows[None], shapes_to_boxes(on_slices))
    assert table.rows[None][:, 0].tolist() == [3, 5] and table.rows[None][:, 3].tolist() == [4, 6]

    with pytest.raises(UsageError, match="pass it with --boxes"):
        read_prompts_csv(flat, "points")


@pytest.mark.parametrize(
    ("shapes", "kinds", "message"),
    [
        (RECTANGLES, ["rectangle", "ellipse"], "shape 1 is an ellipse"),
        ([[[1, 1], [9, 9]]], ["line"], "shape 0 is a line"),
        (
            [[[3, *v] for v in RECTANGLES[0][:2]] + [[4, *v] for v in RECTANGLES[0][2:]]],
            None,
            "slices 3 to 4",
        ),
        ([[[5.5, 5], [5.5, 9], [5.5, 9], [5.5, 5]]], None, "no pixel"),
    ],
    ids=["ellipse", "line", "across-slices", "flat"],
)
def test_a_napari_shapes_export_that_is_not_boxes(tmp_path, shapes, kinds, message):
    path = _shapes_export(tmp_path / "shapes.csv", shapes, kinds)
    with pytest.raises(UsageError, match=message):
        read_prompts_csv(path, "boxes")


def test_segment_takes_a_napari_shapes_export_as_boxes(tmp_path, small_weights, capsys, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "weights-cache"))
    image = _image(tmp_path / "cells.tif")
    export = _shapes_export(tmp_path / "boxes.csv", [[[12, 20], [12, 43], [29, 43], [29, 20]]])
    plain = tmp_path / "plain.csv"
    plain.write_text("min_row,min_col,max_row,max_col\n12,20,30,44\n")
    model = ["--model", str(small_weights), "--device", "cpu", "-q"]
    for table, out in ((export, "from_napari"), (plain, "from_plain")):
        argv = ["segment", str(image), "--boxes", str(table), "--out", str(tmp_path / out), *model]
        assert main(argv) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "from_napari" / "cells_labels.tif"),
        tifffile.imread(tmp_path / "from_plain" / "cells_labels.tif"),
    )
    argv = ["segment", str(image), "--points", str(export), "--out", str(tmp_path / "o"), *model]
    assert main(argv) == 2
    assert "Shapes-layer export: pass it with --boxes" in capsys.readouterr().err


def test_an_excel_separator_line(tmp_path):
    """Excel's ``sep=;`` first line names the separator; it is not the header."""
    path = tmp_path / "excel.csv"
    path.write_bytes(b"sep=;\r\nfile;min_row;min_col;max_row;max_col\r\na.tif;1;2,5;10;20\r\n")
    table = read_prompts_csv(path, "boxes")
    np.testing.assert_array_equal(table.rows["a.tif"], [[1, 2.5, 10, 20]])
    path.write_text("sep=,\nrow,col\n1,2\n")
    np.testing.assert_array_equal(read_prompts_csv(path, "points").rows[None], [[1, 2, 1]])
