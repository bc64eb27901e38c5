"""SAM 2 in the annotator without Qt: memory propagation steps from a slice's labels and prompts,
the model choice, and time-lapse tracks from labels."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.prompts import SlicePrompts
from napari_sam._napari.propagation import memory_model, memory_steps, rewrite_propagated, write_propagated
from napari_sam._napari.tracks import tracks_from_labels
from napari_sam.errors import AnnotatorError

layers = pytest.importorskip("napari.layers")
torch = pytest.importorskip("torch")

SHAPE = (4, 40, 48)


@pytest.fixture
def stack_layer():
    rng = np.random.default_rng(0)
    data = rng.normal(100, 5, SHAPE).astype(np.float32)
    data[:, 10:25, 12:30] += 400
    return layers.Image(data)


def _run(steps):
    first = next(steps)
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return first, stop.value


def test_tracks_follow_the_centres_of_drawn_labels():
    labels = np.zeros((3, 10, 12), np.uint16)
    labels[0, 1:3, 1:5] = 4  # centre (1.5, 2.5)
    labels[2, 6:9, 3:4] = 4  # centre (7, 3); absent on frame 1
    labels[1, 0:1, 10:12] = 2  # centre (0, 10.5)
    labels[2, 5, 5] = 9
    got = tracks_from_labels(labels)
    want = [[2, 1, 0, 10.5], [4, 0, 1.5, 2.5], [4, 2, 7, 3], [9, 2, 5, 5]]
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float64))
    np.testing.assert_array_equal(tracks_from_labels(labels, ids=[4, 7]), np.array(want[1:3], float))
    assert tracks_from_labels(np.zeros((2, 3, 3), np.uint8)).shape == (0, 4)
    with pytest.raises(AnnotatorError, match="T, Y, X"):
        tracks_from_labels(labels[0])
    with pytest.raises(AnnotatorError, match="integer"):
        tracks_from_labels(labels.astype(float))


def test_memory_steps_keep_seed_ids_and_number_prompts_from_free_ids(stack_layer, tiny_sam2):
    before = np.zeros(SHAPE, np.uint32)
    before[1, 10:25, 12:30] = 5
    before[3, :3, :3] = 9  # another object elsewhere: never overwritten
    prompts = SlicePrompts(boxes=np.array([[28.0, 32.0, 38.0, 46.0]]))
    steps = memory_steps(stack_layer, tiny_sam2, before.copy(), 1, prompts=prompts)
    (done, total), result = _run(steps)
    assert done == 0 and total == 4 + 1  # forward 1..3 and backward 1..0: the seed frame twice
    assert sorted(result.seeds) == [5, 10]  # the box is object 1 → label 9 + 1
    np.testing.assert_array_equal(result.labels[1][before[1] == 5], 5)
    assert set(np.unique(result.labels[1])) <= {0, 5, 10}
    assert not ((result.labels[1] == 5) & (before[1] != 5)).any()  # the seed stays as drawn

    layer = layers.Labels(before.copy())
    written = write_propagated(layer, before, result.labels)
    assert written > 0
    assert layer.data[3, 0, 0] == 9
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)


def test_memory_steps_errors(stack_layer, tiny_sam2):
    empty = np.zeros(SHAPE, np.uint32)
    with pytest.raises(AnnotatorError, match="no objects"):
        next(memory_steps(stack_layer, tiny_sam2, empty, 2, prompts=SlicePrompts()))
    with pytest.raises(AnnotatorError, match="do not match"):
        next(memory_steps(stack_layer, tiny_sam2, empty[:2], 0))
    flat = layers.Image(np.zeros((40, 48), np.float32))
    with pytest.raises(AnnotatorError, match="3D image"):
        next(memory_steps(flat, tiny_sam2, empty, 0))


@pytest.fixture(scope="module")
def sam2_file(tmp_path_factory):
    """Random weights of the sam2.1_hiera_tiny architecture in the official file layout (a file of
    tiny_test_config's architecture has no registered size, so it cannot be loaded by path)."""
    from napari_sam.model import SAM2_CONFIGS, build_sam

    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("sam2") / "my_sam2.pt"
    torch.save({"model": build_sam(SAM2_CONFIGS["sam2.1_hiera_tiny"]).state_dict()}, path)
    return path


def test_memory_model_takes_sam2_files_and_refuses_sam1(tiny_sam2, sam2_file, tmp_path, small_weights):
    loaded = memory_model(str(sam2_file), "cpu")
    assert type(loaded).__name__ == "Sam2" and loaded.name == "sam2.1_hiera_tiny"
    assert memory_model(tiny_sam2, "cpu") is tiny_sam2
    with pytest.raises(AnnotatorError, match="SAM 1 model"):
        memory_model(str(small_weights), "cpu")
    with pytest.raises(AnnotatorError, match="cannot load"):
        memory_model(str(tmp_path / "missing.pt"), "cpu")


def test_rewrite_replaces_only_what_the_earlier_run_wrote():
    before = np.zeros((2, 4, 4), np.uint16)
    before[0, 0, 0] = 7  # drawn before the run: never touched
    previous = before.copy()
    previous[1, :2, :2] = 3  # what the earlier run wrote
    previous[1, 3, 3] = 3
    previous[1, 0, 3] = 8  # painted while the run went on: not written by it, never touched
    wrote = (previous != before) & (previous != 8)
    layer = layers.Labels(previous.copy())
    layer.data_setitem((np.array([1]), np.array([3]), np.array([3])), np.array([5], np.uint16))  # painted
    after = np.zeros_like(before)
    after[0, 0, 0] = 9  # the corrected run disagrees with a drawn label: ignored
    after[1, :1, :2] = 3  # the object shrank
    after[1, 2, 2] = 3  # and grew onto background
    after[1, 3, 3] = 0  # where the user painted 5 since: kept
    changed = rewrite_propagated(layer, before != 0, wrote, previous[wrote], after)
    expected = before.copy()
    expected[1, :1, :2] = 3
    expected[1, 2, 2] = 3
    expected[1, 3, 3] = 5
    expected[1, 0, 3] = 8
    np.testing.assert_array_equal(layer.data, expected)
    assert changed == 3  # two pixels cleared, one added
    layer.undo()  # one undo step
    assert layer.data[1, 1, 1] == 3 and layer.data[1, 2, 2] == 0 and layer.data[1, 3, 3] == 5
    with pytest.raises(AnnotatorError, match="changed shape"):
        rewrite_propagated(layer, before[:1] != 0, wrote, previous[wrote], after)


def test_memory_steps_apply_corrections(stack_layer, tiny_sam2):
    from napari_sam.engine.volume.memory_corrections import Correction

    seeds = np.zeros(SHAPE, np.uint32)
    seeds[1, 10:25, 12:30] = 5
    _, plain = _run(memory_steps(stack_layer, tiny_sam2, seeds, 1))
    fix = Correction(5, 3, [[30.0, 40.0], [15.0, 20.0]], [1, 0])
    _, fixed = _run(memory_steps(stack_layer, tiny_sam2, seeds, 1, corrections=[fix]))
    assert not np.array_equal(fixed.labels, plain.labels)
    np.testing.assert_array_equal(fixed.labels[1][seeds[1] == 5], 5)  # the seed stays as drawn
    with pytest.raises(AnnotatorError, match="names label 6"):
        next(memory_steps(stack_layer, tiny_sam2, seeds, 1, corrections=[Correction(6, 3, [[1, 1]], [1])]))
