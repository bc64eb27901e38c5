"""The napari-sam command."""

from __future__ import annotations

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

    assert Image.open(out / "demo.png").size == (256, 128)
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
