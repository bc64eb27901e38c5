"""The annotator's propagation: the stack's lazy embeddings, the generator, the undoable write (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.embeddings import EmbeddingSettings
from napari_sam._napari.propagation import propagation_steps, stack_embeddings, write_propagated
from napari_sam.errors import AnnotatorError

layers = pytest.importorskip("napari.layers")


@pytest.fixture
def stack_layer():
    rng = np.random.default_rng(0)
    data = rng.normal(100, 5, (6, 40, 48)).astype(np.float32)
    data[:, 10:25, 12:30] += 400
    return layers.Image(data)


def test_propagation_from_the_current_slice_writes_one_undo_step(stack_layer, small_weights):
    settings = EmbeddingSettings(model=str(small_weights), device="cpu")
    volume = stack_embeddings(stack_layer, settings)
    assert volume is stack_embeddings(stack_layer, settings)  # reused, nothing embedded yet
    assert not volume.computed().any()
    data = np.zeros((6, 40, 48), np.uint32)
    data[3, 10:25, 12:30] = 5
    data[0, :4, :4] = 9  # a label of another object, elsewhere
    layer = layers.Labels(data.copy())
    steps = propagation_steps(volume, layer.data.copy(), 3, iou_threshold=0.0, z_range=(1, 6))
    seen = []
    while True:
        try:
            seen.append(next(steps))
        except StopIteration as stop:
            result = stop.value
            break
    assert seen[-1] == (2, 2)  # rounds: two slices each way from slice 3 within z_range (1, 6)
    assert result.seeds == {5: [3]}
    assert not volume.computed()[[0, 3]].any()  # the seed slice and slices outside z_range: not embedded
    before = layer.data.copy()
    written = write_propagated(layer, data, result.labels)
    assert written == int(((result.labels != data) & (data == 0)).sum())
    assert (layer.data[0, :4, :4] == 9).all() and (layer.data[3] == data[3]).all()
    if written:
        layer.undo()
        np.testing.assert_array_equal(layer.data, before)


def test_propagation_needs_objects_and_a_stack(stack_layer, small_weights):
    settings = EmbeddingSettings(model=str(small_weights), device="cpu")
    volume = stack_embeddings(stack_layer, settings)
    with pytest.raises(AnnotatorError, match="no objects"):
        next(propagation_steps(volume, np.zeros((6, 40, 48), np.uint32), 2))
    with pytest.raises(AnnotatorError, match="3D image"):
        stack_embeddings(layers.Image(np.zeros((40, 48), np.float32)), settings)


def test_write_propagated_never_overwrites_labels_painted_meanwhile():
    before = np.zeros((3, 8, 8), np.uint32)
    after = before.copy()
    after[1, 2:6, 2:6] = 4
    layer = layers.Labels(before.copy())
    layer.data[1, 2, 2] = 7  # painted while the propagation ran
    assert write_propagated(layer, before, after) == 15
    assert layer.data[1, 2, 2] == 7 and (layer.data[1, 3:6, 3:6] == 4).all()


def test_labels_above_uint32_are_propagated_and_written_unchanged():
    """A uint64 labels layer holding 2**32 + 1 and 1: two objects (they wrap onto each other in uint32)."""
    from napari_sam.data.synthetic import nuclei_3d

    stack, truth = nuclei_3d((5, 96, 96), n_objects=4, seed=3)
    areas = {int(k): int((truth[2] == k).sum()) for k in np.unique(truth[2]) if k}
    a, b = sorted(areas, key=areas.get)[-2:]  # the two largest objects on slice 2
    big = 2**32 + 1
    data = np.zeros(truth.shape, np.uint64)
    data[2][truth[2] == a] = big
    data[2][truth[2] == b] = 1
    layer = layers.Labels(data.copy())
    volume = stack_embeddings(layers.Image(stack), EmbeddingSettings(model="nano", device="cpu"))
    steps = propagation_steps(volume, layer.data.copy(), 2, image=stack)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            result = stop.value
            break
    assert sorted(result.seeds) == [1, big]
    assert write_propagated(layer, data, result.labels) > 0
    assert layer.data.dtype == np.uint64
    for k, true in ((big, a), (1, b)):
        mine = np.asarray(layer.data) == k
        assert len(np.flatnonzero(mine.any(axis=(1, 2)))) >= 2  # propagated beyond its seed slice
        assert (mine & (truth == true)).sum() > 0.8 * mine.sum()  # as itself, not merged


def test_write_propagated_refuses_labels_the_layer_cannot_hold():
    before = np.zeros((3, 8, 8), np.uint16)
    after = before.astype(np.uint32)
    after[1, 2:6, 2:6] = 70_000  # wraps onto 4464 in uint16
    layer = layers.Labels(before.copy())
    with pytest.raises(AnnotatorError, match="cannot hold label 70000"):
        write_propagated(layer, before, after)
    assert not np.asarray(layer.data).any()
