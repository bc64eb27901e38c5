"""The synthetic microscopy generator: determinism, dtypes, exact labels, geometry, channels, 3D, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import regionprops

from napari_sam.data.synthetic import (
    HELD_OUT,
    PRESETS,
    SyntheticConfig,
    cells_2d,
    generate,
    nuclei_2d,
    nuclei_3d,
    preset,
)

SMALL_3D = (12, 96, 96)


def small(name: str, **overrides) -> SyntheticConfig:
    """A preset at a test-friendly size (the same density, so a smaller count)."""
    shape = SMALL_3D if PRESETS[name].ndim == 3 else (192, 192)
    return preset(name, shape=shape, **overrides)


def assert_exact_labels(labels: np.ndarray, min_area: int) -> int:
    """ids 1..N without gaps, every object one face-connected region of at least min_area pixels."""
    assert labels.dtype == np.uint32
    n = int(labels.max())
    ids = np.unique(labels)
    assert np.array_equal(ids[ids > 0], np.arange(1, n + 1))
    structure = ndimage.generate_binary_structure(labels.ndim, 1)
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[box] == k
        _, pieces = ndimage.label(mask, structure)
        assert pieces == 1, f"object {k} has {pieces} pieces"
        assert mask.sum() >= min_area
    return n


# --------------------------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", list(PRESETS))
def test_same_seed_same_arrays_other_seed_other_arrays(name):
    config = small(name)
    a, b, c = config.sample(7), config.sample(7), config.sample(8)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.params == b.params
    if a.cells is not None:
        np.testing.assert_array_equal(a.cells, b.cells)
    assert not np.array_equal(a.image, c.image)


def test_generate_is_sample_and_does_not_touch_global_random_state():
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    config = small("nuclei")
    a = generate(config, 4)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    np.testing.assert_array_equal(a.image, config.sample(4).image)


# --------------------------------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32", np.uint8, np.uint16, np.float32])
def test_dtypes_and_value_ranges(dtype):
    sample = small("nuclei", dtype=dtype).sample(2)
    assert sample.image.dtype == np.dtype(dtype)
    assert sample.image.shape == (192, 192)
    assert sample.labels.dtype == np.uint32 and sample.labels.shape == (192, 192)
    values = sample.image
    assert values.min() >= 0
    if values.dtype == np.float32:
        assert values.max() <= 1.0 and np.isfinite(values).all()
    # not a blank or saturated picture: a real spread of values
    assert float(values.std()) > 0.02 * float(values.max()) > 0
    assert (values == values.max()).mean() < 0.01


def test_uint16_uses_more_than_eight_bits():
    image = small("nuclei", dtype="uint16").sample(5).image
    assert image.max() > 255


# --------------------------------------------------------------------------------------------- labels


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_are_exact_and_objects_brighter_than_background(name, seed):
    config = small(name)
    sample = config.sample(seed)
    n = assert_exact_labels(sample.labels, config.min_area)
    assert n == sample.n_objects == sample.params["objects"]
    nuclei = sample.image[..., 0] if sample.cells is not None else sample.image
    if n and config.modality == "fluorescence":  # label-free cells may be darker than the background
        inside = nuclei[sample.labels > 0].astype(float).mean()
        outside = nuclei[sample.labels == 0].astype(float).mean()
        assert inside > outside
        # and object by object: each is brighter than the background around it on average
        dimmer = 0
        for region in regionprops(sample.labels, intensity_image=nuclei.astype(float)):
            dimmer += region.intensity_mean <= outside
        assert dimmer <= max(1, n // 20)


def test_touching_clusters_stay_exact():
    config = small(
        "nuclei_dense",
        count=60,
        diameter=(10, 14),
        cluster_probability=1.0,
        overlap=(0.2, 0.3),
        overlap_brightness=1.0,
    )
    sample = config.sample(3)
    n = assert_exact_labels(sample.labels, config.min_area)
    assert n > 20
    # many objects touch another one (a face neighbour with a different nonzero id)
    grown = ndimage.grey_dilation(sample.labels, size=(3, 3))
    touching = np.unique(sample.labels[(grown != sample.labels) & (sample.labels > 0)])
    assert len(touching) > n // 3


@pytest.mark.parametrize("seed", range(4))
def test_irregular_overlapping_shapes_stay_one_region_each(seed):
    # lobed, elongated, heavily overlapping clusters: ownership alone leaves fragments here
    config = SyntheticConfig(
        shape=(192, 192),
        diameter=(12, 30),
        count=60,
        irregularity=0.3,
        aspect=(1.5, 2.2),
        cluster_probability=0.8,
        overlap=(0.2, 0.4),
    )
    sample = config.sample(seed)
    assert assert_exact_labels(sample.labels, config.min_area) > 30


def test_ids_stay_consecutive_when_objects_are_dropped():
    # a large min_area removes the slivers cut by the image border
    config = SyntheticConfig(shape=(128, 128), diameter=(16, 20), count=40, min_area=150)
    sample = config.sample(0)
    assert sample.params["objects"] < sample.params["placed"]
    assert assert_exact_labels(sample.labels, 150) == sample.params["objects"]
    image = sample.image.astype(float)
    assert image[sample.labels > 0].mean() > image[sample.labels == 0].mean()


def test_diameters_follow_the_configured_range():
    config = SyntheticConfig(
        shape=(256, 256),
        diameter=(14.0, 30.0),
        size_spread=(0.3, 0.3),
        count=(30, 30),
        aspect=1.0,
        irregularity=0.0,
        cluster_probability=0.0,
        overlap=(-0.3, -0.3),
    )
    sizes = []
    for seed in range(4):
        labels = config.sample(seed).labels
        for region in regionprops(labels):
            r0, c0, r1, c1 = region.bbox
            if r0 > 0 and c0 > 0 and r1 < 256 and c1 < 256:
                sizes.append(region.equivalent_diameter_area)
    sizes = np.asarray(sizes)
    assert len(sizes) > 50
    assert sizes.min() >= 14.0 * 0.85 and sizes.max() <= 30.0 * 1.1


def test_narrow_diameter_gives_that_size():
    labels = SyntheticConfig(shape=(256, 256), diameter=20.0, count=10, irregularity=0.0, aspect=1.0).sample(
        1
    )
    inner = [r for r in regionprops(labels.labels) if min(r.bbox[:2]) > 0 and max(r.bbox[2:]) < 256]
    assert inner
    assert np.median([r.equivalent_diameter_area for r in inner]) == pytest.approx(20.0, rel=0.1)


def test_irregularity_makes_objects_less_convex():
    def solidity(irregularity: float) -> float:
        config = SyntheticConfig(
            shape=(256, 256), diameter=(40, 50), count=8, irregularity=irregularity, overlap=-0.5, aspect=1.0
        )
        values = [r.solidity for s in range(3) for r in regionprops(config.sample(s).labels)]
        return float(np.mean(values))

    assert solidity(0.3) < solidity(0.0) - 0.02


# --------------------------------------------------------------------------------------------- counts


def test_count_is_met_when_there_is_room():
    sample = SyntheticConfig(shape=(256, 256), diameter=(10, 14), count=(25, 25)).sample(0)
    assert sample.n_objects == 25 == sample.params["requested"]


def test_density_controls_count():
    counts = {}
    for density in (1.0, 5.0):
        config = SyntheticConfig(shape=(256, 256), diameter=(8, 10), density=(density, density), overlap=-0.1)
        counts[density] = [config.sample(s).n_objects for s in range(3)]
    assert counts[1.0] == [round(1.0 * 256 * 256 / 1e4)] * 3
    assert counts[5.0] == [round(5.0 * 256 * 256 / 1e4)] * 3


def test_count_overrides_density_and_dense_preset_is_dense():
    assert SyntheticConfig(shape=(128, 128), count=3, density=50.0).sample(0).n_objects == 3
    dense = [preset("nuclei_dense").sample(s).n_objects for s in range(3)]
    sparse = [preset("nuclei_sparse").sample(s).n_objects for s in range(3)]
    assert min(dense) > 60 and max(sparse) < 25


def test_an_overfull_request_places_what_fits():
    sample = SyntheticConfig(shape=(128, 128), diameter=(60, 70), count=200).sample(0)
    assert 0 < sample.n_objects < 20 and sample.params["requested"] == 200
    assert_exact_labels(sample.labels, 10)


def test_zero_objects_is_background_only():
    sample = SyntheticConfig(shape=(64, 64), count=0).sample(0)
    assert sample.n_objects == 0 and not sample.labels.any() and sample.image.shape == (64, 64)


# --------------------------------------------------------------------------------------------- channels


@pytest.mark.parametrize("kind", ["cytoplasm", "membrane"])
def test_second_channel_with_cell_labels(kind):
    config = small("cells_2ch", second_channel=kind)
    sample = config.sample(1)
    assert sample.image.shape == (192, 192, 2)
    assert sample.cells is not None and sample.cells.shape == (192, 192) and sample.cells.dtype == np.uint32
    nuclei, cells = sample.labels, sample.cells
    n = assert_exact_labels(nuclei, config.min_area)
    assert n > 0 and assert_exact_labels(cells, 1) == n
    assert np.array_equal(cells[nuclei > 0], nuclei[nuclei > 0])  # cell k contains nucleus k
    assert (cells > 0).sum() > 1.5 * (nuclei > 0).sum()  # cells are bigger
    second = sample.image[..., 1].astype(float)
    assert second[cells > 0].mean() > second[cells == 0].mean()
    assert not np.array_equal(sample.image[..., 0], sample.image[..., 1])


def test_one_channel_has_no_cells():
    assert small("nuclei").sample(0).cells is None


def test_cells_2d_shortcut():
    image, nuclei, cells = cells_2d((128, 128), n_objects=6, seed=2, dtype=np.uint8)
    assert image.shape == (128, 128, 2) and image.dtype == np.uint8
    assert nuclei.max() == cells.max() == 6


# --------------------------------------------------------------------------------------------- 3D


def test_3d_shape_and_objects_span_several_planes():
    image, labels = nuclei_3d((16, 96, 96), n_objects=12, diameter=(16, 24), z_spacing=2.0, seed=0)
    assert image.shape == labels.shape == (16, 96, 96) and image.dtype == np.uint16
    n = assert_exact_labels(labels, 10)
    assert n >= 8
    spans = [box[0].stop - box[0].start for box in ndimage.find_objects(labels)]
    assert np.median(spans) >= 4
    inside = image[labels > 0].astype(float).mean()
    assert inside > image[labels == 0].astype(float).mean()


def test_z_spacing_flattens_objects_in_planes():
    def median_span(z_spacing: float) -> float:
        _, labels = nuclei_3d((24, 64, 64), n_objects=6, diameter=(20, 22), z_spacing=z_spacing, seed=1)
        return float(np.median([b[0].stop - b[0].start for b in ndimage.find_objects(labels)]))

    assert median_span(1.0) > 1.6 * median_span(3.0)


def test_3d_two_channels():
    sample = small("nuclei_3d", channels=2, count=6).sample(0)
    assert sample.image.shape == (*SMALL_3D, 2) and sample.cells is not None
    assert sample.cells.shape == SMALL_3D


# --------------------------------------------------------------------------------------------- API


def test_nuclei_2d_keeps_the_demo_signature():
    image, labels = nuclei_2d((128, 128), n_objects=4, seed=0)
    assert image.shape == labels.shape == (128, 128)
    assert image.dtype == np.uint16 and labels.dtype == np.uint32
    assert labels.max() == 4
    # the first version's radius keyword still works: a radius range is half the diameter range
    _, labels = nuclei_2d((128, 128), n_objects=3, radius=(10.0, 10.0), seed=1)
    inner = [r for r in regionprops(labels) if min(r.bbox[:2]) > 0 and max(r.bbox[2:]) < 128]
    assert inner and np.median([r.equivalent_diameter_area for r in inner]) == pytest.approx(20.0, rel=0.15)
    with pytest.raises(ValueError, match="radius"):
        nuclei_2d((64, 64), radius=(5.0, 2.0))


def test_config_is_frozen_and_round_trips_through_json():
    config = preset("wide", shape=(64, 64))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.blur = (1.0, 1.0)  # type: ignore[misc]
    data = json.loads(json.dumps(config.to_dict()))
    assert SyntheticConfig.from_dict(data) == config
    with pytest.raises(ValueError, match="nonsense"):
        SyntheticConfig.from_dict({**data, "nonsense": 1})


def test_scalars_become_fixed_ranges():
    config = SyntheticConfig(blur=1.5, diameter=[10, 20])
    assert config.blur == (1.5, 1.5) and config.diameter == (10.0, 20.0)


def test_wide_preset_is_wider_than_the_training_presets():
    wide = PRESETS["wide"]
    for name, config in PRESETS.items():
        # the realism families have their own held-out presets (tests/data/test_synthetic_realism.py)
        if name in HELD_OUT or config.label_boundary != "shape":
            continue
        for f in dataclasses.fields(SyntheticConfig):
            value, outer = getattr(config, f.name), getattr(wide, f.name)
            if not (isinstance(value, tuple) and len(value) == 2) or f.name == "shape":
                continue
            if f.name == "density" and config.ndim == 3:  # per 1e6 voxels, another unit
                continue
            assert outer[0] <= value[0] and outer[1] >= value[1], (name, f.name)


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"diameter": (-5.0, 10.0)}, "diameter"),
        ({"diameter": (30.0, 10.0)}, "diameter"),
        ({"diameter": "big"}, "diameter"),
        ({"shape": ()}, "shape"),
        ({"shape": (0, 64)}, "shape"),
        ({"shape": (-3, 64)}, "shape"),
        ({"shape": (2, 2, 2, 2)}, "shape"),
        ({"dtype": "int7"}, "dtype"),
        ({"dtype": np.complex64}, "dtype"),
        ({"count": (5, 2)}, "count"),
        ({"count": None, "density": None}, "density"),
        ({"density": (-1.0, 2.0)}, "density"),
        ({"blur": -1.0}, "blur"),
        ({"blur": (2.0, 1.0)}, "blur"),
        ({"intensity": (0.0, 0.0)}, "intensity"),
        ({"photons": 0.0}, "photons"),
        ({"cluster_probability": (0.0, 1.5)}, "cluster_probability"),
        ({"channels": 3}, "channels"),
        ({"second_channel": "nucleus"}, "second_channel"),
        ({"z_spacing": 0.0}, "z_spacing"),
        ({"min_area": 0}, "min_area"),
    ],
)
def test_bad_config_raises_value_error_naming_the_argument(changes, name):
    with pytest.raises(ValueError, match=name):
        SyntheticConfig(**changes)


def test_bad_calls_raise_value_error():
    with pytest.raises(ValueError, match="preset"):
        preset("nuclei_huge")
    with pytest.raises(ValueError, match="seed"):
        small("nuclei").sample(-1)
    with pytest.raises(ValueError, match="seed"):
        small("nuclei").sample(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shape"):
        nuclei_2d((8, 64, 64))
    with pytest.raises(ValueError, match="shape"):
        nuclei_3d((64, 64))
    with pytest.raises(ValueError, match="n_objects"):
        nuclei_2d((64, 64), n_objects=-1)
    with pytest.raises(ValueError, match="dtype"):
        nuclei_2d((64, 64), dtype="float16")
    with pytest.raises(ValueError, match="diameter"):
        nuclei_2d((64, 64), diameter=(-1, 4))
    with pytest.raises(ValueError, match="config"):
        generate({"shape": (64, 64)}, 0)  # type: ignore[arg-type]
