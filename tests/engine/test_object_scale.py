"""Object-scale geometry: the size estimate, the scale and the tiling chosen from it."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.data.synthetic import preset
from napari_sam.engine.object_scale import (
    MAX_SCALE,
    MIN_SCALE,
    canvas_scale,
    estimate_object_size,
    object_size_of_boxes,
    scaled_tiling,
)
from napari_sam.engine.types import EmbedOptions, TileSpec
from napari_sam.model.sam import NANO_OBJECT_SCALE, OFFICIAL_OBJECT_SCALE, ObjectScale


def _median_diameter(labels: np.ndarray) -> float:
    areas = np.unique(labels[labels > 0], return_counts=True)[1]
    return float(np.median(2 * np.sqrt(areas / np.pi)))


@pytest.mark.parametrize(("diameter", "side"), [(8, 256), (20, 256), (45, 512)])
def test_estimate_follows_the_objects_size(diameter: int, side: int) -> None:
    sample = preset("nuclei", shape=(side, side), diameter=(diameter, diameter), density=(0.5, 2.0)).sample(3)
    truth = _median_diameter(sample.labels)
    estimate = estimate_object_size(sample.image)
    assert estimate is not None
    assert 0.75 < estimate / truth < 1.33, (estimate, truth)


def test_estimate_ignores_uneven_illumination() -> None:
    sample = preset("nuclei", shape=(256, 256), diameter=(16, 16), density=(0.5, 1.0)).sample(5)
    ramp = np.linspace(0, float(sample.image.max()), 256)[None, :]  # background rising by a nucleus' peak
    lit = sample.image.astype(np.float64) + ramp
    estimate = estimate_object_size(lit)
    assert estimate is not None and 0.7 < estimate / _median_diameter(sample.labels) < 1.4


def test_estimate_of_large_image_uses_block_means_but_reports_full_pixels() -> None:
    sample = preset("nuclei", shape=(2048, 1024), diameter=(30, 30), density=(0.5, 1.0)).sample(2)
    estimate = estimate_object_size(sample.image)
    assert estimate is not None and 0.75 < estimate / _median_diameter(sample.labels) < 1.33


def test_estimate_of_channels_and_blank_images() -> None:
    sample = preset("nuclei", shape=(128, 128), diameter=(12, 12), density=(1.0, 2.0)).sample(1)
    gray = estimate_object_size(sample.image)
    rgb = estimate_object_size(np.repeat(sample.image[..., None], 3, axis=-1))
    assert gray == pytest.approx(rgb)
    assert estimate_object_size(np.full((64, 64), 7.0)) is None
    assert estimate_object_size(np.zeros((64, 64), np.uint8)) is None
    with pytest.raises(ValueError, match="plane must be"):
        estimate_object_size(np.zeros((2, 3, 4, 5)))


def test_canvas_scale_enlarges_small_and_shrinks_large_objects_within_limits() -> None:
    assert canvas_scale(10, NANO_OBJECT_SCALE) == 3.0  # nano's most
    assert canvas_scale(56, NANO_OBJECT_SCALE) == pytest.approx(1.5)
    assert canvas_scale(224, NANO_OBJECT_SCALE) == pytest.approx(90 / 224)  # at most 90 px on the canvas
    assert canvas_scale(16, OFFICIAL_OBJECT_SCALE) == 4.0
    assert canvas_scale(128, OFFICIAL_OBJECT_SCALE) == 0.5  # official: 64 px on the canvas
    assert canvas_scale(0.5, ObjectScale(1.0, 1.0, 100.0)) == MAX_SCALE
    assert canvas_scale(10_000, OFFICIAL_OBJECT_SCALE) == MIN_SCALE
    with pytest.raises(ValueError, match="object_size"):
        canvas_scale(0, NANO_OBJECT_SCALE)


def test_scaled_tiling_one_canvas_when_it_fits_tiles_that_fill_the_canvas_otherwise() -> None:
    assert scaled_tiling((300, 200), 3.0, 1024) == (3.0, None)
    # 2.0 fills the canvas and keeps objects within the tolerance of the best scale: no tiles
    assert scaled_tiling((512, 512), 2.8, 1024) == (2.0, None)
    assert scaled_tiling((512, 512), 3.0, 1024)[1] is not None  # 2.0 < 0.7 * 3.0: tiles
    scale, tiles = scaled_tiling((512, 512), 4.0, 1024)
    assert scale == 4.0 and tiles == TileSpec(256, 32)
    assert tiles.tile_size * scale <= 1024  # each tile fills the canvas at the scale asked for
    # an elongated image: the longer side decides
    assert scaled_tiling((100, 2000), 1.0, 1024)[1] == TileSpec(1024, 128)


def test_object_size_of_boxes_is_the_median_geometric_side() -> None:
    assert object_size_of_boxes([[0, 0, 10, 10], [0, 0, 20, 20], [0, 0, 30, 30]]) == 20.0
    assert object_size_of_boxes([[0, 0, 4, 16]]) == 8.0
    assert object_size_of_boxes(np.zeros((0, 4))) is None


@pytest.mark.parametrize("bad", ["big", 0, -3, float("nan"), True, [10]])
def test_object_size_option_is_checked_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match="object_size"):
        EmbedOptions(object_size=bad)


def test_object_size_option_forms() -> None:
    assert EmbedOptions(object_size=12).object_size == 12.0
    assert EmbedOptions(object_size="auto").object_size == "auto"
    assert EmbedOptions(object_size="fixed").object_size == "fixed"
    assert EmbedOptions().object_size is None


def test_estimate_treats_nan_and_inf_as_dark() -> None:
    sample = preset("nuclei", shape=(128, 128), diameter=(12, 12), density=(1.0, 2.0)).sample(1)
    image = sample.image.astype(np.float32)
    clean = estimate_object_size(image)
    image[:3, :3] = np.nan
    image[-2:, -2:] = np.inf
    dirty = estimate_object_size(image)
    assert clean is not None and dirty is not None and 0.8 < dirty / clean < 1.25
