"""``--object-size`` of ``napari-sam embed`` and ``segment``: parsed, checked, passed to the engine,
recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_sam.cli import build_parser, main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)


@pytest.fixture
def cells(tmp_path):
    """A 64 × 72 synthetic nuclei image as a tif, and a box table naming one of its nuclei."""
    from napari_sam.data.synthetic import nuclei_2d

    image, truth = nuclei_2d((64, 72), n_objects=3, seed=1)
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, image)
    rows, cols = np.nonzero(truth == 1)
    table = tmp_path / "boxes.csv"
    box = f"{rows.min()},{cols.min()},{rows.max() + 1},{cols.max() + 1}"
    table.write_text(f"file,min_row,min_col,max_row,max_col\ncells.tif,{box}\n")
    return path, table


@pytest.mark.parametrize("command", ["embed", "segment"])
@pytest.mark.parametrize(
    ("text", "value"), [("14", 14.0), ("2.5", 2.5), ("1e2", 100.0), ("auto", "auto"), ("fixed", "fixed")]
)
def test_object_size_is_parsed(command, text, value):
    prompts = ["--auto"] if command == "segment" else []
    args = build_parser().parse_args([command, "a.tif", *prompts, "--out", "o", "--object-size", text])
    assert args.object_size == value
    assert build_parser().parse_args([command, "a.tif", *prompts, "--out", "o"]).object_size is None


@pytest.mark.parametrize("text", ["0", "-3", "0.5", "nan", "inf", "big", "Auto", ""])
def test_bad_object_size_exits_2_naming_the_option(text, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["segment", "a.tif", "--auto", "--out", "o", "--object-size", text])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--object-size" in err and "expected auto, fixed or the objects' diameter" in err


def test_embed_object_size_reaches_the_cache(cells, small_weights, tmp_path, capsys):
    import napari_sam as ns
    from napari_sam.engine.embed.store import open_store
    from napari_sam.engine.loading import load_model
    from napari_sam.engine.object_scale import canvas_scale

    image, _ = cells
    out = tmp_path / "caches"
    argv = ["embed", str(image), "--out", str(out), "--model", str(small_weights), "--device", "cpu", "-q"]
    assert main([*argv, "--object-size", "32"]) == 0
    assert "1 done" in capsys.readouterr().out
    cache = out / "cells.embeddings.zarr"
    preprocessing = open_store(cache).meta["preprocessing"]
    expected = canvas_scale(32.0, load_model(str(small_weights), "cpu").object_scale)  # 4 * 16 / 32
    assert preprocessing["object_size"] == 32.0 and preprocessing["scale"] == pytest.approx(expected)
    # the image was scaled by it (the model's fixed rule would fill its 256 px canvas: 228 × 256)
    assert ns.open_embeddings(cache).input_size == (round(64 * expected), round(72 * expected))
    # the cache is reused for the same size; asked for another geometry it is refused, not mixed
    assert main([*argv, "--object-size", "32"]) == 0
    assert "1 skipped (already done)" in capsys.readouterr().out
    assert main(argv) == 1
    assert "was made for another image, model or preprocessing" in capsys.readouterr().out


def test_segment_records_object_size_and_reuses_caches_of_that_size(cells, small_weights, tmp_path, capsys):
    image, boxes = cells
    caches, out = tmp_path / "caches", tmp_path / "labels"
    common = ["--model", str(small_weights), "--device", "cpu", "-q"]
    assert main(["embed", str(image), "--out", str(caches), "--object-size", "32", *common]) == 0
    segment = ["segment", str(image), "--boxes", str(boxes), "--cache", str(caches), *common]
    # the cache of 32 px objects does not serve the model's default geometry …
    assert main([*segment, "--out", str(tmp_path / "default")]) == 1
    assert "another image, model or preprocessing" in capsys.readouterr().out
    # … but serves --object-size 32, and the labels' record says so
    assert main([*segment, "--out", str(out), "--object-size", "32"]) == 0
    capsys.readouterr()
    record = json.loads((out / "cells_labels.tif.napari-sam.json").read_text())
    assert record["request"]["object_size"] == 32.0
    assert main([*segment, "--out", str(out), "--object-size", "32"]) == 0
    assert "1 skipped (already done)" in capsys.readouterr().out
    # labels made for another object size are kept, and the message says what changed
    assert main([*segment, "--out", str(out), "--object-size", "auto"]) == 1
    assert "with another object size (32 px; now auto)" in capsys.readouterr().out


def test_segment_auto_passes_object_size_to_automatic_segmentation(tmp_path, capsys):
    import napari_sam as ns
    from napari_sam.data.synthetic import nuclei_2d

    image, _ = nuclei_2d((96, 96), n_objects=6, seed=3)
    tifffile.imwrite(tmp_path / "nuclei.tif", image)
    argv = ["segment", str(tmp_path / "nuclei.tif"), "--auto", "--device", "cpu", "-q"]
    assert main([*argv, "--out", str(tmp_path / "small"), "--object-size", "8"]) == 0
    labels = tifffile.imread(tmp_path / "small" / "nuclei_labels.tif")
    np.testing.assert_array_equal(labels, ns.segment(image, object_size=8, device="cpu"))
    fixed = ns.segment(image, object_size="fixed", device="cpu")
    assert not np.array_equal(labels, fixed)  # the scale (3× against 2×) changes the outlines
