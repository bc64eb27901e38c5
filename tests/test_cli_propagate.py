"""``napari-sam segment`` on a 3D stack: prompts are propagated unless ``--no-propagate``."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.cli import main


@pytest.fixture(scope="module")
def stack_and_box():
    from napari_sam.data.synthetic import nuclei_3d
    from napari_sam.engine.propagate_steps import summarize

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
