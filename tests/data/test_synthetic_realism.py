"""The generator's realism (issue 19): camera offset, saturated nuclei, out-of-focus halos, debris, seams,
the half-maximum label convention, one-channel cell stains, label-free images and their presets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sam.data.synthetic import HELD_OUT, PRESETS, TRAINING_OF, SyntheticConfig, preset

NEW_PRESETS = [
    "realistic",
    "realistic_cells",
    "realistic_labelfree",
    "touching",
    "small",
    "cells",
    "labelfree",
]

#: a clean, quiet base: a few isolated round nuclei, little noise, no texture
QUIET = SyntheticConfig(
    shape=(128, 128),
    count=6,
    diameter=(16.0, 22.0),
    aspect=1.0,
    irregularity=0.0,
    cluster_probability=0.0,
    overlap=-0.3,
    texture=0.0,
    nucleoli=0,
    background=0.02,
    background_variation=0.0,
    illumination_variation=0.0,
    haze=0.0,
    photons=1e6,
    read_noise=0.0,
    dtype="float32",
)


def exact(labels: np.ndarray, min_area: int) -> int:
    """ids 1..N without gaps, every object one face-connected region of at least min_area pixels."""
    n = int(labels.max())
    ids = np.unique(labels)
    assert np.array_equal(ids[ids > 0], np.arange(1, n + 1))
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[box] == k
        assert ndimage.label(mask)[1] == 1 and mask.sum() >= min_area
    return n


def test_camera_offset_lifts_the_floor_so_read_noise_is_not_cut_at_zero():
    config = QUIET.replace(background=0.0, read_noise=0.02, photons=200.0)
    plain, lifted = config.sample(3), config.replace(camera_offset=0.1).sample(3)
    np.testing.assert_array_equal(plain.labels, lifted.labels)  # its own stream: the rest is unchanged
    background = plain.labels == 0
    assert (plain.image[background] == 0).mean() > 0.2  # without an offset, negative read noise clips at 0
    assert lifted.image.min() > 0.02 and (lifted.image[background] == 0).sum() == 0
    assert lifted.params["camera_offset"] == pytest.approx(0.1)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_saturated_nuclei_are_smaller_and_clip_at_the_dtype_max(dtype):
    config = QUIET.replace(dtype=dtype, count=10, diameter=(14.0, 18.0))
    plain, bright = config.sample(5), config.replace(saturated=0.3).sample(5)
    assert bright.params["saturated"] == 3
    top = bright.image.max()  # uint16 cameras draw a bit depth: 12, 14 or 16 bits
    full = {"uint8": [255], "uint16": [4095, 16383, 65535], "float32": [1.0]}[dtype]
    assert top in full and plain.image.max() < top
    assert bright.labels.max() == plain.labels.max()  # same objects, some condensed
    before = np.bincount(plain.labels.ravel())[1:]
    after = np.bincount(bright.labels.ravel(), minlength=len(before) + 1)[1:]
    assert np.all(after <= before) and (after < 0.75 * before).sum() == 3
    # the clipped pixels are the condensed nuclei (and their blurred glow just outside the label)
    condensed = np.flatnonzero(after < 0.75 * before) + 1
    near = ndimage.grey_dilation(bright.labels, size=(7, 7))
    assert np.isin(near[bright.image == top], condensed).all()
    for k in condensed:
        assert (bright.image[bright.labels == k] == top).mean() > 0.3


def test_defocused_nuclei_add_light_but_no_labels():
    config = QUIET.replace(background=0.0)
    plain, halos = config.sample(1), config.replace(defocused=2.0, defocused_brightness=0.3).sample(1)
    np.testing.assert_array_equal(plain.labels, halos.labels)
    outside = plain.labels == 0
    # images are scaled to their white point, so compare the background relative to the objects' level
    rel_plain = plain.image[outside].mean() / plain.image[~outside].mean()
    rel_halos = halos.image[outside].mean() / halos.image[~outside].mean()
    assert rel_halos > rel_plain + 0.03
    # the extra light is smooth (blurred blobs), not speckle: its local variation is small
    extra = halos.image / halos.image[~outside].mean() - plain.image / plain.image[~outside].mean()
    assert np.abs(np.diff(extra[outside.nonzero()])).mean() < 0.05 * extra[outside].max()


def test_debris_is_bright_or_dark_and_unlabelled():
    config = QUIET.replace(background=0.1)
    plain, dirty = config.sample(2), config.replace(debris=6.0).sample(2)
    np.testing.assert_array_equal(plain.labels, dirty.labels)
    assert dirty.params["debris"] == round(6.0 * 128 * 128 / 1e4)
    outside = ndimage.distance_transform_edt(dirty.labels == 0) > 3
    change = dirty.image[outside] / plain.image[outside]
    change /= np.median(change)  # the white point may move
    assert (change > 1.5).sum() > 3  # bright specks or fibres on the background
    assert (change < 0.85).sum() > 3  # dark ones


def _touching(seam: float) -> SyntheticConfig:
    return QUIET.replace(
        count=30,
        diameter=(18.0, 22.0),
        cluster_probability=1.0,
        overlap=(0.1, 0.2),
        overlap_brightness=0.0,
        edge_falloff=0.0,
        intensity=(0.8, 1.0),
        blur=1.0,
        seam=seam,
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_seams_between_touching_nuclei_are_darker_than_their_interiors(seed):
    def seam_contrast(seam: float) -> float:
        sample = _touching(seam).sample(seed)
        labels, image = sample.labels, sample.image
        grown = ndimage.grey_dilation(labels, size=(3, 3))
        eroded = ndimage.grey_erosion(np.where(labels > 0, labels, labels.max() + 1), size=(3, 3))
        contact = (
            (labels > 0) & ((grown != labels) | (eroded != labels)) & (ndimage.binary_erosion(labels > 0))
        )
        interior = ndimage.binary_erosion(labels > 0, iterations=4)
        assert contact.sum() > 50
        return float(image[contact].mean() / image[interior].mean())

    assert seam_contrast(0.5) < 0.85 < seam_contrast(0.0)


def _visible_over_label(config: SyntheticConfig, seeds: range) -> float:
    """Median over objects of (pixels above half the object's peak in the clean image) / label area."""
    ratios = []
    for seed in seeds:
        sample = config.sample(seed)
        image = sample.image.astype(float) - float(np.median(sample.image[sample.labels == 0]))
        for k, box in enumerate(ndimage.find_objects(sample.labels), start=1):
            box = tuple(slice(b.start - 5, b.stop + 5) for b in box)
            if any(b.start < 0 or b.stop > n for b, n in zip(box, image.shape, strict=True)):
                continue  # cut by the border
            view, own = image[box], sample.labels[box]
            if not np.isin(own, [0, k]).all():
                continue  # a neighbour this close: not isolated
            near = ndimage.binary_dilation(own == k, iterations=4)
            peak = view[own == k].max()
            ratios.append(np.count_nonzero(near & (view >= 0.5 * peak)) / np.count_nonzero(own == k))
    return float(np.median(ratios))


@pytest.mark.parametrize("falloff", [0.0, 0.5])
def test_half_max_labels_match_the_visible_objects(falloff):
    config = QUIET.replace(edge_falloff=falloff, blur=1.8, diameter=(10.0, 20.0), count=8, background=0.0)
    half = _visible_over_label(config.replace(label_boundary="half_max"), range(3))
    assert 0.97 <= half <= 1.03
    if falloff:  # shape labels include the dim rim: larger than what one sees
        assert _visible_over_label(config, range(3)) < 0.95


def test_half_max_labels_stay_exact_in_3d_and_dense_scenes():
    for config in (
        preset("touching", shape=(128, 128)),
        preset("nuclei_3d", shape=(8, 48, 48), count=6, label_boundary="half_max"),
    ):
        sample = config.sample(4)
        assert exact(sample.labels, config.min_area) == sample.params["objects"] > 3


@pytest.mark.parametrize("kind", ["cytoplasm", "membrane"])
def test_cell_stain_labels_the_cells(kind):
    config = QUIET.replace(stain="cells", second_channel=kind, cell_extent=(0.8, 1.0), count=5)
    sample = config.sample(0)
    assert sample.image.shape == (128, 128) and sample.cells is None
    n = exact(sample.labels, config.min_area)
    nuclei = preset("nuclei", **{**config.to_dict(), "stain": "nuclei", "shape": (128, 128)}).sample(0).labels
    assert n == nuclei.max() and (sample.labels > 0).sum() > 2 * (nuclei > 0).sum()  # cells are larger
    image = sample.image
    rim = (sample.labels > 0) & ~ndimage.binary_erosion(sample.labels > 0, iterations=2)
    inner = ndimage.binary_erosion(sample.labels > 0, iterations=5) & (nuclei == 0)
    if kind == "membrane":
        assert image[rim].mean() > 1.3 * image[inner].mean()
    else:
        assert image[inner].mean() > 1.3 * image[sample.labels == 0].mean()


@pytest.mark.parametrize("seed", range(4))
def test_labelfree_cells_have_a_halo_of_the_opposite_sign(seed):
    config = preset(
        "labelfree",
        shape=(160, 160),
        debris=0.0,
        defocused=0.0,
        photons=1e5,
        density=(1.0, 2.0),
        illumination_variation=0.0,
        background_variation=0.0,
        vignetting=0.0,
    )
    sample = config.sample(seed)
    labels, image = sample.labels, sample.image.astype(float)
    polarity = sample.params["polarity"]
    distance = ndimage.distance_transform_edt(labels == 0)
    background = np.median(image[distance > 12])
    seen = halos = contrast = 0
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(b.start - 5, 0), b.stop + 5) for b in box)
        own = labels[box] == k
        ring = ndimage.binary_dilation(own, iterations=4) & (distance[box] >= 1)
        if ring.sum() < 10:
            continue
        seen += 1
        # dark cells (polarity +1) have a bright halo, bright cells a dark one
        halos += polarity * (image[box][ring].mean() - background) > 0
        contrast += polarity * (image[box][own].mean() - background) < 0
    assert seen >= 1 and halos >= 0.75 * seen and contrast >= 0.75 * seen


@pytest.mark.parametrize("name", NEW_PRESETS)
def test_new_presets_are_deterministic_with_consistent_labels(name):
    config = preset(name, shape=(128, 128))
    assert config.label_boundary == "half_max"
    a, b = config.sample(11), config.sample(11)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.image.shape == (128, 128) and a.image.dtype == np.uint16 and a.cells is None
    counts = [exact(config.sample(s).labels, config.min_area) for s in (11, 12, 13)]
    assert max(counts) > 0
    assert a.n_objects == a.params["objects"]


def test_held_out_presets_are_wider_than_their_training_families():
    assert set(HELD_OUT) == set(TRAINING_OF)
    realism = ["camera_offset", "vignetting", "saturated", "defocused", "debris", "blur", "photons"]
    for held, train in TRAINING_OF.items():
        if held == "wide":
            continue
        outer, inner = PRESETS[held], PRESETS[train]
        for name in realism:
            (lo, hi), (a, b) = getattr(outer, name), getattr(inner, name)
            assert lo <= a and hi >= b, (held, name)
        assert (outer.modality, outer.stain) == (inner.modality, inner.stain)
    assert PRESETS["small"].diameter == (8.0, 15.0)
    assert PRESETS["touching"].overlap[0] >= 0 and PRESETS["touching"].cluster_probability[0] >= 0.5


@pytest.mark.parametrize(
    ("changes", "name"),
    [
        ({"label_boundary": "outline"}, "label_boundary"),
        ({"stain": "dapi"}, "stain"),
        ({"modality": "phase"}, "modality"),
        ({"channels": 2, "stain": "cells"}, "channels"),
        ({"channels": 2, "modality": "labelfree"}, "channels"),
        ({"seam": 0.95}, "seam"),
        ({"saturated": (0.0, 1.5)}, "saturated"),
        ({"camera_offset": -0.1}, "camera_offset"),
        ({"debris": (2.0, 1.0)}, "debris"),
        ({"vignetting": 1.0}, "vignetting"),
        ({"defocused_brightness": "dim"}, "defocused_brightness"),
        ({"labelfree_contrast": -1.0}, "labelfree_contrast"),
    ],
)
def test_bad_realism_fields_raise_value_error_naming_them(changes, name):
    with pytest.raises(ValueError, match=name):
        SyntheticConfig(**changes)
