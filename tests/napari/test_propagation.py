"""The annotator's propagation: the stack's lazy embeddings, the generator, the undoable write (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._napari.embeddings import EmbeddingSettings
from napari_sam._napari.errors import AnnotatorError
from napari_sam._napari.propagation import propagation_steps, stack_embeddings, write_propagated

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
