"""``napari-sam segment`` / ``embed`` never write over an input and never mistake a file for an output.

Issue 16, items 1 and 2: an input named like another input's output (``a.tif`` beside a real image
``a_labels.tif``), a user's file that happens to have an output's name, an output of another input,
an output edited after it was written, and the outputs of an earlier run in the input folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sam.cli import main

SUMMARY_0_2_0 = "0 done, 0 skipped (already done), 1 failed"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "weights-cache"))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)


def _image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (rng.random((48, 64)) * 300).astype(np.uint16)
    image[12:30, 20:44] += 2000
    return image


def _write_images(folder: Path, *names: str) -> dict[str, bytes]:
    """Real images under ``names``; returns their bytes (to check they are never changed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        tifffile.imwrite(folder / name, _image(i))
    return {name: (folder / name).read_bytes() for name in names}


def _segment(tmp_path: Path, weights: Path, *inputs: Path | str, out: Path, extra: tuple = ()) -> int:
    points = tmp_path / "points.csv"
    points.write_text("row,col\n20,30\n")  # no file column: one point on every input
    argv = ["segment", *map(str, inputs), "--points", str(points), "--out", str(out)]
    return main([*argv, "--model", str(weights), "--device", "cpu", "-q", *extra])


def _label_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".json"))


# ---------------------------------------------------------------------------------------------- item 1


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_an_input_named_like_an_output_is_never_written(tmp_path, small_weights, capsys, overwrite):
    """``a.tif`` beside a real image ``a_labels.tif``, ``--out`` = their folder: ``a_labels.tif`` stays."""
    folder = tmp_path / "images"
    before = _write_images(folder, "a.tif", "a_labels.tif")
    extra = ("--overwrite",) if overwrite else ()
    assert _segment(tmp_path, small_weights, folder, out=folder, extra=extra) == 1
    captured = capsys.readouterr()
    assert (folder / "a_labels.tif").read_bytes() == before["a_labels.tif"]
    assert (folder / "a.tif").read_bytes() == before["a.tif"]
    assert "1 done, 0 skipped (already done), 1 failed" in captured.out
    failed = [line for line in captured.err.splitlines() if "a.tif failed" in line]
    assert len(failed) == 1 and "is one of the inputs" in failed[0] and "a_labels.tif" in failed[0]
    assert "Traceback" not in captured.err
    # the other input is an image like any other: its own labels are written
    assert tifffile.imread(folder / "a_labels_labels.tif").shape == (48, 64)


def test_a_file_with_the_output_name_is_not_done_and_kept(tmp_path, small_weights, capsys):
    """A user's ``cells_labels.tif`` in ``--out`` is neither "skipped (already done)" nor replaced."""
    _write_images(tmp_path / "images", "cells.tif")
    out = tmp_path / "labels"
    out.mkdir()
    mine = np.zeros((48, 64), np.uint16)
    mine[5:15, 5:15] = 3
    tifffile.imwrite(out / "cells_labels.tif", mine)
    hand_drawn = (out / "cells_labels.tif").read_bytes()

    assert _segment(tmp_path, small_weights, tmp_path / "images" / "cells.tif", out=out) == 1
    captured = capsys.readouterr()
    assert SUMMARY_0_2_0 in captured.out
    assert "not written by napari-sam" in captured.err and "--overwrite" in captured.err
    assert (out / "cells_labels.tif").read_bytes() == hand_drawn

    # asked to: replaced, and from then on known as ours (a rerun skips it)
    assert (
        _segment(tmp_path, small_weights, tmp_path / "images" / "cells.tif", out=out, extra=("--overwrite",))
        == 0
    )
    assert (out / "cells_labels.tif").read_bytes() != hand_drawn
    assert _segment(tmp_path, small_weights, tmp_path / "images" / "cells.tif", out=out) == 0
    assert "0 done, 1 skipped (already done), 0 failed" in capsys.readouterr().out


def test_labels_of_another_input_with_the_same_name_are_not_done(tmp_path, small_weights, capsys):
    """``day1/a.tif`` and ``day2/a.tif`` into one ``--out``: the second is not "already done"."""
    _write_images(tmp_path / "day1", "a.tif")
    (tmp_path / "day2").mkdir()
    tifffile.imwrite(tmp_path / "day2" / "a.tif", _image(7))
    out = tmp_path / "labels"
    assert _segment(tmp_path, small_weights, tmp_path / "day1" / "a.tif", out=out) == 0
    first = (out / "a_labels.tif").read_bytes()
    capsys.readouterr()
    assert _segment(tmp_path, small_weights, tmp_path / "day2" / "a.tif", out=out) == 1
    captured = capsys.readouterr()
    assert SUMMARY_0_2_0 in captured.out
    assert "written by napari-sam for another input" in captured.err and "day1" in captured.err
    assert (out / "a_labels.tif").read_bytes() == first


def test_labels_changed_after_they_were_written_are_kept(tmp_path, small_weights, capsys):
    """Labels corrected by hand after the run: a rerun does not call them done, nor replace them."""
    _write_images(tmp_path / "images", "a.tif")
    out = tmp_path / "labels"
    source = tmp_path / "images" / "a.tif"
    assert _segment(tmp_path, small_weights, source, out=out) == 0
    corrected = tifffile.imread(out / "a_labels.tif")
    corrected[0:4, 0:4] = 9
    tifffile.imwrite(out / "a_labels.tif", corrected)
    edited = (out / "a_labels.tif").read_bytes()
    capsys.readouterr()
    assert _segment(tmp_path, small_weights, source, out=out) == 1
    captured = capsys.readouterr()
    assert SUMMARY_0_2_0 in captured.out and "changed since napari-sam wrote it" in captured.err
    assert (out / "a_labels.tif").read_bytes() == edited


def test_the_output_record_names_input_and_tool(tmp_path, small_weights):
    _write_images(tmp_path / "images", "a.tif")
    out = tmp_path / "labels"
    assert _segment(tmp_path, small_weights, tmp_path / "images", out=out, extra=("--format", "zarr")) == 0
    record = json.loads((out / "a_labels.zarr.napari-sam.json").read_text())
    assert record["command"] == "segment" and record["output"] == "a_labels.zarr"
    assert (out / record["input"]).resolve() == (tmp_path / "images" / "a.tif").resolve()
    assert record["written_by"].startswith("napari-sam ")


def test_embed_never_writes_a_cache_over_an_input(tmp_path, small_weights, capsys):
    """An input that sits where another input's cache would go is refused by name, and kept."""
    import zarr

    folder = tmp_path / "images"
    _write_images(folder, "b.tif")
    zarr.create_array(str(folder / "b.embeddings.zarr"), data=_image(3), chunks=(48, 64))
    argv = ["embed", str(folder / "b.tif"), str(folder / "b.embeddings.zarr"), "--out", str(folder)]
    assert main([*argv, "--model", str(small_weights), "--device", "cpu", "-q", "--overwrite"]) == 1
    captured = capsys.readouterr()
    assert "1 done, 0 skipped (already done), 1 failed" in captured.out
    line = next(line for line in captured.err.splitlines() if "b.tif failed" in line)
    assert "is one of the inputs" in line
    np.testing.assert_array_equal(
        zarr.open_array(str(folder / "b.embeddings.zarr"), mode="r")[...], _image(3)
    )


# ---------------------------------------------------------------------------------------------- item 2


@pytest.mark.parametrize("fmt", ["tif", "zarr"])
def test_rerun_into_the_input_folder_does_not_segment_earlier_outputs(tmp_path, small_weights, capsys, fmt):
    folder = tmp_path / "images"
    _write_images(folder, "a.tif", "b.tif")
    extra = ("--format", fmt)
    assert _segment(tmp_path, small_weights, folder, out=folder, extra=extra) == 0
    assert "2 done, 0 skipped (already done), 0 failed" in capsys.readouterr().out
    for _ in range(2):
        assert _segment(tmp_path, small_weights, folder, out=folder, extra=extra) == 0
        assert "0 done, 2 skipped (already done), 0 failed" in capsys.readouterr().out
        assert _label_files(folder) == ["a.tif", f"a_labels.{fmt}", "b.tif", f"b_labels.{fmt}"]
    # --overwrite redoes the images, still not the labels
    assert _segment(tmp_path, small_weights, folder, out=folder, extra=(*extra, "--overwrite")) == 0
    assert "2 done, 0 skipped (already done), 0 failed" in capsys.readouterr().out
    assert _label_files(folder) == ["a.tif", f"a_labels.{fmt}", "b.tif", f"b_labels.{fmt}"]


def test_find_images_leaves_recorded_outputs_out(tmp_path, small_weights):
    from napari_sam.io import find_images

    folder = tmp_path / "images"
    _write_images(folder, "a.tif", "a_labels_manual.tif")
    assert _segment(tmp_path, small_weights, folder / "a.tif", out=folder) == 0
    assert [p.name for p in find_images([folder])] == ["a.tif", "a_labels_manual.tif"]
    # named explicitly, an output is still taken: the user asked for it
    assert [p.name for p in find_images([folder / "a_labels.tif"])] == ["a_labels.tif"]
