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


#: The default prompt table: no file column, one point on every input.
ONE_POINT = "row,col\n20,30\n"


def _segment(
    tmp_path: Path,
    weights: Path,
    *inputs: Path | str,
    out: Path,
    extra: tuple = (),
    table: str | None = ONE_POINT,
) -> int:
    """``napari-sam segment INPUTS --points <table> --out OUT`` (no ``--points`` when ``table`` is None)."""
    argv = ["segment", *map(str, inputs), "--out", str(out)]
    if table is not None:
        points = tmp_path / "points.csv"
        points.write_text(table)
        argv += ["--points", str(points)]
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


# ---------------------------------------------------------------------------------------------- F3


def _replace_image(path: Path, seed: int, shape: tuple[int, int] = (48, 64), keep_time: bool = False) -> None:
    """Another image at ``path`` (optionally with the old file's modification time)."""
    import os

    old = path.stat()
    rng = np.random.default_rng(seed)
    tifffile.imwrite(path, (rng.random(shape) * 3000).astype(np.uint16))
    if keep_time:
        os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns))


CHANGES = {
    "other-prompts": ({"table": "row,col\n20,30\n10,50\n"}, "other prompts"),
    "auto": ({"table": None, "extra": ("--auto",)}, "another mode"),
    "other-model": ({"model": "small_b"}, "another model"),
    "no-propagate": ({"extra": ("--no-propagate",)}, "propagat"),
    "channel": ({"extra": ("--channel", "0")}, "channel"),
    "image-replaced": ({"replace": {"seed": 9}}, "another version of the image"),
    "image-of-another-shape": ({"replace": {"seed": 9, "shape": (64, 80)}}, "another version of the image"),
    "same-size-and-time": ({"replace": {"seed": 9, "keep_time": True}}, "another version of the image"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_labels_made_another_way_are_not_done(tmp_path, small_weights, capsys, change):
    """Issue F3: other prompts, mode, model, propagation, channel or input content → not "already done"."""
    how, what = CHANGES[change]
    _write_images(tmp_path / "images", "a.tif")
    source = tmp_path / "images" / "a.tif"
    out = tmp_path / "labels"
    assert _segment(tmp_path, small_weights, source, out=out) == 0
    made = (out / "a_labels.tif").read_bytes()
    capsys.readouterr()
    if "replace" in how:
        size = source.stat().st_size
        _replace_image(source, **how["replace"])
        assert not how["replace"].get("keep_time") or source.stat().st_size == size
    weights = small_weights.parent.parent / how["model"] / "weights.pth" if "model" in how else small_weights
    again = {"table": how.get("table", ONE_POINT), "extra": how.get("extra", ())}
    assert _segment(tmp_path, weights, source, out=out, **again) == 1
    captured = capsys.readouterr()
    assert SUMMARY_0_2_0 in captured.out
    failed = [line for line in captured.err.splitlines() if "a.tif failed" in line]
    assert len(failed) == 1 and what in failed[0] and "--overwrite" in failed[0], captured.err
    assert (out / "a_labels.tif").read_bytes() == made
    if change in ("other-prompts", "other-model", "image-replaced", "same-size-and-time"):
        # --overwrite redoes them; then the new settings are "already done"
        extra = (*again["extra"], "--overwrite")
        assert _segment(tmp_path, weights, source, out=out, table=again["table"], extra=extra) == 0
        assert "1 done, 0 skipped (already done), 0 failed" in capsys.readouterr().out
        assert _segment(tmp_path, weights, source, out=out, **again) == 0
        assert "0 done, 1 skipped (already done), 0 failed" in capsys.readouterr().out


def test_the_same_request_again_is_done(tmp_path, small_weights, capsys):
    """The same table written differently (other separators, 20 vs 20.0, a copy of the weights) is done."""
    import shutil

    _write_images(tmp_path / "images", "a.tif")
    out = tmp_path / "labels"
    assert (
        _segment(tmp_path, small_weights, tmp_path / "images", out=out, table="file,row,col\na.tif,20,30\n")
        == 0
    )
    capsys.readouterr()
    copy = tmp_path / "copy.pth"
    shutil.copyfile(small_weights, copy)
    same = "row;col\n20,0;30\n"
    assert _segment(tmp_path, copy, tmp_path / "images", out=out, table=same) == 0
    assert "0 done, 1 skipped (already done), 0 failed" in capsys.readouterr().out


def test_labels_recorded_by_an_earlier_version_are_not_done(tmp_path, small_weights, capsys):
    """A record without the settings (record format 1): made with unknown settings, redone only when asked."""
    _write_images(tmp_path / "images", "a.tif")
    out = tmp_path / "labels"
    source = tmp_path / "images" / "a.tif"
    assert _segment(tmp_path, small_weights, source, out=out) == 0
    record_file = out / "a_labels.tif.napari-sam.json"
    record = json.loads(record_file.read_text())
    old = {k: record[k] for k in ("output", "input", "fingerprint", "command", "written_by", "written_at")}
    record_file.write_text(json.dumps({"napari_sam_output": 1, **old, "model": str(small_weights)}))
    capsys.readouterr()
    assert _segment(tmp_path, small_weights, source, out=out) == 1
    captured = capsys.readouterr()
    assert SUMMARY_0_2_0 in captured.out and "unknown settings" in captured.err
    assert "--overwrite" in captured.err
    assert _segment(tmp_path, small_weights, source, out=out, extra=("--overwrite",)) == 0
    assert _segment(tmp_path, small_weights, source, out=out) == 0
    assert "0 done, 1 skipped (already done), 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["not-json", "other-output", "not-a-record"])
def test_a_damaged_record_is_described_as_it_is(tmp_path, small_weights, capsys, damage):
    _write_images(tmp_path / "images", "a.tif")
    out = tmp_path / "labels"
    source = tmp_path / "images" / "a.tif"
    assert _segment(tmp_path, small_weights, source, out=out) == 0
    record_file = out / "a_labels.tif.napari-sam.json"
    record = json.loads(record_file.read_text())
    text = {
        "not-json": '{"napari_sam_output": 2, "outp',
        "other-output": json.dumps({**record, "output": "b_labels.tif"}),
        "not-a-record": json.dumps({"hello": 1}),
    }[damage]
    record_file.write_text(text)
    capsys.readouterr()
    assert _segment(tmp_path, small_weights, source, out=out) == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if "a.tif failed" in line)
    assert "no a_labels.tif.napari-sam.json beside it" not in line
    want = {
        "not-json": "cannot be read",
        "other-output": "b_labels.tif",
        "not-a-record": "not a napari-sam record",
    }
    assert want[damage] in line and "--overwrite" in line


# ---------------------------------------------------------------------------------------------- inputs


def test_a_shell_glob_over_the_output_folder_resumes(tmp_path, small_weights, capsys):
    """Issue F4: ``segment d/*.tif --out d`` twice: the second run finds a_labels.tif among the inputs."""
    folder = tmp_path / "d"
    _write_images(folder, "a.tif", "b.tif")
    assert _segment(tmp_path, small_weights, folder / "a.tif", folder / "b.tif", out=folder) == 0
    capsys.readouterr()
    glob = sorted(folder.glob("*.tif"))
    assert [p.name for p in glob] == ["a.tif", "a_labels.tif", "b.tif", "b_labels.tif"]
    assert _segment(tmp_path, small_weights, *glob, out=folder) == 0
    captured = capsys.readouterr()
    assert "0 done, 2 skipped (already done), 0 failed" in captured.out
    notes = [line for line in captured.err.splitlines() if "not an input" in line]
    assert len(notes) == 2 and "a_labels.tif: labels napari-sam wrote for a.tif" in notes[0]
    assert _label_files(folder) == ["a.tif", "a_labels.tif", "b.tif", "b_labels.tif"]


def test_the_same_input_twice_is_one_input(tmp_path, small_weights, capsys):
    folder = tmp_path / "images"
    _write_images(folder, "a.tif")
    assert (
        _segment(tmp_path, small_weights, folder, folder / "a.tif", folder / "a.tif", out=tmp_path / "o") == 0
    )
    assert "1 done, 0 skipped (already done), 0 failed" in capsys.readouterr().out


def test_one_path_as_the_inputs_of_segment_files_and_embed_files(tmp_path, small_weights):
    from napari_sam.batch import embed_files, segment_files

    _write_images(tmp_path / "images", "a.tif")
    (tmp_path / "p.csv").write_text(ONE_POINT)
    source = tmp_path / "images" / "a.tif"
    options = {"model": str(small_weights), "device": "cpu", "progress": False}
    summary = segment_files(str(source), tmp_path / "o", points=tmp_path / "p.csv", **options)
    assert summary.ok == ["a.tif"]
    assert embed_files(source, tmp_path / "cache", **options).ok == ["a.tif"]


def _ome_zarr(path: Path) -> Path:
    """A small 2D OME-Zarr image (zarr v2, one level)."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    group.create_array("0", data=_image(0), chunks=(48, 64))
    axes = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    scale = [{"type": "scale", "scale": [0.5, 0.5]}]
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}
    ]
    return path


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("command", "option", "inside"),
    [
        ("segment", "--cache", "."),
        ("segment", "--cache", "caches"),
        ("segment", "--out", "labels"),
        ("embed", "--out", "cache"),
    ],
)
def test_nothing_is_written_into_a_zarr_input(tmp_path, small_weights, capsys, command, option, inside):
    """Issue F5: a cache or output folder inside an OME-Zarr input is refused before anything is made."""
    image = _ome_zarr(tmp_path / "a.zarr")
    before = _tree(image)
    (tmp_path / "p.csv").write_text(ONE_POINT)
    target = str(image / inside)
    argv = [command, str(image), "--model", str(small_weights), "--device", "cpu", "-q"]
    if command == "segment":
        argv += ["--points", str(tmp_path / "p.csv")]
        argv += ["--out", str(tmp_path / "out")] if option == "--cache" else []
    argv += [option, target]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "a.zarr" in err and "input" in err
    assert _tree(image) == before
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_an_output_holding_an_input_is_never_replaced(tmp_path, small_weights, capsys, overwrite):
    """Issue F6: ``d/x.tif`` and ``d/x_labels.zarr/y.tif``, ``--out d --format zarr``: y.tif stays."""
    folder = tmp_path / "d"
    _write_images(folder, "x.tif")
    inner = _write_images(folder / "x_labels.zarr", "y.tif")
    inputs = (folder / "x_labels.zarr" / "y.tif", folder / "x.tif")
    extra = ("--format", "zarr", *(("--overwrite",) if overwrite else ()))
    assert _segment(tmp_path, small_weights, *inputs, out=folder, extra=extra) == 1
    captured = capsys.readouterr()
    assert "1 done, 0 skipped (already done), 1 failed" in captured.out
    failed = [line for line in captured.err.splitlines() if "x.tif failed" in line]
    assert len(failed) == 1 and "y.tif" in failed[0] and "input" in failed[0]
    assert (folder / "x_labels.zarr" / "y.tif").read_bytes() == inner["y.tif"]


def test_a_table_that_names_none_of_the_inputs_is_a_usage_error(tmp_path, small_weights, capsys):
    """Issue F7: rows for ``cells.tif`` and ``B`` with inputs ``Cells.tif`` and ``b.tif`` → exit 2."""
    folder = tmp_path / "d"
    _write_images(folder, "Cells.tif", "b.tif")
    table = "file,row,col\ncells.tif,20,30\nB,20,30\n"
    assert _segment(tmp_path, small_weights, folder, out=tmp_path / "o", table=table) == 2
    err = capsys.readouterr().err
    assert "points.csv" in err and "cells.tif" in err and "Cells.tif" in err and "b.tif" in err
    assert "exactly" in err
    assert not (tmp_path / "o").exists()
