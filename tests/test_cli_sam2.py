"""``napari-sam segment --model <SAM 2>``: prompted objects followed through stacks with memory; 2D
images, --auto and --masks are usage errors naming --model (random weights: no download)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.cli import main

torch = pytest.importorskip("torch")
tifffile = pytest.importorskip("tifffile")


@pytest.fixture(scope="module")
def sam2_file(tmp_path_factory):
    """Random weights of the sam2.1_hiera_tiny architecture, official file layout ({"model": ...})."""
    from napari_sam.model import SAM2_CONFIGS, build_sam

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("sam2") / "my_sam2.pt"
    torch.save({"model": build_sam(SAM2_CONFIGS["sam2.1_hiera_tiny"]).state_dict()}, path)
    return path


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    stack = rng.normal(100, 5, (2, 40, 48)).astype(np.float32)
    stack[:, 10:25, 12:30] += 400
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    tifffile.imwrite(tmp_path / "flat.tif", stack[0])
    (tmp_path / "boxes.csv").write_text("file,z,min_row,min_col,max_row,max_col\nstack.tif,1,10,12,25,30\n")
    (tmp_path / "flat.csv").write_text("file,min_row,min_col,max_row,max_col\nflat.tif,10,12,25,30\n")
    return tmp_path, stack


def test_sam2_models_refuse_2d_images_auto_and_masks(files, sam2_file, capsys):
    from napari_sam._cli_sam2 import is_sam2_model

    tmp, _ = files
    model = ["--model", str(sam2_file), "-q"]
    assert is_sam2_model(str(sam2_file)) and is_sam2_model("sam2.1_hiera_large")
    assert not is_sam2_model("nano") and not is_sam2_model(str(tmp / "boxes.csv"))
    cases = {
        "is a 2D image": ["segment", str(tmp / "flat.tif"), "--boxes", str(tmp / "flat.csv")],
        "automatic segmentation (--auto)": ["segment", str(tmp / "stack.tif"), "--auto"],
        "refining --masks": ["segment", str(tmp / "stack.tif"), "--masks", str(tmp / "stack.tif")],
        "always follows": [
            "segment",
            str(tmp / "stack.tif"),
            "--boxes",
            str(tmp / "boxes.csv"),
            "--no-propagate",
        ],
    }
    for expected, argv in cases.items():
        assert main([*argv, "--out", str(tmp / "out"), *model]) == 2, expected
        err = capsys.readouterr().err
        assert f"--model {sam2_file} is a SAM 2 model" in err and expected in err, err
    assert not (tmp / "out").exists()
    # a SAM 2 name passes the model check (refused here for --auto, before any download)
    assert (
        main(
            [
                "segment",
                str(tmp / "stack.tif"),
                "--auto",
                "--out",
                str(tmp / "o"),
                "--model",
                "sam2.1_hiera_tiny",
            ]
        )
        == 2
    )
    assert "--model sam2.1_hiera_tiny is a SAM 2 model" in capsys.readouterr().err


@pytest.mark.slow  # two propagations of the full-size tiny model at its 1024 px canvas (~1 min on 2 cores)
def test_segment_follows_boxes_with_a_sam2_file(files, sam2_file):
    import napari_sam as ns

    tmp, stack = files
    out = tmp / "labels"
    argv = ["segment", str(tmp / "stack.tif"), "--boxes", str(tmp / "boxes.csv"), "--out", str(out)]
    assert main([*argv, "--model", str(sam2_file), "--device", "cpu", "-q"]) == 0
    got = tifffile.imread(out / "stack_labels.tif")
    want = ns.segment(stack, boxes=[[1, 10, 12, 2, 25, 30]], model=str(sam2_file), device="cpu")
    np.testing.assert_array_equal(got, want)
    assert got.shape == stack.shape and set(np.unique(got)) <= {0, 1}


def test_segment_precision_bf16_tracks_in_bfloat16_and_is_recorded(files, sam2_file, capsys):
    import napari_sam as ns

    tmp, stack = files
    out = tmp / "labels-bf16"
    argv = ["segment", str(tmp / "stack.tif"), "--boxes", str(tmp / "boxes.csv"), "--out", str(out)]
    common = ["--model", str(sam2_file), "--device", "cpu", "-q"]
    assert main([*argv, *common, "--precision", "bf16"]) == 0
    got = tifffile.imread(out / "stack_labels.tif")
    box = [[1, 10, 12, 2, 25, 30]]
    want = ns.segment(stack, boxes=box, model=str(sam2_file), device="cpu", precision="bf16")
    np.testing.assert_array_equal(got, want)
    # labels made in bf16 are not taken for a float32 request on a rerun: kept, and the run says so
    assert main([*argv, *common, "--precision", "fp32"]) == 1
    assert "in another precision (bf16; now fp32)" in capsys.readouterr().err
    np.testing.assert_array_equal(tifffile.imread(out / "stack_labels.tif"), got)
    assert main([*argv, *common, "--precision", "bf16"]) == 0  # the same request: skipped as done
