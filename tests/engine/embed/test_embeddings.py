"""compute_embeddings' options (checked once, before any model is loaded), embed_image, the direct 2D path and
the pipeline's prefetching iterator."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import napari_sam.engine.embed.embeddings as emb_front
import napari_sam.engine.embed.pipeline as pipeline
from napari_sam.data.synthetic import nuclei_2d, nuclei_3d
from napari_sam.engine.embed.embeddings import compute_embeddings, embed_image
from napari_sam.engine.embed.reader import prefetch
from napari_sam.engine.types import EmbedOptions, TileSpec
from napari_sam.errors import Cancelled


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"normalize": "zscore"}, "normalize must be"),
        ({"percentiles": (1, 200)}, "percentiles must satisfy"),
        ({"contrast_limits": (5, 1)}, "contrast_limits must be finite"),
        ({"precision": "fp8"}, "precision must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"tile": -16}, "tile_size must be"),
        ({"tile": "big"}, "tile must be None"),
        ({"tile_threshold": 8}, "tile_threshold must be"),
        ({"percentile_scope": "global"}, "percentile_scope must be"),
        ({"cache_dtype": "int8"}, "cache_dtype must be"),
    ],
)
def test_a_bad_option_raises_before_any_model_is_loaded(monkeypatch, options, message):
    loaded = []
    monkeypatch.setattr(emb_front, "load_model", lambda *a, **k: loaded.append(a))
    with pytest.raises(ValueError, match=message):
        compute_embeddings(np.zeros((32, 32), np.uint8), "vit_h", **options)
    assert not loaded  # no download of vit_h for a typo


def test_embed_options_keep_one_form_of_each_value():
    options = EmbedOptions(normalize=None, precision="BFloat16", tile=True, batch_size=np.int64(2))
    assert options.normalize == "none" and options.precision == "bf16"
    assert options.tile == TileSpec() and options.batch_size == 2 and type(options.batch_size) is int
    assert EmbedOptions(tile=256).tile == TileSpec(256, 31)
    assert EmbedOptions(tile=(512, 64)).tile == TileSpec(512, 64)
    assert EmbedOptions(tile=False).tile is False


def test_a_2d_image_goes_straight_through_without_the_reader_thread(small_model, monkeypatch):
    image, _ = nuclei_2d((96, 96), n_objects=3, seed=5)
    reference = compute_embeddings(image, small_model)

    def no_pool(*args, **kwargs):
        raise AssertionError("a plain 2D image needs no reader thread")

    monkeypatch.setattr(pipeline, "ThreadPoolExecutor", no_pool)
    direct = embed_image(image, small_model, EmbedOptions())
    torch.testing.assert_close(direct.features, reference.features, rtol=0, atol=0)
    assert direct.preprocessing == reference.preprocessing and direct.input_size == reference.input_size
    with pytest.raises(AssertionError, match="reader thread"):  # a stack does use it
        embed_image(np.stack([image, image]), small_model, EmbedOptions())


def test_a_2d_image_counts_one_slice_and_stops_when_cancelled(small_model):
    image, _ = nuclei_2d((64, 64), n_objects=2, seed=6)
    calls = []
    compute_embeddings(image, small_model, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(0, 1), (1, 1)]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="embedding cancelled after 0 of 1 slices"):
        compute_embeddings(image, small_model, cancel=cancel)


def test_embed_image_takes_a_loaded_model_and_checked_options(small_model, monkeypatch):
    stack, _ = nuclei_3d((3, 64, 64), n_objects=2, seed=7)
    monkeypatch.setattr(emb_front, "load_model", lambda *a, **k: pytest.fail("embed_image loads no model"))
    volume = embed_image(stack, small_model, EmbedOptions(batch_size=2), slices=[0, 2])
    assert volume.computed().tolist() == [True, False, True]
    assert volume[1].original_size == (64, 64)  # computed on first use


def test_prefetch_yields_in_order_and_cancels_what_is_left_when_closed():
    started = []

    def job(i: int):
        def run() -> int:
            started.append(i)
            return i * i

        return run

    with ThreadPoolExecutor(max_workers=1) as pool:
        assert list(prefetch(pool, (job(i) for i in range(5)), ahead=2)) == [0, 1, 4, 9, 16]
        started.clear()
        results = prefetch(pool, (job(i) for i in range(100)), ahead=2)
        assert next(results) == 0
        results.close()
    assert len(started) <= 3  # the one handed out and at most the two read ahead
