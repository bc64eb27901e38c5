"""The batch runner (local and dask.distributed) and the prompt tables of the batch commands."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from napari_sam.batch import BatchItem, PromptTable, read_prompts_csv, run_batch
from napari_sam.errors import UsageError


@dataclass(frozen=True)
class WriteSum:
    """A fake per-item job: writes the sum of the input's numbers; fails on non-numbers."""

    def __call__(self, item: BatchItem, progress=None) -> None:
        total = sum(int(v) for v in item.source.read_text().split())
        if progress is not None:
            progress(1, 1)
        item.output.write_text(str(total))


def make_items(tmp_path: Path, contents: dict[str, str]) -> list[BatchItem]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    items = []
    for name, text in contents.items():
        source = tmp_path / name
        source.write_text(text)
        items.append(BatchItem(source, out / f"{name}.out"))
    return items


def test_one_failure_is_recorded_and_the_others_are_done(tmp_path):
    items = make_items(tmp_path, {"a": "1 2", "b": "x", "c": "3 4"})
    summary = run_batch(items, WriteSum(), progress=False)
    assert summary.ok == ["a", "c"] and summary.skipped == []
    assert list(summary.failed) == ["b"] and "invalid literal" in summary.failed["b"]
    assert summary.exit_code == 1
    assert (tmp_path / "out" / "a.out").read_text() == "3" and (tmp_path / "out" / "c.out").read_text() == "7"
    assert not (tmp_path / "out" / "b.out").exists()
    assert "FAILED b" in summary.text()


def test_resume_skips_done_items(tmp_path):
    items = make_items(tmp_path, {"a": "1", "b": "2"})
    items[0].output.write_text("done before")
    calls = []

    def process(item, progress):
        calls.append(item.name)
        item.output.write_text("new")

    summary = run_batch(items, process, progress=False)
    assert calls == ["b"] and summary.skipped == ["a"] and summary.ok == ["b"] and summary.exit_code == 0
    assert items[0].output.read_text() == "done before"
    again = run_batch(items, process, progress=False)
    assert again.skipped == ["a", "b"] and calls == ["b"]
    forced = run_batch(items, process, is_done=None, progress=False)
    assert forced.ok == ["a", "b"]


def test_progress_bar_does_not_change_results(tmp_path, capsys):
    items = make_items(tmp_path, {"a": "1", "b": "y"})
    summary = run_batch(items, WriteSum(), progress=True)
    assert summary.ok == ["a"] and list(summary.failed) == ["b"]
    assert "b failed" in capsys.readouterr().err


def test_interrupt_stops_the_batch(tmp_path):
    items = make_items(tmp_path, {"a": "1", "b": "2"})

    def process(item, progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(items, process, progress=False)


def test_unreachable_scheduler_is_a_usage_error(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    import napari_sam.batch.runner

    monkeypatch.setattr(napari_sam.batch.runner, "CONNECT_TIMEOUT", "0.5s")
    items = make_items(tmp_path, {"a": "1"})
    with pytest.raises(UsageError, match="cannot reach the dask scheduler"):
        run_batch(items, WriteSum(), scheduler="tcp://127.0.0.1:9", progress=False)


def test_local_cluster_runs_items_as_tasks(tmp_path):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    items = make_items(tmp_path, {"a": "1 2", "b": "nope", "c": "5"})
    items[2].output.write_text("kept")
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        summary = run_batch(items, WriteSum(), scheduler=cluster, progress=False)
    assert summary.ok == ["a"] and summary.skipped == ["c"] and list(summary.failed) == ["b"]
    assert items[0].output.read_text() == "3" and items[2].output.read_text() == "kept"


@dataclass(frozen=True)
class AppendParts:
    """A fake job split into parts on a cluster: the first creates the output, the others append to it."""

    part: int | None = None

    def split(self, item: BatchItem) -> list[AppendParts]:
        n = int(item.source.read_text())
        return [AppendParts(i) for i in range(n)]

    def __call__(self, item: BatchItem, progress=None) -> None:
        if self.part == 0:
            item.output.write_text("0\n")
            return
        if self.part == 2 and item.name == "bad":
            raise ValueError("part 2 broke")
        if not item.output.exists():
            raise FileNotFoundError("the first part has not run")
        with item.output.open("a") as f:
            f.write(f"{self.part}\n")


def test_cluster_runs_later_parts_after_the_first_and_combines_their_results(tmp_path):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    items = make_items(tmp_path, {"good": "4", "bad": "3", "one": "1"})
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster:
        summary = run_batch(items, AppendParts(), scheduler=cluster, progress=False, is_done=None)
    assert summary.ok == ["good", "one"] and summary.failed == {"bad": "part 2 broke"}
    lines = items[0].output.read_text().split()
    assert lines[0] == "0" and sorted(lines) == ["0", "1", "2", "3"]
    assert items[2].output.read_text() == "0\n"


# ---------------------------------------------------------------------------------------------- CSV


def write_csv(tmp_path, text, name="p.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_box_table_2d_by_file(tmp_path):
    csv = write_csv(
        tmp_path,
        "file,min_row,min_col,max_row,max_col\na.tif,1,2,10,20\nb,5,5,9,9\n# comment\na.tif,0,0,4,4\n",
    )
    table = read_prompts_csv(csv, "boxes")
    assert table.ndim == 2
    sources = [tmp_path / "a.tif", tmp_path / "b.ome.tif", tmp_path / "c.png"]
    matched, unmatched = table.match(sources)
    assert unmatched == []
    np.testing.assert_array_equal(matched[sources[0]], [[1, 2, 10, 20], [0, 0, 4, 4]])
    np.testing.assert_array_equal(matched[sources[1]], [[5, 5, 9, 9]])
    assert matched[sources[2]].shape == (0, 4)
    assert table.prompts(matched[sources[0]])["boxes"].shape == (2, 4)


def test_box_table_3d_with_a_slice_column_or_z_ranges(tmp_path):
    one = read_prompts_csv(
        write_csv(tmp_path, "Z, Min_Row, min_col, max_row, max_col\n3,1,2,10,20\n"), "boxes"
    )
    assert one.ndim == 3
    np.testing.assert_array_equal(one.rows[None], [[3, 1, 2, 4, 10, 20]])
    text = "max_z,min_z,min_row,min_col,max_row,max_col\n5,2,1,2,10,20\n"
    ranged = read_prompts_csv(write_csv(tmp_path, text, "r.csv"), "boxes")
    np.testing.assert_array_equal(ranged.rows[None], [[2, 1, 2, 5, 10, 20]])


def test_point_table_labels_and_aliases(tmp_path):
    table = read_prompts_csv(
        write_csv(tmp_path, "image,z,y,x,label\ns.tif,1,10,20,1\ns.tif,1,3,4,0\n"), "points"
    )
    assert table.ndim == 3
    prompts = table.prompts(table.match([tmp_path / "s.tif"])[0][tmp_path / "s.tif"])
    np.testing.assert_array_equal(prompts["points"], [[1, 10, 20], [1, 3, 4]])
    np.testing.assert_array_equal(prompts["point_labels"], [1, 0])
    plain = read_prompts_csv(write_csv(tmp_path, "row,col\n7,8\n", "q.csv"), "points")
    everyone, _ = plain.match([tmp_path / "a.tif", tmp_path / "b.tif"])
    for values in everyone.values():
        np.testing.assert_array_equal(plain.prompts(values)["point_labels"], [1])


@pytest.mark.parametrize(
    ("kind", "text", "message"),
    [
        ("boxes", "", "is empty"),
        ("boxes", "file,min_row,min_col,max_row,max_col\n", "no boxes"),
        ("boxes", "file,min_row,min_col,max_row\na,1,2,3\n", "missing max_col"),
        ("boxes", "min_row,min_col,max_row,max_col,colour\n1,2,3,4,red\n", "unexpected columns colour"),
        (
            "boxes",
            "min_row,min_col,max_row,max_col\n1,2,three,4\n",
            "line 2: column 'max_row' must be a number",
        ),
        (
            "boxes",
            "min_row,min_col,max_row,max_col\n1,2,3,4\n5,6,5,9\n",
            r"line 3: max_row \(5\) must be greater",
        ),
        ("boxes", "min_row,min_col,max_row,max_col\n1,2,3\n", "3 values for 4 columns"),
        ("boxes", "min_row,min_col,max_row,max_col\n1,2,3,nan\n", "must be finite"),
        ("points", "row,col,label\n1,2,2\n", "label must be 1"),
        ("points", "file,row\na,1\n", "missing"),
        ("points", "file,row,col\n,1,2\n", "empty file name"),
        ("points", "row,row,col\n1,1,2\n", "repeated column"),
    ],
)
def test_bad_tables_name_the_problem(tmp_path, kind, text, message):
    with pytest.raises(UsageError, match=message):
        read_prompts_csv(write_csv(tmp_path, text), kind)


def test_files_named_by_path_relative_to_the_table(tmp_path):
    (tmp_path / "tables").mkdir()
    table = write_csv(tmp_path / "tables", "file,row,col\n../data/a.tif,1,2\ndata/a.tif,3,4\n")
    matched, unmatched = read_prompts_csv(table, "points").match([tmp_path / "data" / "a.tif"])
    np.testing.assert_array_equal(matched[tmp_path / "data" / "a.tif"], [[1, 2, 1]])
    assert unmatched == ["data/a.tif"]


def test_scheduler_without_distributed_is_a_usage_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    items = make_items(tmp_path, {"a": "1"})
    with pytest.raises(UsageError, match=r"pip install 'napari-sam-pipeline\[distributed\]'"):
        run_batch(items, WriteSum(), scheduler="tcp://127.0.0.1:8786", progress=False)


def test_missing_table_and_unknown_files(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        read_prompts_csv(tmp_path / "nope.csv", "boxes")
    table = read_prompts_csv(write_csv(tmp_path, "file,row,col\na.tif,1,2\ntypo.tif,3,4\n"), "points")
    assert isinstance(table, PromptTable)
    matched, unmatched = table.match([tmp_path / "a.tif", tmp_path / "b.tif"])
    assert unmatched == ["typo.tif"]
    np.testing.assert_array_equal(matched[tmp_path / "a.tif"], [[1, 2, 1]])
    assert matched[tmp_path / "b.tif"].shape == (0, 3)


@dataclass(frozen=True)
class EmptyWhenOdd:
    """A fake job: writes its output; reports the object named by an odd input number as empty."""

    def __call__(self, item: BatchItem, progress=None):
        from napari_sam.batch import Done
        from napari_sam.batch.jobs import _empty_text
        from napari_sam.errors import EmptyObjectsWarning

        n = int(item.source.read_text())
        item.output.write_text("labels")
        if n % 2:
            return Done(empty=_empty_text([EmptyObjectsWarning([n, n + 2], [None, None])]))
        return None


def test_items_with_empty_objects_are_done_and_counted(tmp_path, capsys):
    items = make_items(tmp_path, {"a": "1", "b": "2", "c": "x"})
    summary = run_batch(items, EmptyWhenOdd(), progress=True)
    assert summary.ok == ["a", "b"] and summary.empty == {"a": "objects 1, 3 empty"}
    assert summary.exit_code == 1 and list(summary.failed) == ["c"]
    assert summary.text().splitlines()[:2] == [
        "2 done (1 with empty objects), 0 skipped (already done), 1 failed",
        "  a: done (objects 1, 3 empty)",
    ]
    assert "napari-sam: a done (objects 1, 3 empty)" in capsys.readouterr().err


def test_empty_objects_on_a_cluster_come_back_with_the_item(tmp_path):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    items = make_items(tmp_path, {"a": "2", "b": "3"})
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        summary = run_batch(items, EmptyWhenOdd(), scheduler=cluster, progress=False, is_done=None)
    assert summary.ok == ["a", "b"] and summary.empty == {"b": "objects 3, 5 empty"}


def test_automatic_mode_is_checked_recorded_and_old_records_count_as_amg(tmp_path, small_weights):
    import json

    import tifffile

    from napari_sam.batch import segment_files

    # a flat image: no objects whatever the mode, so the records are what is tested (and fast)
    tifffile.imwrite(tmp_path / "cells.tif", np.full((32, 32), 9, np.uint16))
    out = tmp_path / "labels"
    run = {"auto": True, "model": str(small_weights), "device": "cpu", "progress": False}
    with pytest.raises(UsageError, match="mode must be one of auto, ais, apg, amg, got 'fast'"):
        segment_files([tmp_path / "cells.tif"], out, **{**run, "mode": "fast"})
    with pytest.raises(UsageError, match="mode='amg' applies to automatic segmentation"):
        segment_files([tmp_path / "cells.tif"], out, boxes=tmp_path / "b.csv", mode="amg", progress=False)

    # "auto" on a model without an instance decoder runs (and records) the prompt grid
    assert segment_files([tmp_path / "cells.tif"], out, **run).ok == ["cells.tif"]
    record_path = out / "cells_labels.tif.napari-sam.json"
    record = json.loads(record_path.read_text())
    assert record["request"]["mode"] == "auto" and record["request"]["automatic_mode"] == "amg"
    assert segment_files([tmp_path / "cells.tif"], out, **run, mode="amg").skipped == ["cells.tif"]
    # a record of an earlier version names no method: its labels came from the prompt grid
    del record["request"]["automatic_mode"]
    record_path.write_text(json.dumps(record))
    assert segment_files([tmp_path / "cells.tif"], out, **run).skipped == ["cells.tif"]
    failed = segment_files([tmp_path / "cells.tif"], out, **run, mode="ais").failed
    assert "labels were made by another method (AMG; now AIS)" in failed["cells.tif"]


def test_object_size_is_checked_recorded_and_kept_by_cluster_parts(tmp_path, small_weights):
    import json

    import tifffile

    from napari_sam.batch import EmbedJob, embed_files, segment_files

    tifffile.imwrite(tmp_path / "cells.tif", np.full((32, 32), 9, np.uint16))  # flat: fast, no objects
    out = tmp_path / "labels"
    run = {"auto": True, "model": str(small_weights), "device": "cpu", "progress": False}
    for bad in ("big", 0, -2.0):
        with pytest.raises(UsageError, match="object_size must be"):
            segment_files([tmp_path / "cells.tif"], out, **run, object_size=bad)
        with pytest.raises(UsageError, match="object_size must be"):
            embed_files([tmp_path / "cells.tif"], tmp_path / "caches", object_size=bad, progress=False)
    assert not out.exists() and not (tmp_path / "caches").exists()

    assert segment_files([tmp_path / "cells.tif"], out, **run).ok == ["cells.tif"]
    record_path = out / "cells_labels.tif.napari-sam.json"
    record = json.loads(record_path.read_text())
    assert record["request"]["object_size"] is None
    # a record from before the option counts as the model's default size
    del record["request"]["object_size"]
    record_path.write_text(json.dumps(record))
    assert segment_files([tmp_path / "cells.tif"], out, **run).skipped == ["cells.tif"]
    failed = segment_files([tmp_path / "cells.tif"], out, **run, object_size=20).failed
    assert "labels were made with another object size (default; now 20 px)" in failed["cells.tif"]

    # on a cluster a stack is embedded in parts: every part keeps the size
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 16, 16), np.uint16))
    job = EmbedJob(slices_per_task=2, object_size=20.0)
    parts = job.split(BatchItem(tmp_path / "stack.tif", tmp_path / "stack.embeddings.zarr"))
    assert [p.slices for p in parts] == [(0, 1), (2, 3), (4,)]
    assert {p.object_size for p in parts} == {20.0}


def test_model_identity_records_the_published_hash_of_every_registered_name():
    from napari_sam.batch import model_identity
    from napari_sam.batch.outputs import _same_model
    from napari_sam.model.registry import NANO_SHA256, OFFICIAL_WEIGHTS
    from napari_sam.model.zoo import ZOO_MODELS

    assert model_identity("nano") == {"model": "nano", "weights_sha256": NANO_SHA256}
    assert model_identity("vit_b")["weights_sha256"] == OFFICIAL_WEIGHTS["vit_b"].sha256
    lm = model_identity("vit_b_lm")  # micro-sam publishes xxh128: kept as stated, nothing downloaded
    assert lm["weights_sha256"] is None and lm["weights_hash"] == ZOO_MODELS["vit_b_lm"].weights.known_hash
    assert lm["weights_hash"].startswith("xxh128:")
    em = model_identity("vit_b_em_organelles")
    assert _same_model(lm, dict(lm)) and not _same_model(lm, em)
    # a record that names the model without a hash still matches by name
    assert _same_model({"model": "vit_b_lm"}, lm) and not _same_model({"model": "vit_b"}, lm)
