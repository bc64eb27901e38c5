"""The napari-sam command."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import tifffile

from napari_sam.cli import main


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("vit_b", "vit_l", "vit_h", "sam_vit_b_01ec64.pth"):
        assert name in out
    lines = out.splitlines()
    names = [line.split()[0] for line in lines[2:] if not line.startswith(" ")]
    from napari_sam.model.zoo import ZOO_MODELS

    # every registered model, nano first, then the official ones, then micro-sam's
    assert names == ["nano", "vit_b", "vit_l", "vit_h", *ZOO_MODELS]
    nano = lines.index(next(line for line in lines if line.startswith("nano ")))
    assert "nano.safetensors (shipped, sha256 ok)" in lines[nano]
    assert "offline" in lines[nano + 1] and "nuclei" in lines[nano + 1]  # what it is for
    vit_b = next(line for line in lines if line.startswith("vit_b "))
    assert "napari-sam models --download vit_b" in vit_b  # not on this machine: how to get it


def test_models_flags_a_damaged_nano(tmp_path, monkeypatch, capsys):
    import napari_sam.model.registry as registry

    fake = tmp_path / "nano.safetensors"
    fake.write_bytes(b"not the shipped weights")
    monkeypatch.setattr(registry, "shipped_nano_path", lambda: fake)
    assert main(["models"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("nano "))
    assert "WRONG HASH" in line and "reinstall" in line


def test_models_finds_weights_in_napari_sam_weights(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "sam_vit_l_0b3195.pth").write_bytes(b"x")
    monkeypatch.setenv("NAPARI_SAM_WEIGHTS", str(folder))
    assert main(["models"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if row.startswith("vit_l"))
    assert str(folder / "sam_vit_l_0b3195.pth") in line


def test_verify_names_architecture_and_hash(small_weights, capsys):
    from napari_sam.model.checkpoint import sha256_file

    assert main(["models", "--verify", str(small_weights)]) == 0
    out = capsys.readouterr().out
    assert sha256_file(small_weights) in out
    assert "not an official release file" in out


def test_verify_missing_file_fails_with_message(tmp_path, capsys):
    assert main(["models", "--verify", str(tmp_path / "nope.pth")]) == 1
    assert "not found" in capsys.readouterr().err


def test_offline_download_fails_cleanly(monkeypatch, capsys):
    import napari_sam.model.registry as registry

    info = registry.OFFICIAL_WEIGHTS["vit_b"]
    closed = registry.WeightsInfo(info.name, info.filename, "http://127.0.0.1:9/x.pth", info.sha256)
    monkeypatch.setitem(registry.OFFICIAL_WEIGHTS, "vit_b", closed)
    assert main(["models", "--download", "vit_b"]) == 1
    err = capsys.readouterr().err
    assert "NAPARI_SAM_WEIGHTS" in err


def test_bad_arguments_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--size", "abc"])
    assert exc.value.code == 2


def test_demo_writes_picture_and_labels(small_weights, tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--model", str(small_weights), "--out", str(out), "--size", "128", "--objects", "4"])
    assert code == 0
    labels = tifffile.imread(out / "labels.tif")
    assert labels.shape == (128, 128) and labels.dtype == np.uint32
    from PIL import Image

    width, height = Image.open(out / "demo.png").size
    assert width == 2 * 128 + 4 and height > 128  # two panels under a title strip
    assert "mean IoU" in capsys.readouterr().out


def test_train_fine_tunes_nano_on_a_folder(tmp_path, capsys):
    from napari_sam.data.synthetic import nuclei_2d

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        image, labels = nuclei_2d((96, 128), n_objects=5, seed=i)
        tifffile.imwrite(data / f"cell{i}.tif", image)
        tifffile.imwrite(data / f"cell{i}_labels.tif", labels)
    out = tmp_path / "out"
    args = ["train", str(data), "--out", str(out), "--steps", "2", "--batch-images", "1", "--crop", "128"]
    assert main([*args, "--device", "cpu"]) == 0
    weights = out / "model.safetensors"
    assert weights.is_file() and (out / "checkpoint.pt").is_file()
    assert "trained 2 steps" in capsys.readouterr().out
    import napari_sam as ns

    image, labels = nuclei_2d((96, 128), n_objects=5, seed=9)
    result = ns.segment(image, boxes=[[10, 10, 50, 60]], model=str(weights), device="cpu")
    assert result.shape == image.shape


def test_train_help_documents_fine_tuning(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert "--freeze-encoder" in text and "labels" in text
    assert "--instance-decoder" in text and "model_decoder.pt" in text


def test_train_instance_decoder_on_a_folder(small_model, tmp_path, capsys, one_torch_thread):
    import copy

    import torch

    import napari_sam as ns
    from napari_sam.data.synthetic import nuclei_2d
    from napari_sam.model import InstanceDecoder, save_safetensors

    model = copy.deepcopy(small_model)
    torch.manual_seed(0)
    model.instance_decoder = InstanceDecoder(embed_dim=32, image_size=256, initial_features=4)
    weights = save_safetensors(model, tmp_path / "small.safetensors", config=model.config)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(5):  # 4 to train on, 1 held out
        image, labels = nuclei_2d((48, 64), n_objects=3, seed=i)
        tifffile.imwrite(data / f"cell{i}.tif", image)
        tifffile.imwrite(data / f"cell{i}_labels.tif", labels.astype(np.uint16))
    out = tmp_path / "out"
    args = ["train", str(data), "--instance-decoder", "--model", str(weights), "--out", str(out)]
    assert main([*args, "--steps", "2", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "trained the instance decoder 2 steps" in printed and "kept step" in printed
    assert str(out / "model_decoder.pt") in printed
    trained = ns.load_model(out / "model.safetensors", device="cpu")
    assert trained.instance_decoder is not None
    image, _ = nuclei_2d((48, 64), n_objects=3, seed=9)
    assert ns.automatic(image, mode="ais", model=trained).labels.shape == image.shape
    # the same command again: the run is finished; it is exported again, nothing trains
    assert main([*args, "--steps", "2", "--device", "cpu"]) == 0
    assert "trained the instance decoder 2 steps" in capsys.readouterr().out
    # other settings on the same folder: an error naming them, exit 1
    assert main([*args, "--steps", "3", "--device", "cpu"]) == 1
    assert "steps: 2 then, 3 now" in capsys.readouterr().err


def test_train_instance_decoder_refuses_sam_training_options(tmp_path, capsys):
    argv = ["train", str(tmp_path), "--instance-decoder", "--out", str(tmp_path / "o"), "--objects", "4"]
    assert main([*argv, "--freeze-encoder"]) == 2
    err = capsys.readouterr().err
    assert "--objects, --freeze-encoder do not apply to --instance-decoder" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------------------------- batch


@pytest.fixture
def nuclei_files(tmp_path):
    """Two 2D synthetic images, a file that is not an image, and a box table for all three."""
    from napari_sam.data.synthetic import nuclei_2d

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        image, _ = nuclei_2d((96, 112), n_objects=4, seed=i)
        tifffile.imwrite(folder / f"cells{i}.tif", image)
    (folder / "broken.tif").write_text("this is not a tiff")
    boxes = tmp_path / "boxes.csv"
    boxes.write_text(
        "file,min_row,min_col,max_row,max_col\n"
        "cells0.tif,10,10,50,60\ncells0.tif,40,50,90,100\ncells1,5,5,45,45\nbroken.tif,1,1,9,9\n"
    )
    return folder, boxes


def test_segment_batch_goes_on_after_a_bad_file_and_resumes(nuclei_files, small_weights, tmp_path, capsys):
    folder, boxes = nuclei_files
    out = tmp_path / "labels"
    args = ["segment", str(folder), "--boxes", str(boxes), "--out", str(out), "--model", str(small_weights)]
    assert main([*args, "--device", "cpu", "-q"]) == 1
    captured = capsys.readouterr()
    assert "2 done, 0 skipped (already done), 1 failed" in captured.out
    assert "broken.tif" in captured.err and "not a readable TIFF" in captured.err
    first = tifffile.imread(out / "cells0_labels.tif")
    assert first.shape == (96, 112) and first.dtype == np.uint32
    assert set(np.unique(first)) <= {0, 1, 2} and (first > 0).any()
    assert set(np.unique(tifffile.imread(out / "cells1_labels.tif"))) <= {0, 1}
    labels = ["cells0_labels.tif", "cells1_labels.tif"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*labels, *(f"{n}.napari-sam.json" for n in labels)]
    )

    (out / "cells1_labels.tif").unlink()
    assert main([*args, "--device", "cpu", "-q"]) == 1
    assert "1 done, 1 skipped (already done), 1 failed" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(out / "cells0_labels.tif"), first)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--boxes", "{missing_csv}"], "boxes CSV not found"),
        (["--points", "{boxes}"], "point tables need columns"),
    ],
)
def test_segment_bad_tables_exit_2(nuclei_files, tmp_path, capsys, extra, message):
    folder, boxes = nuclei_files
    typo = tmp_path / "typo.csv"
    typo.write_text("file,min_row,min_col,max_row,max_col\ntypo.tif,1,1,5,5\n")
    names = {"missing_csv": tmp_path / "nope.csv", "boxes": boxes, "typo_csv": typo}
    extra = [e.format(**names) for e in extra]
    assert main(["segment", str(folder), *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_csv_rows_for_other_files_warn_and_files_without_rows_are_skipped(
    nuclei_files, small_weights, tmp_path, capsys
):
    folder, _ = nuclei_files
    table = tmp_path / "typo.csv"
    table.write_text("file,min_row,min_col,max_row,max_col\ncels0.tif,1,1,50,50\ncells1.tif,1,1,50,50\n")
    argv = ["segment", str(folder / "cells0.tif"), str(folder / "cells1.tif"), "--boxes", str(table)]
    options = ["--model", str(small_weights), "-q"]
    assert main([*argv, "--out", str(tmp_path / "o"), *options]) == 0
    captured = capsys.readouterr()
    assert "warning: " in captured.err and "not among the inputs: cels0.tif" in captured.err
    summary = captured.out.splitlines()
    assert summary[0] == "1 done, 0 skipped (already done), 1 skipped (no prompts), 0 failed"
    assert summary[1] == "  no prompts (no row of the table names them): cells0.tif"
    assert (tmp_path / "o" / "cells1_labels.tif").is_file()
    assert not (tmp_path / "o" / "cells0_labels.tif").exists()
    # --strict: an image without prompts makes the exit status 1 (the others are still done)
    assert main([*argv, "--out", str(tmp_path / "strict"), *options, "--strict"]) == 1
    assert "1 skipped (no prompts)" in capsys.readouterr().out
    assert (tmp_path / "strict" / "cells1_labels.tif").is_file()


@pytest.mark.parametrize(
    "argv",
    [
        ["segment", "a.tif", "--out", "o"],  # no prompts
        ["segment", "a.tif", "--boxes", "b.csv", "--auto", "--out", "o"],  # two prompt kinds
        ["segment", "a.tif", "--auto", "--out", "o", "--format", "png"],
        ["embed", "a.tif"],  # no --out
        ["embed", "a.tif", "--out", "o", "--batch-size", "0"],
        ["embed", "a.tif", "--out", "o", "--tile", "-5"],
        ["embed", "a.tif", "--out", "o", "--channel", "red"],
        ["segment", "a.tif", "--auto", "--out", "o", "--channel", "0,1,2,3"],
    ],
)
def test_argparse_errors_exit_2(argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_our_validation_exits_2(tmp_path, capsys):
    assert main(["embed", str(tmp_path / "missing.tif"), "--out", str(tmp_path / "o")]) == 2
    assert "input not found" in capsys.readouterr().err
    image = tmp_path / "a.tif"
    tifffile.imwrite(image, np.zeros((8, 8), np.uint8))
    assert main(["embed", str(image), "--out", str(tmp_path / "o"), "--halo", "8"]) == 2
    assert "--halo needs --tile" in capsys.readouterr().err
    other = tmp_path / "sub"
    other.mkdir()
    tifffile.imwrite(other / "a.tif", np.zeros((8, 8), np.uint8))
    assert main(["embed", str(image), str(other / "a.tif"), "--out", str(tmp_path / "o")]) == 2
    assert "same output name 'a'" in capsys.readouterr().err


@pytest.fixture
def read_only_dir(tmp_path):
    """A folder nobody may write to (made immutable when the tests run as root)."""
    import os
    import subprocess

    folder = tmp_path / "read-only"
    folder.mkdir()
    root = os.geteuid() == 0
    if root:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot make a read-only folder as root here (chattr +i failed)")
    else:
        folder.chmod(0o555)
    try:
        (folder / "probe").write_text("x")
    except OSError:
        pass
    else:
        pytest.skip("this file system lets us write into a read-only folder")
    yield folder
    if root:
        subprocess.run(["chattr", "-i", str(folder)], check=False)
    else:
        folder.chmod(0o755)


def test_read_only_output_folder_is_a_clear_error(nuclei_files, read_only_dir, capsys):
    folder, boxes = nuclei_files
    assert main(["segment", str(folder), "--boxes", str(boxes), "--out", str(read_only_dir)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write to the output folder {read_only_dir}" in err
    assert main(["embed", str(folder / "cells0.tif"), "--out", str(read_only_dir / "sub")]) == 2
    assert f"cannot create the output folder {read_only_dir / 'sub'}" in capsys.readouterr().err


def test_segment_help_documents_csv_formats_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = capsys.readouterr().out
    for snippet in (
        "file,min_row,min_col,max_row,max_col",
        "file,[z,]row,col[,label]",
        "Exit status",
        "--cache",
    ):
        assert snippet in text
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    text = capsys.readouterr().out
    assert "--scheduler" in text and "resumes" in text


def test_segment_two_channel_ome_zarr_writes_ome_zarr_labels(tmp_path, small_weights, capsys):
    import json

    import zarr

    from napari_sam.data.synthetic import nuclei_2d

    image, _ = nuclei_2d((64, 80), n_objects=3, seed=5)
    store = tmp_path / "plate.ome.zarr"
    group = zarr.open_group(str(store), mode="w", zarr_format=2)
    noise = np.random.default_rng(0).integers(0, 50, size=image.shape).astype(image.dtype)
    data = np.stack([noise, image])  # (c, y, x): nuclei in channel 1
    group.create_array("0", data=data, chunk_key_encoding={"name": "v2", "separator": "/"})
    axes = [{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
    scale = [{"type": "scale", "scale": [1.0, 0.3, 0.3]}]
    group.attrs["multiscales"] = [
        {"version": "0.4", "axes": axes, "datasets": [{"path": "0", "coordinateTransformations": scale}]}
    ]
    points = tmp_path / "points.csv"
    points.write_text("row,col\n30,40\n")
    out = tmp_path / "out"
    argv = ["segment", str(store), "--points", str(points), "--out", str(out), "--model", str(small_weights)]
    assert main([*argv, "--device", "cpu", "-q"]) == 1
    assert "2 channels; pass channel=" in capsys.readouterr().out
    assert main([*argv, "--device", "cpu", "-q", "--channel", "1"]) == 0
    labels = out / "plate_labels.zarr"
    meta = json.loads((labels / ".zattrs").read_text())
    assert meta["image-label"]["source"]["image"] == "../../plate.ome.zarr"
    assert meta["multiscales"][0]["axes"] == axes
    stored = zarr.open_array(str(labels / "0"), mode="r")
    assert stored.shape == (1, 64, 80) and set(np.unique(stored[...])) <= {0, 1}


def _store_arrays(path):
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return {name: np.asarray(group[name][...]) for name in ("embeddings", "done", "slice_hash")}


def test_embed_batch_resumes_and_reports_bad_files(tmp_path, small_weights, capsys):
    import zarr

    from napari_sam.data.synthetic import nuclei_2d, nuclei_3d
    from napari_sam.engine.embed.store import open_store

    folder = tmp_path / "in"
    folder.mkdir()
    image, _ = nuclei_2d((64, 72), n_objects=3, seed=1)
    tifffile.imwrite(folder / "flat.tif", image)
    stack, _ = nuclei_3d((3, 48, 56), n_objects=3, seed=2)
    zarr.create_array(str(folder / "stack.zarr"), data=stack, chunks=(1, 48, 56))
    (folder / "junk.png").write_bytes(b"not a png")
    out = tmp_path / "cache"
    argv = ["embed", str(folder), "--out", str(out), "--model", str(small_weights), "--device", "cpu", "-q"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "2 done, 0 skipped (already done), 1 failed" in captured.out and "junk.png" in captured.err
    assert open_store(out / "flat.embeddings.zarr").is_complete
    stored = open_store(out / "stack.embeddings.zarr")
    assert stored.is_complete and stored.n_slices == 3
    before = _store_arrays(out / "stack.embeddings.zarr")

    (folder / "junk.png").unlink()
    assert main(argv) == 0
    assert "0 done, 2 skipped (already done), 0 failed" in capsys.readouterr().out
    after = _store_arrays(out / "stack.embeddings.zarr")
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
    # segment finds the caches: with the model they were made with they are reused …
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,z,min_row,min_col,max_row,max_col\nstack,1,10,10,30,30\n")
    seg = ["segment", str(folder / "stack.zarr"), "--boxes", str(boxes), "--cache", str(out), "-q"]
    assert main([*seg, "--out", str(tmp_path / "labels"), "--model", str(small_weights)]) == 0
    labels = zarr.open_array(str(tmp_path / "labels" / "stack_labels.zarr"), mode="r")
    assert labels.shape == (3, 48, 56) and labels[1].any()
    after_segment = _store_arrays(out / "stack.embeddings.zarr")
    np.testing.assert_array_equal(after_segment["embeddings"], before["embeddings"])
    # … and with another model they are refused, not silently mixed
    assert main([*seg, "--out", str(tmp_path / "other"), "--model", "nano"]) == 1
    assert "was made for another image, model or preprocessing" in capsys.readouterr().out


def test_embed_killed_halfway_then_rerun_gives_identical_embeddings(tmp_path, small_weights):
    """kill -9 of `napari-sam embed` on a 3D stack after two slices, rerun → same caches as one run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from napari_sam.data.synthetic import nuclei_3d
    from napari_sam.engine.embed.store import is_embedding_store, open_store

    n_slices = 16
    stack, _ = nuclei_3d((n_slices, 96, 96), n_objects=6, seed=3)
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, stack)
    env = {**os.environ, "NAPARI_SAM_CACHE": str(tmp_path / "weights-cache")}

    def embed(out):
        options = ["--model", str(small_weights), "--device", "cpu", "-q"]
        return [sys.executable, "-m", "napari_sam", "embed", str(source), "--out", str(out), *options]

    cache = tmp_path / "killed" / "stack.embeddings.zarr"
    proc = subprocess.Popen(
        embed(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 180
    store = None
    try:
        while store is None or store.done_mask().sum() < 2:
            assert proc.poll() is None, f"embed ended before it could be killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no slice finished in time"
            time.sleep(0.05)
            if store is None and is_embedding_store(cache):
                try:
                    store = open_store(cache)
                except Exception:  # still being created
                    store = None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    interrupted = open_store(cache).done_mask()
    assert 2 <= interrupted.sum() < n_slices, interrupted

    rerun = subprocess.run(embed(tmp_path / "killed"), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "1 done" in rerun.stdout

    # an uninterrupted run, as the command does it (in this process: one interpreter start less)
    from napari_sam import compute_embeddings
    from napari_sam.io import read_image

    compute_embeddings(read_image(source), str(small_weights), device="cpu", cache=tmp_path / "whole.zarr")
    resumed = _store_arrays(cache)
    reference = _store_arrays(tmp_path / "whole.zarr")
    assert resumed["done"].all()
    np.testing.assert_array_equal(resumed["slice_hash"], reference["slice_hash"])
    assert np.isfinite(resumed["embeddings"]).all()
    np.testing.assert_array_equal(resumed["embeddings"], reference["embeddings"])


def test_batch_on_a_local_dask_cluster(tmp_path, small_weights, nuclei_files, capsys):
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from napari_sam.engine.embed.store import open_store

    folder, boxes = nuclei_files
    (folder / "broken.tif").unlink()
    out = tmp_path / "labels"
    cache = tmp_path / "cache"
    model = ["--model", str(small_weights), "--device", "cpu", "-q"]
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        address = ["--scheduler", cluster.scheduler_address]
        assert main(["embed", str(folder), "--out", str(cache), *model, *address]) == 0
        assert "2 done" in capsys.readouterr().out
        assert all(open_store(cache / f"cells{i}.embeddings.zarr").is_complete for i in range(2))
        seg = ["segment", str(folder), "--boxes", str(boxes.with_name("b2.csv")), "--cache", str(cache)]
        boxes.with_name("b2.csv").write_text("\n".join(boxes.read_text().splitlines()[:-1]) + "\n")
        assert main([*seg, "--out", str(out), *model, *address]) == 0
        assert "2 done, 0 skipped" in capsys.readouterr().out
        assert main([*seg, "--out", str(out), *model, *address]) == 0
        assert "0 done, 2 skipped" in capsys.readouterr().out
    local = tmp_path / "local"
    assert main([*seg, "--out", str(local), *model]) == 0
    for i in range(2):
        np.testing.assert_array_equal(
            tifffile.imread(out / f"cells{i}_labels.tif"), tifffile.imread(local / f"cells{i}_labels.tif")
        )


def test_segment_auto_writes_labels_without_prompts(nuclei_files, small_weights, tmp_path, capsys):
    folder, _ = nuclei_files
    out = tmp_path / "auto"
    argv = ["segment", str(folder / "cells0.tif"), "--auto", "--out", str(out), "--format", "zarr"]
    assert main([*argv, "--model", str(small_weights), "--device", "cpu", "-q"]) == 0
    import zarr

    labels = zarr.open_array(str(out / "cells0_labels.zarr"), mode="r")
    assert labels.shape == (96, 112) and labels.dtype == np.uint32
    assert "1 done" in capsys.readouterr().out


def test_stack_split_into_slice_tasks_on_a_local_cluster(tmp_path, small_weights, capsys):
    """--slices-per-task: parts of one stack embedded side by side give the cache of a local run."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from napari_sam.data.synthetic import nuclei_3d

    stack, _ = nuclei_3d((7, 64, 64), n_objects=4, seed=6)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    model = ["--model", str(small_weights), "--device", "cpu", "-q"]
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster:
        argv = ["embed", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "split"), *model]
        assert main([*argv, "--scheduler", cluster.scheduler_address, "--slices-per-task", "2"]) == 0
        assert "1 done" in capsys.readouterr().out
    assert main(["embed", str(tmp_path / "stack.tif"), "--out", str(tmp_path / "local"), *model]) == 0
    split = _store_arrays(tmp_path / "split" / "stack.embeddings.zarr")
    local = _store_arrays(tmp_path / "local" / "stack.embeddings.zarr")
    assert split["done"].all() and split["done"].shape == (7,)
    for name in local:
        np.testing.assert_array_equal(split[name], local[name])
    from napari_sam.batch import BatchItem, EmbedJob

    parts = EmbedJob(slices_per_task=3, overwrite=True).split(
        BatchItem(tmp_path / "stack.tif", tmp_path / "c")
    )
    assert [p.slices for p in parts] == [(0, 1, 2), (3, 4, 5), (6,)]
    assert [p.overwrite for p in parts] == [True, False, False]  # only the first part may replace a cache


def test_prompt_tables_must_match_the_image_dimensions(tmp_path, small_weights, capsys):
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 32, 32), np.uint16))
    tifffile.imwrite(tmp_path / "flat.tif", np.zeros((32, 32), np.uint16))
    flat_table = tmp_path / "b2.csv"
    flat_table.write_text("file,min_row,min_col,max_row,max_col\nstack,1,1,9,9\nflat,1,1,9,9\n")
    argv = ["segment", str(tmp_path / "stack.tif"), str(tmp_path / "flat.tif"), "--out", str(tmp_path / "o")]
    assert main([*argv, "--boxes", str(flat_table), "--model", str(small_weights), "-q"]) == 1
    out = capsys.readouterr().out
    assert "1 done" in out and "stack.tif is a 3D stack of shape (3, 32, 32): its CSV needs a z column" in out


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_is_plain_text(capsys):
    text = _help([], capsys)
    assert "``" not in text and "::" not in text  # no reStructuredText
    assert "examples:" in text and "napari-sam demo" in text and "130 interrupted" in text


@pytest.mark.parametrize("command", ["models", "demo", "gui", "train", "embed", "segment", "export-model"])
def test_every_subcommand_has_a_description_and_every_option_help(command, capsys):
    from napari_sam.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert sub.description, command
    for action in sub._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    text = _help([command], capsys)
    assert sub.description.split()[0] in text


@pytest.mark.parametrize(
    ("command", "option", "default"),
    [
        ("demo", "--seed", "0"),
        ("demo", "--device", "auto"),
        ("train", "--steps", "500"),
        ("train", "--lr", "0.0001"),
        ("train", "--batch-images", "4"),
        ("segment", "--model", "nano"),
    ],
)
def test_help_shows_defaults(command, option, default, capsys):
    text = _help([command], capsys)
    options = " ".join(text[text.index("options:") :].split())  # the option list, unwrapped
    entry = options[options.index(f" {option} ") :]
    end = entry.find(" --", len(option) + 2)
    entry = entry if end < 0 else entry[:end]
    assert f"(default: {default})" in entry, entry


@pytest.fixture
def decoder_model(small_weights, nuclei_files, tmp_path):
    """``small_weights`` with a seeded random instance decoder, its output biases set so that micro-sam's
    default thresholds (0.5) cut its maps of cells0.tif where most of its pixels would (a random decoder's
    maps crowd near one value each), saved as one safetensors file."""
    import torch

    from napari_sam.engine.automatic.maps import predict_maps
    from napari_sam.engine.embed.embeddings import compute_embeddings
    from napari_sam.model import InstanceDecoder, build_sam, save_safetensors

    sam = build_sam(small_weights)
    torch.manual_seed(0)
    decoder = InstanceDecoder(
        embed_dim=sam.config.prompt_embed_dim,
        image_size=sam.image_size,
        initial_features=2,
        full_resolution=False,
    ).eval()  # as loaded: batch norms on their running statistics
    sam.instance_decoder = decoder
    image = tifffile.imread(nuclei_files[0] / "cells0.tif")
    maps = predict_maps(sam, compute_embeddings(image, sam, device="cpu"))
    with torch.no_grad():
        for channel, quantile in enumerate((0.6, 0.4, 0.4)):
            value = float(np.quantile(maps[channel], quantile))
            decoder.out_conv.bias[channel] -= float(np.log(value / (1 - value)))
    return save_safetensors(sam, tmp_path / "with_decoder.safetensors", config=sam.config)


def test_segment_auto_mode_runs_the_decoder_and_a_rerun_never_mixes_modes(
    nuclei_files, decoder_model, small_weights, tmp_path, capsys
):
    import json

    from napari_sam import segment

    image_path = nuclei_files[0] / "cells0.tif"
    out = tmp_path / "auto"
    labels_path, record = out / "cells0_labels.tif", out / "cells0_labels.tif.napari-sam.json"
    argv = ["segment", str(image_path), "--auto", "--out", str(out), "--model", str(decoder_model), "-q"]
    argv += ["--device", "cpu"]
    image = tifffile.imread(image_path)

    def mode_of_record() -> str:
        return json.loads(record.read_text())["request"]["automatic_mode"]

    assert main([*argv, "--mode", "ais"]) == 0
    labels = tifffile.imread(labels_path)
    expected = segment(image, model=str(decoder_model), device="cpu", mode="ais")
    assert int(expected.max()) >= 2
    np.testing.assert_array_equal(labels, expected)
    assert mode_of_record() == "ais" and "1 done" in capsys.readouterr().out
    # the same mode — also "auto", which runs AIS on a model with a decoder — is done already
    for mode in (["--mode", "ais"], ["--mode", "auto"], []):
        assert main([*argv, *mode]) == 0
        assert "0 done, 1 skipped" in capsys.readouterr().out
    # another mode: the labels are kept and the file fails, saying why; --overwrite redoes it
    assert main([*argv, "--mode", "apg"]) == 1
    assert "by another method (AIS; now APG)" in capsys.readouterr().out
    np.testing.assert_array_equal(tifffile.imread(labels_path), expected)
    assert main([*argv, "--mode", "apg", "--overwrite"]) == 0
    apg = segment(image, model=str(decoder_model), device="cpu", mode="apg")
    assert int(apg.max()) >= 2 and not np.array_equal(apg, expected)
    np.testing.assert_array_equal(tifffile.imread(labels_path), apg)
    assert mode_of_record() == "apg"
    capsys.readouterr()
    # a model without a decoder: AIS fails that file with the reason
    plain = ["segment", str(image_path), "--auto", "--mode", "ais", "--out", str(tmp_path / "plain")]
    assert main([*plain, "--model", str(small_weights), "--device", "cpu", "-q"]) == 1
    assert "needs a model with an instance decoder" in capsys.readouterr().out


@pytest.mark.parametrize("prompts", [["--boxes", "b.csv"], ["--points", "p.csv"]])
def test_mode_without_auto_is_a_usage_error(prompts, capsys):
    assert main(["segment", "a.tif", *prompts, "--mode", "ais", "--out", "o"]) == 2
    assert "--mode ais applies to automatic segmentation: add --auto" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["segment", "a.tif", "--auto", "--mode", "fast", "--out", "o"])
    assert exc.value.code == 2
