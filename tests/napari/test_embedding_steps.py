"""Computing a layer's embeddings in steps: a big 2D image reports its tiles as they finish."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_sam._napari.embeddings import EmbeddingSettings, LayerEmbeddings, _steps, in_steps
from napari_sam.engine.embed.embeddings import compute_embeddings
from tests.conftest import GOLDEN, Golden


def test_in_steps_passes_reports_through_and_returns_the_result():
    def call(progress, cancel):
        for k in range(1, 4):
            progress(k, 3)
        return "embeddings"

    steps = in_steps(call)
    reports = []
    try:
        while True:
            reports.append(next(steps))
    except StopIteration as stop:
        result = stop.value
    assert reports == [(1, 3), (2, 3), (3, 3)] and result == "embeddings"


def test_in_steps_raises_what_the_call_raised():
    def call(progress, cancel):
        progress(1, 2)
        raise ValueError("bad image")

    steps = in_steps(call)
    assert next(steps) == (1, 2)
    with pytest.raises(ValueError, match="bad image"):
        next(steps)


def test_closing_in_steps_cancels_the_call_and_waits_for_it():
    stopped = threading.Event()

    def call(progress, cancel):
        k = 0
        while not cancel.is_set():
            k += 1
            progress(k, 100)
            cancel.wait(0.01)
        stopped.set()

    steps = in_steps(call)
    next(steps)
    steps.close()  # what a cancelled napari worker does
    assert stopped.is_set()


def test_a_tiled_2d_layer_reports_each_tile(tmp_path):
    model = Golden(GOLDEN / "small_a").model()
    image = np.random.default_rng(0).integers(0, 1000, (300, 280)).astype(np.uint16)
    record = LayerEmbeddings(settings=EmbeddingSettings(), shape=image.shape)
    options = {"tile": (128, 16)}
    steps = list(_steps(image, [None], model, record, options, compute_embeddings))
    tiles = steps[:-1]
    assert steps[-1] == (1, 1)  # then the layer's one plane is done
    n = tiles[0][1]
    assert n >= 9 and tiles == [(k, n) for k in range(n + 1)]  # 0, then one report per tile
    expected = compute_embeddings(image, model, tile=(128, 16))
    got = record.slices[0]
    assert len(got.tiles) == len(expected.tiles)
    np.testing.assert_array_equal(got.tiles[0].features.numpy(), expected.tiles[0].features.numpy())


def test_cancelling_a_tiled_2d_layer_stops_between_tiles():
    model = Golden(GOLDEN / "small_a").model()
    image = np.random.default_rng(1).integers(0, 1000, (300, 280)).astype(np.uint16)
    record = LayerEmbeddings(settings=EmbeddingSettings(), shape=image.shape)
    steps = _steps(image, [None], model, record, {"tile": (128, 16)}, compute_embeddings)
    done, total = next(steps)
    assert done < total
    steps.close()
    assert 0 not in record.slices  # nothing half-made is kept


def test_object_size_sets_the_geometry_and_another_size_is_not_reused(small_weights):
    from napari.layers import Image

    from napari_sam._napari.embeddings import compute_steps, lookup, stored
    from napari_sam.data.synthetic import nuclei_2d
    from napari_sam.engine.loading import load_model
    from napari_sam.engine.object_scale import canvas_scale

    image, _ = nuclei_2d((64, 72), n_objects=3, seed=1)
    layer = Image(image, name="cells")
    rule = load_model(str(small_weights), "cpu").object_scale
    sized = EmbeddingSettings(model=str(small_weights), device="cpu", object_size=32)
    assert sized.object_size == 32.0 and sized != EmbeddingSettings(model=str(small_weights), device="cpu")
    for _ in compute_steps(layer, [None], sized):
        pass
    scale = canvas_scale(32.0, rule)  # 2.0: the image is 128 × 144 on the canvas
    assert lookup(layer, None, sized).input_size == (round(64 * scale), round(72 * scale))
    # another object size is another geometry: the kept embeddings are not handed out for it …
    other = EmbeddingSettings(model=str(small_weights), device="cpu", object_size=24)
    assert stored(layer, other) is None and lookup(layer, None, other) is None
    for _ in compute_steps(layer, [None], other):  # … and computing them replaces the record
        pass
    scale = canvas_scale(24.0, rule)  # 2.67: 171 × 192
    assert lookup(layer, None, other).input_size == (round(64 * scale), round(72 * scale))
    assert lookup(layer, None, sized) is None
    with pytest.raises(ValueError, match="object_size"):
        EmbeddingSettings(object_size="big")
