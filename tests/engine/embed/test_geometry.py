"""compute_embeddings(object_size=): the scale and tiles chosen from the objects' size; the cache record."""

from __future__ import annotations

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.data.synthetic import preset
from napari_sam.engine.object_scale import estimate_object_size
from napari_sam.errors import CacheMismatchError


@pytest.fixture(scope="module")
def nano():
    return ns.load_model("nano")


@pytest.fixture(scope="module")
def small_nuclei() -> np.ndarray:
    return preset("nuclei", shape=(128, 160), diameter=(10, 10), density=(1.0, 2.0)).sample(4).image


def test_given_size_sets_the_scale_of_one_canvas(nano, small_nuclei) -> None:
    # nano's rule: 3 * sqrt(14 / d), at most 3x and 90 px: 10 px objects 3x, 56 px 1.5x, 224 px 90/224
    assert ns.compute_embeddings(small_nuclei, nano, object_size=10).input_size == (384, 480)
    assert ns.compute_embeddings(small_nuclei, nano, object_size=56).input_size == (192, 240)
    assert ns.compute_embeddings(small_nuclei, nano, object_size=224).input_size == (51, 64)
    # the fixed rule: nano enlarges at most 2x
    assert ns.compute_embeddings(small_nuclei, nano, object_size="fixed").input_size == (256, 320)


def test_nano_estimates_by_default_and_uses_the_estimate(nano, small_nuclei) -> None:
    default = ns.compute_embeddings(small_nuclei, nano)
    estimate = estimate_object_size(small_nuclei.astype(np.float32))
    given = ns.compute_embeddings(small_nuclei, nano, object_size=estimate)
    assert default.input_size == given.input_size != (256, 320)
    assert np.array_equal(default.features.numpy(), given.features.numpy())
    # the embeddings say what size they were scaled for: the estimate, the given size, or None (fixed)
    # (the run estimates on the normalised image: close to the raw image's estimate, the same scale)
    assert default.object_size == pytest.approx(estimate, rel=0.15) and given.object_size == estimate
    assert ns.compute_embeddings(small_nuclei, nano, object_size="fixed").object_size is None


def test_small_objects_in_a_large_image_are_tiled_at_their_scale(nano) -> None:
    image = preset("nuclei", shape=(512, 512), diameter=(10, 10), density=(1.0, 2.0)).sample(2).image
    emb = ns.compute_embeddings(image, nano, object_size=10)  # 3x: 1536 px, tiles of 341 px
    assert isinstance(emb, ns.TiledEmbeddings)
    assert emb.spec == ns.TileSpec(341, 21)  # halo: 1.5 objects (at least a sixteenth of a tile)
    assert all(min(tile.input_size) >= 1020 for tile in emb.tiles)  # each tile fills the canvas
    assert emb.object_size == 10.0
    # an explicit tile= wins over the scaled tiling; the scale still holds up to the canvas
    emb = ns.compute_embeddings(image, nano, object_size=10, tile=(200, 20))
    assert emb.spec == ns.TileSpec(200, 20) and emb.tiles[0].input_size == (600, 600)


def test_prompts_land_on_the_same_pixels_whatever_the_scale(nano) -> None:
    sample = preset("nuclei", shape=(256, 256), diameter=(14, 14), density=(0.5, 1.0)).sample(6)
    label = int(np.bincount(sample.labels.ravel())[1:].argmax()) + 1
    rows, cols = np.nonzero(sample.labels == label)
    box = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
    truth = sample.labels == label
    for size in ("fixed", 14, 7):
        emb = ns.compute_embeddings(sample.image, nano, object_size=size)
        mask = ns.predict(emb, box=box, multimask=False).masks[0, 0]
        assert mask.shape == truth.shape
        iou = (mask & truth).sum() / (mask | truth).sum()
        assert iou > 0.6, (size, iou)  # the mask is on the object: coordinates follow the scale


def test_cache_records_the_geometry_and_refuses_another(nano, small_nuclei, tmp_path) -> None:
    cache = tmp_path / "emb.zarr"
    first = ns.compute_embeddings(small_nuclei, nano, object_size=10, cache=cache)
    again = ns.compute_embeddings(small_nuclei, nano, object_size=10, cache=cache)
    assert np.array_equal(first.features.numpy(), again.features.numpy())
    record = ns.open_embeddings(cache)
    assert record.input_size == (384, 480) and record.object_size == first.object_size == 10.0
    with pytest.raises(CacheMismatchError):
        ns.compute_embeddings(small_nuclei, nano, object_size="fixed", cache=cache)


def test_segment_auto_with_boxes_takes_the_boxes_size(nano) -> None:
    sample = preset("nuclei", shape=(256, 256), diameter=(12, 12), density=(0.5, 1.0)).sample(8)
    boxes = []
    for label in np.unique(sample.labels)[1:4]:
        rows, cols = np.nonzero(sample.labels == label)
        boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
    sides = [np.sqrt((b[2] - b[0]) * (b[3] - b[1])) for b in boxes]
    by_boxes = ns.segment(sample.image, boxes=boxes, model=nano, object_size="auto")
    given = ns.segment(sample.image, boxes=boxes, model=nano, object_size=float(np.median(sides)))
    assert np.array_equal(by_boxes, given)


def test_automatic_passes_the_size_to_its_embedding(nano) -> None:
    sample = preset("nuclei", shape=(192, 192), diameter=(12, 12), density=(1.0, 2.0)).sample(9)
    direct = ns.automatic(sample.image, model=nano, mode="ais", object_size=24)
    emb = ns.compute_embeddings(sample.image, nano, object_size=24)
    via = ns.automatic(sample.image, model=nano, mode="ais", embeddings=emb)
    assert np.array_equal(direct.labels, via.labels)
    fixed = ns.automatic(sample.image, model=nano, mode="ais", object_size="fixed")
    assert not np.array_equal(direct.labels, fixed.labels)  # another geometry, other maps


def test_official_models_keep_the_fixed_rule_by_default(small_model) -> None:
    image = np.random.default_rng(0).integers(0, 255, (40, 60), dtype=np.uint8)
    emb = ns.compute_embeddings(image, small_model)
    assert max(emb.input_size) == small_model.image_size


def test_amg_embeds_at_the_given_size_too(nano) -> None:
    sample = preset("nuclei", shape=(160, 160), diameter=(12, 12), density=(1.0, 2.0)).sample(10)
    grid = {"mode": "amg", "preset": "nuclei", "points_per_side": 4}
    direct = ns.automatic(sample.image, model=nano, object_size=40, **grid)
    emb = ns.compute_embeddings(sample.image, nano, object_size=40)
    assert emb.input_size == (284, 284)  # 40 px objects: 3 * sqrt(14 / 40) = 1.77x
    via = ns.automatic(sample.image, model=nano, embeddings=emb, **grid)
    assert np.array_equal(direct.labels, via.labels)
