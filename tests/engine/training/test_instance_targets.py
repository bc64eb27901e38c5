"""Target maps of the instance decoder (micro-sam's PerObjectDistanceTransform semantics)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_sam.engine.training.instance_targets import instance_target_maps

ROOT = Path(__file__).resolve().parents[3]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"


def test_square_by_hand():
    labels = np.zeros((9, 9), dtype=np.int32)
    labels[2:7, 2:7] = 3  # a 5×5 square, centre (4, 4)
    maps = instance_target_maps(labels)
    assert maps.shape == (3, 9, 9) and maps.dtype == np.float32
    inside = labels > 0
    np.testing.assert_array_equal(maps[0], inside.astype(np.float32))
    # outside the object both distances are 1
    assert np.all(maps[1][~inside] == 1) and np.all(maps[2][~inside] == 1)
    rows, cols = np.indices(labels.shape)
    centre = np.hypot(rows - 4, cols - 4) / (np.sqrt(8) + 1e-7)
    np.testing.assert_allclose(maps[1][inside], centre[inside], atol=1e-6)
    # distance to the inner boundary ring: 0 on the ring, 1 on the next ring, 2 at the centre → (2 - d) / 2
    ring = np.minimum.reduce([rows - 2, 6 - rows, cols - 2, 6 - cols])
    np.testing.assert_allclose(maps[2][inside], ((2 - ring) / (2 + 1e-7))[inside], atol=1e-6)


def test_centre_outside_a_u_shape_moves_to_the_deepest_pixel():
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[5:25, 5:11] = 1
    labels[5:25, 19:25] = 1
    labels[19:25, 5:25] = 1  # a U: the centroid (row ~17, col 15) is in the gap
    maps = instance_target_maps(labels)
    centre = np.unravel_index(np.argmin(np.where(labels > 0, maps[1], 2.0)), labels.shape)
    assert labels[centre] == 1
    assert maps[1][centre] == 0 and maps[2][centre] == pytest.approx(0.0, abs=1e-6)


def test_each_object_is_normalised_on_its_own_and_touching_objects_have_boundaries():
    labels = np.zeros((20, 40), dtype=np.int32)
    labels[2:18, 2:20] = 1
    labels[4:10, 20:26] = 2  # touches object 1
    maps = instance_target_maps(labels)
    for value in (1, 2):
        inside = labels == value
        assert maps[1][inside].max() == pytest.approx(1.0, abs=1e-6)
        assert maps[2][inside].max() == pytest.approx(1.0, abs=1e-6)
        assert maps[1][inside].min() == 0.0
    # the column where they touch is boundary for both
    assert np.all(maps[2][4:10, 19] > 0.99) and np.all(maps[2][4:10, 20] > 0.99)


def test_disconnected_pieces_of_one_label_are_separate_objects_and_small_ones_can_go():
    labels = np.zeros((20, 40), dtype=np.int32)
    labels[2:12, 2:12] = 5
    labels[2:12, 25:35] = 5
    labels[15:17, 15:17] = 7  # 4 pixels
    maps = instance_target_maps(labels)
    assert (maps[1][2:12, 2:12] == 0).sum() == 1 and (maps[1][2:12, 25:35] == 0).sum() == 1
    assert maps[0][15:17, 15:17].all()
    dropped = instance_target_maps(labels, min_size=5)
    assert not dropped[0][15:17, 15:17].any() and np.all(dropped[1:, 15:17, 15:17] == 1)
    np.testing.assert_array_equal(dropped[:, :14], maps[:, :14])


def test_the_image_border_is_no_boundary():
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[:, :5] = 1  # touches three image borders; its only boundary is column 4
    maps = instance_target_maps(labels)
    np.testing.assert_allclose(maps[2][:, 4], 1.0, atol=1e-6)
    np.testing.assert_allclose(maps[2][:, 0], 0.0, atol=1e-6)


def test_empty_and_bool_labels():
    assert np.array_equal(instance_target_maps(np.zeros((4, 5), np.uint16))[1:], np.ones((2, 4, 5)))
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    np.testing.assert_array_equal(instance_target_maps(mask), instance_target_maps(mask.astype(np.uint8)))


@pytest.mark.parametrize(
    ("labels", "kwargs", "error", "match"),
    [
        (np.zeros((2, 3, 4), np.int32), {}, ValueError, "labels must be a 2D"),
        (np.zeros((3, 4), np.float32), {}, TypeError, "integer"),
        (-np.ones((3, 4), np.int32), {}, ValueError, "non-negative"),
        (np.zeros((3, 4), np.int32), {"min_size": -1}, ValueError, "min_size"),
        (np.zeros((3, 4), np.int32), {"min_size": 2.5}, ValueError, "min_size"),
    ],
)
def test_bad_input(labels, kwargs, error, match):
    with pytest.raises(error, match=match):
        instance_target_maps(labels, **kwargs)


_REFERENCE = """
import json, sys
import numpy as np
from torch_em.transform.label import PerObjectDistanceTransform
labels = np.load(sys.argv[1])
trafo = PerObjectDistanceTransform(distances=True, boundary_distances=True, directed_distances=False,
                                   foreground=True, min_size=0)
np.save(sys.argv[2], trafo(labels))
"""


@pytest.mark.slow
@pytest.mark.skipif(not REF_PYTHON.is_file(), reason="needs the reference environment (.venv-ref)")
def test_matches_torch_em_on_synthetic_labels(tmp_path):
    from napari_sam.data.synthetic import preset

    for name, seed in (("nuclei_dense", 1_000_004), ("wide", 1_000_003)):
        labels = preset(name).sample(seed).labels
        np.save(tmp_path / "labels.npy", labels)
        script = tmp_path / "ref.py"
        script.write_text(_REFERENCE)
        subprocess.run(
            [str(REF_PYTHON), str(script), str(tmp_path / "labels.npy"), str(tmp_path / "ref.npy")],
            check=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ""},
        )
        reference = np.load(tmp_path / "ref.npy")
        ours = instance_target_maps(labels)
        assert ours.shape == reference.shape, json.dumps([ours.shape, reference.shape])
        np.testing.assert_allclose(ours, reference, atol=1e-6, err_msg=f"{name} {seed} {sys.version}")
