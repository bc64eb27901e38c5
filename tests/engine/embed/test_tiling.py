"""Tiling of large images: the grid, routing prompts to tiles, stitching masks, tiled caches."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.engine.embed.embeddings import compute_embeddings, open_embeddings
from napari_sam.engine.embed.store import open_store
from napari_sam.engine.embed.tiling import resolve_tiling, tile_windows
from napari_sam.engine.types import TiledEmbeddings, TileSpec


@pytest.fixture(scope="module")
def large() -> np.ndarray:
    """A 300 × 260 uint16 image with bright rectangles (large for a tile size of 128)."""
    rng = np.random.default_rng(3)
    img = rng.normal(400, 30, (300, 260))
    img[20:60, 20:70] += 5000  # inside the first tile only
    img[100:150, 80:180] += 4000  # spans several tiles
    img[240:280, 200:250] += 6000
    return np.clip(img, 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("shape", [(300, 260), (1000, 129), (128, 700), (50, 60)])
@pytest.mark.parametrize(("size", "halo"), [(128, 16), (100, 0), (64, 31)])
def test_tiles_have_equal_size_and_cores_partition_the_image(shape, size, halo):
    windows = tile_windows(shape, TileSpec(size, halo))
    cover = np.zeros(shape, dtype=int)
    for win in windows:
        r0, c0, r1, c1 = win.bounds
        assert (r1 - r0, c1 - c0) == (min(size, shape[0]), min(size, shape[1]))
        assert min(r0, c0) >= 0 and r1 <= shape[0] and c1 <= shape[1]
        cr0, cc0, cr1, cc1 = win.core
        assert r0 <= cr0 < cr1 <= r1 and c0 <= cc0 < cc1 <= c1
        cover[cr0:cr1, cc0:cc1] += 1
    np.testing.assert_array_equal(cover, 1)


def test_neighbouring_tiles_overlap_by_at_least_twice_the_halo():
    windows = tile_windows((1000, 100), TileSpec(128, 16))
    starts = [w.bounds[0] for w in windows]
    for a, b in itertools.pairwise(starts):
        assert a + 128 - b >= 32


def test_resolve_tiling_rules():
    assert resolve_tiling(None, (2048, 2048)) is None
    assert resolve_tiling(None, (2049, 100)) == TileSpec()
    assert resolve_tiling(None, (1500, 100), threshold=1024) == TileSpec()
    assert resolve_tiling(False, (9000, 9000)) is None
    assert resolve_tiling((128, 16), (300, 100)) == TileSpec(128, 16)
    assert resolve_tiling((128, 16), (100, 100)) is None
    assert resolve_tiling(TileSpec(64, 8), (65, 10)) == TileSpec(64, 8)
    with pytest.raises(ValueError, match="halo"):
        resolve_tiling((128, 64), (300, 300))
    with pytest.raises(ValueError, match="tile must be"):
        resolve_tiling("big", (300, 300))


def test_large_images_are_tiled_and_each_tile_is_an_embedded_crop(large, small_model):
    tiled = compute_embeddings(large, small_model, tile=(128, 16))
    assert isinstance(tiled, TiledEmbeddings)
    assert len(tiled) == 9 and tiled.original_size == (300, 260)
    limits = tiled[0].preprocessing.contrast_limits
    assert all(tiled[i].preprocessing.contrast_limits == limits for i in range(len(tiled)))  # one image
    # a tile is the crop embedded with the whole image's intensity limits
    win = tiled.windows[4]
    crop = large[win.slices]
    alone = compute_embeddings(crop, small_model, contrast_limits=limits[0])
    np.testing.assert_allclose(tiled[4].features.numpy(), alone.features.numpy(), atol=1e-5)
    assert tiled[4].original_size == crop.shape
    untiled = compute_embeddings(large, small_model, tile=False)
    assert untiled.original_size == (300, 260) and not isinstance(untiled, TiledEmbeddings)


def test_object_inside_one_tile_matches_the_untiled_decoder_on_that_tile(large, small_model):
    tiled = compute_embeddings(large, small_model, tile=(128, 16))
    box = np.array([20, 20, 60, 70])
    pred = ns.predict(tiled, box=box, multimask=False)
    assert pred.masks.shape == (1, 1, 300, 260)
    win = tiled.windows[tiled.route(box)]
    assert win.bounds[:2] == (0, 0)
    alone = compute_embeddings(
        large[win.slices], small_model, contrast_limits=tiled[0].preprocessing.contrast_limits[0]
    )
    ref = ns.predict(alone, box=box, multimask=False)
    r0, c0, r1, c1 = win.bounds
    np.testing.assert_array_equal(pred.masks[0, 0, r0:r1, c0:c1], ref.masks[0, 0])
    assert not pred.masks[0, 0, r1:, :].any() and not pred.masks[0, 0, :, c1:].any()
    np.testing.assert_allclose(pred.iou_scores, ref.iou_scores, rtol=1e-5)


def test_point_prompts_are_shifted_into_their_tile(large, small_model):
    tiled = compute_embeddings(large, small_model, tile=(128, 16))
    point = np.array([[260.0, 225.0]])
    pred = ns.predict(tiled, points=point, multimask=True)
    win = tiled.windows[tiled.route([260, 225, 261, 226])]
    assert win.bounds[2:] == (300, 260)
    ref = ns.predict(tiled.tiles[tiled.windows.index(win)], points=point - win.offset, multimask=True)
    r0, c0, r1, c1 = win.bounds
    np.testing.assert_array_equal(pred.masks[0, :, r0:r1, c0:c1], ref.masks[0])
    assert pred.masks.shape == (1, 3, 300, 260)


def test_a_box_spanning_tiles_gets_a_window_centred_on_it(large, small_model):
    tiled = compute_embeddings(large, small_model, tile=(128, 16))
    box = np.array([100, 80, 150, 180])  # 100 columns wide: more than any tile holds with margin
    assert tiled.route(box) is None
    bounds = tiled.centred_window(box)
    r0, c0, r1, c1 = bounds
    assert r0 <= 100 and c0 <= 80 and r1 >= 150 and c1 >= 180
    assert abs((r0 + r1) / 2 - 125) <= 1 and abs((c0 + c1) / 2 - 130) <= 1
    pred = ns.predict(tiled, box=box, multimask=False)
    limits = tiled[0].preprocessing.contrast_limits[0]
    alone = compute_embeddings(large[r0:r1, c0:c1], small_model, contrast_limits=limits)
    ref = ns.predict(alone, box=box - np.array([r0, c0, r0, c0]), multimask=False)
    np.testing.assert_array_equal(pred.masks[0, 0, r0:r1, c0:c1], ref.masks[0, 0])


def test_tiled_cache_round_trip_and_routing_without_the_image(tmp_path, large, small_model):
    cache = tmp_path / "t.zarr"
    first = compute_embeddings(large, small_model, tile=(128, 16), cache=cache)
    again = compute_embeddings(large, small_model, tile=(128, 16), cache=cache)
    assert isinstance(again, TiledEmbeddings) and len(again) == 9
    for i in (0, 4, 8):
        np.testing.assert_array_equal(first[i].features.numpy(), again[i].features.numpy())
    store = open_store(cache)
    assert store.array("embeddings").shape == (1, 9, *small_model.embedding_shape)
    assert store.meta["tiling"]["tile_size"] == 128 and store.meta["tiling"]["halo"] == 16
    reopened = open_embeddings(cache, small_model)
    assert reopened.encode_window is None
    box = np.array([20, 20, 60, 70])
    np.testing.assert_array_equal(ns.predict(reopened, box=box).masks, ns.predict(first, box=box).masks)
    with pytest.warns(UserWarning, match="does not fit in any tile"):
        clipped = ns.predict(reopened, box=[100, 80, 150, 180], multimask=False)
    assert clipped.masks.shape == (1, 1, 300, 260)


def test_several_objects_in_different_tiles(large, small_model):
    tiled = compute_embeddings(large, small_model, tile=(128, 16))
    boxes = np.array([[20, 20, 60, 70], [240, 200, 280, 250]])
    pred = ns.predict(tiled, box=boxes, multimask=False)
    for i, box in enumerate(boxes):
        one = ns.predict(tiled, box=box, multimask=False)
        np.testing.assert_array_equal(pred.masks[i], one.masks[0])
    assert not (pred.masks[0, 0, 150:, :].any() or pred.masks[1, 0, :150, :].any())


@pytest.mark.slow  # three nano encoder passes at 1024² (~10 s on a laptop CPU)
def test_nano_tiled_and_untiled_agree_on_objects_inside_one_tile():
    """Tiles at the model's own input size (nano: 1024) segment like the whole image does."""
    rng = np.random.default_rng(0)
    img = rng.normal(500, 30, (1024, 1300))
    yy, xx = np.mgrid[0:1024, 0:1300]
    discs = [(100, 100, 25), (300, 1200, 30), (500, 650, 28), (900, 500, 20)]
    for cy, cx, r in discs:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += 3000
    img = np.clip(img, 0, 65535).astype(np.uint16)
    sam = ns.load_model("nano", "cpu")
    tiled = compute_embeddings(img, sam, tile=(1024, 128))
    untiled = compute_embeddings(img, sam, tile=False)
    assert isinstance(tiled, TiledEmbeddings) and len(tiled) == 2
    routes = set()
    for cy, cx, r in discs:
        truth = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        box = [cy - r - 3, cx - r - 3, cy + r + 4, cx + r + 4]
        routes.add(tiled.route(box))
        a = ns.predict(tiled, box=box, multimask=False).masks[0, 0]
        b = ns.predict(untiled, box=box, multimask=False).masks[0, 0]
        assert (a & b).sum() / (a | b).sum() > 0.9
        assert (a & truth).sum() / (a | truth).sum() > 0.9
    assert routes == {0, 1}


def test_an_interrupted_tiled_slice_resumes_tile_by_tile(tmp_path, large, small_model, monkeypatch):
    import napari_sam.engine.embed.pipeline as emb_mod

    reference = compute_embeddings(large, small_model, tile=(128, 16), cache=tmp_path / "ref.zarr")
    real = emb_mod.encode_images
    calls: list[int] = []

    def failing_after_four(sam, inputs, **kwargs):
        calls.append(int(inputs.shape[0]))
        if len(calls) > 4:
            raise RuntimeError("out of memory")
        return real(sam, inputs, **kwargs)

    monkeypatch.setattr(emb_mod, "encode_images", failing_after_four)
    cache = tmp_path / "c.zarr"
    with pytest.raises(RuntimeError, match="out of memory"):
        compute_embeddings(large, small_model, tile=(128, 16), cache=cache)
    store = open_store(cache)
    assert not store.done_mask()[0]
    np.testing.assert_array_equal(store.array("tile_done")[0], [True] * 4 + [False] * 5)
    calls.clear()
    monkeypatch.setattr(
        emb_mod, "encode_images", lambda sam, inputs, **kw: calls.append(1) or real(sam, inputs, **kw)
    )
    resumed = compute_embeddings(large, small_model, tile=(128, 16), cache=cache)
    assert len(calls) == 5
    for i in range(9):
        np.testing.assert_array_equal(resumed[i].features.numpy(), reference[i].features.numpy())
