"""``napari-sam segment`` on a 3D stack: prompts are propagated unless ``--no-propagate``."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.cli import main


@pytest.fixture(scope="module")
def stack_and_box():
    from napari_sam.data.synthetic import nuclei_3d
    from napari_sam.engine.volume.steps import summarize

    stack, truth = nuclei_3d((5, 256, 256), n_objects=4, diameter=(40.0, 60.0), seed=20300)
    z = 2
    ids, areas = np.unique(truth[z][truth[z] > 0], return_counts=True)
    k = int(ids[np.argmax(areas)])
    r0, c0, r1, c1 = summarize(truth[z] == k).bbox
    return stack, [z, r0, c0, r1, c1]


def test_segment_propagates_3d_prompts_unless_told_not_to(stack_and_box, tmp_path):
    import tifffile

    stack, (z, r0, c0, r1, c1) = stack_and_box
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    table = tmp_path / "boxes.csv"
    table.write_text(f"file,z,min_row,min_col,max_row,max_col\nstack.tif,{z},{r0},{c0},{r1},{c1}\n")
    outputs = {}
    for flag in ("--propagate", "--no-propagate"):
        out = tmp_path / flag.strip("-")
        code = main(
            ["segment", str(tmp_path / "stack.tif"), "--boxes", str(table), "--out", str(out), flag, "-q"]
        )
        assert code == 0
        outputs[flag] = tifffile.imread(out / "stack_labels.tif")
    box = [[z, r0, c0, z + 1, r1, c1]]
    np.testing.assert_array_equal(outputs["--propagate"], ns.segment(stack, boxes=box))
    np.testing.assert_array_equal(outputs["--no-propagate"], ns.segment(stack, boxes=box, propagate=False))
    assert np.flatnonzero(outputs["--no-propagate"].any(axis=(1, 2))).tolist() == [z]
    assert len(np.flatnonzero(outputs["--propagate"].any(axis=(1, 2)))) >= 2  # beyond the prompted slice


def test_an_empty_object_is_reported_and_the_file_done(stack_and_box, tmp_path, capsys):
    """A duplicated CSV row (its copy gets no pixels): the others are segmented, the file is done,
    its line and the summary say which object is empty (issue 16, item 6)."""
    import tifffile

    stack, (z, r0, c0, r1, c1) = stack_and_box
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    row = f"stack.tif,{z},{r0},{c0},{r1},{c1}"
    table = tmp_path / "boxes.csv"
    table.write_text(f"file,z,min_row,min_col,max_row,max_col\n{row}\n{row}\n")
    out = tmp_path / "labels"
    assert main(["segment", str(tmp_path / "stack.tif"), "--boxes", str(table), "--out", str(out), "-q"]) == 0
    captured = capsys.readouterr()
    summary = captured.out.splitlines()
    assert summary[0] == "1 done (1 with empty objects), 0 skipped (already done), 0 failed"
    assert summary[1:] == [f"  stack.tif: done (object 2 (slice {z}) empty)"]
    lines = captured.err.splitlines()  # the copy's merge may be explained by a warning line first
    assert lines[-1] == f"napari-sam: stack.tif done (object 2 (slice {z}) empty)"
    assert all(line.startswith("napari-sam: warning: ") for line in lines[:-1]), lines
    labels = tifffile.imread(out / "stack_labels.tif")
    np.testing.assert_array_equal(labels, ns.segment(stack, boxes=[[z, r0, c0, z + 1, r1, c1]]))
    assert set(np.unique(labels)) == {0, 1}
