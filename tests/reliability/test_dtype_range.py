"""Percentile normalisation ignores gain and offset for every dtype the API accepts (issue 16, item 5).

An image with one bright object is segmented with a box; the same image with a large offset
(float64 + 1e12, int64 / uint64 + 2**40, int64 near ±2**62, uint64 near 2**63), an extreme gain
(× 1e-300, × 1e300) or in a wide integer type must give the same labels: the offset is removed
before anything is rounded to float32. A constant image has no contrast: one
:class:`~napari_sam.errors.NoContrastWarning` and empty labels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import napari_sam as ns
from napari_sam.engine.intensity import rescale as _rescale
from napari_sam.engine.preprocess import (
    exact_percentile_limits,
    normalize_intensity,
    percentile_limits,
)
from napari_sam.errors import NoContrastWarning
from tests.conftest import GOLDEN, Golden


@pytest.fixture(scope="module")
def model():
    return Golden(GOLDEN / "small_a").model()


@pytest.fixture(scope="module")
def disk() -> tuple[np.ndarray, list[list[int]]]:
    """``(64, 80)`` uint16: noisy background (~1000) and one bright disk (~9000); its box."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[:64, :80]
    inside = (rows - 30) ** 2 + (cols - 38) ** 2 < 14**2
    image = 1000 + rng.integers(0, 400, size=(64, 80)) + inside * 8000
    return image.astype(np.uint16), [[14, 22, 47, 55]]


def _f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "float64+1e12": lambda x: _f64(x) + 1e12,
    "float64*1e-300": lambda x: _f64(x) * 1e-300,
    "float64*1e300": lambda x: _f64(x) * 1e300,
    "float64*1e300-1e304": lambda x: _f64(x) * 1e300 - 1e304,
    "int64+2**40": lambda x: x.astype(np.int64) + 2**40,
    "uint64+2**40": lambda x: x.astype(np.uint64) + np.uint64(2**40),
    "int64+2**62": lambda x: x.astype(np.int64) + 2**62,
    "int64-2**62": lambda x: x.astype(np.int64) - 2**62,
    "uint64+2**63": lambda x: x.astype(np.uint64) + np.uint64(2**63),
    "big-endian-int64+2**62": lambda x: (x.astype(np.int64) + 2**62).astype(">i8"),
    "int32+2**30": lambda x: x.astype(np.int32) + 2**30,
    "uint32+2**31": lambda x: x.astype(np.uint32) + np.uint32(2**31),
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_offset_and_gain_leave_the_labels_unchanged(name, disk, model):
    image, box = disk
    plain = ns.segment(image, boxes=box, model=model)
    assert plain.any(), "the plain image must give the object"
    moved = ns.segment(TRANSFORMS[name](image), boxes=box, model=model)
    np.testing.assert_array_equal(moved, plain)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_offset_and_gain_leave_the_normalised_image_unchanged(name, disk):
    image, _ = disk
    base, *_ = normalize_intensity(image[..., None])
    out, mode, _, limits = normalize_intensity(TRANSFORMS[name](image)[..., None])
    assert mode == "percentile"
    np.testing.assert_allclose(out, base, atol=1e-3)  # on the 0–255 scale
    assert limits is not None and np.isfinite(limits).all()
    assert limits[0][0] < limits[0][1]


def test_the_same_holds_with_contrast_limits_and_volume_percentiles(disk, model):
    image, box = disk
    lo, hi = 1100.0, 9000.0
    base, *_ = normalize_intensity(image[..., None], contrast_limits=(lo, hi))
    big = image.astype(np.float64) + 1e12
    out, *_ = normalize_intensity(big[..., None], contrast_limits=(lo + 1e12, hi + 1e12))
    np.testing.assert_allclose(out, base, atol=1e-3)
    tiny = image.astype(np.float64) * 1e-300
    out, *_ = normalize_intensity(tiny[..., None], contrast_limits=(lo * 1e-300, hi * 1e-300))
    np.testing.assert_allclose(out, base, atol=1e-3)
    # stacks: percentiles per slice (segment) and once for the whole volume (percentile_scope)
    stack = np.stack([image, image[::-1]])
    boxes = [[0, *box[0][:2], 1, *box[0][2:]]]
    kwargs = {"boxes": boxes, "model": model, "propagate": False}
    plain = ns.segment(stack, **kwargs)
    assert plain[0].any()
    np.testing.assert_array_equal(ns.segment(stack.astype(np.float64) * 1e300, **kwargs), plain)
    ref = ns.compute_embeddings(stack, model, percentile_scope="volume")
    for moved in (stack.astype(np.float64) * 1e300, stack + np.uint64(2**40)):
        emb = ns.compute_embeddings(moved, model, percentile_scope="volume")
        for z in range(2):
            np.testing.assert_allclose(emb[z].features, ref[z].features, atol=1e-4)
    wide = ns.compute_embeddings(stack + np.uint64(2**62), model, percentile_scope="volume", slices=[0])
    limits = np.asarray(wide[0].preprocessing.contrast_limits) - 2.0**62  # float64: steps of 1024
    np.testing.assert_allclose(limits, ref[0].preprocessing.contrast_limits, atol=1024)


@pytest.mark.parametrize(
    "image",
    [
        np.full((40, 50), 7, np.uint16),
        np.full((40, 50), 2**62 + 3, np.int64),
        np.full((40, 50), -1e300),
        np.where(np.eye(40, 50, dtype=bool), np.nan, 0.5).astype(np.float32),
    ],
    ids=["uint16", "int64-2**62", "float64-1e300", "float32-with-nan"],
)
def test_a_constant_image_warns_once_and_gives_empty_labels(image, model):
    with pytest.warns(NoContrastWarning, match="no contrast") as record:
        labels = ns.segment(image, boxes=[[5, 5, 30, 40]], model=model)
    assert labels.shape == image.shape and not labels.any()
    assert len([w for w in record if issubclass(w.category, NoContrastWarning)]) == 1
    with pytest.warns(NoContrastWarning):
        assert not ns.segment(image, points=[[20, 20]], model=model).any()


def test_an_image_with_contrast_does_not_warn(disk, model):
    image, box = disk
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoContrastWarning)
        ns.segment(image, boxes=box, model=model)


def test_a_dark_object_under_one_percent_of_the_pixels_keeps_its_contrast():
    """Percentiles 1 and 99.8 both fall on the background: the full range is used instead."""
    image = np.full((60, 60), 1000, np.uint16)
    image[10:15, 10:15] = 200  # 25 pixels: 0.7 % of the image
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoContrastWarning)
        out, _, _, limits = normalize_intensity(image[..., None])
    assert limits == ((200.0, 1000.0),)
    assert out[12, 12, 0] == 0 and out[40, 40, 0] == 255


@pytest.mark.parametrize(
    "how", [{}, {"contrast_limits": (0.0, 4000.0)}, {"normalize": None}], ids=["percentile", "limits", "none"]
)
def test_nan_and_minus_inf_are_black_plus_inf_is_white(how):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 250, (32, 32)).astype(np.float64)
    image[8:20, 8:20] += 3 if how.get("normalize", "x") is None else 3000
    ref, *_ = normalize_intensity(image[..., None], **how)
    odd = image.copy()
    odd[0, 0], odd[0, 1], odd[1, 1] = np.nan, -np.inf, np.inf
    out, *_ = normalize_intensity(odd[..., None], **how)
    assert (out[0, 0, 0], out[0, 1, 0], out[1, 1, 0]) == (0.0, 0.0, 255.0)
    rest = np.ones(image.shape, bool)
    rest[0, 0] = rest[0, 1] = rest[1, 1] = False
    np.testing.assert_allclose(out[..., 0][rest], ref[..., 0][rest], atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("limits", [(0.0, 1e300), (-1e300, 1e300), (0.0, 1e-40), (0.0, 3e38)])
def test_extreme_contrast_limits_warn_about_nothing(dtype, limits):
    image = np.arange(64 * 64).reshape(64, 64, 1).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, *_ = normalize_intensity(image, contrast_limits=limits)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 255


# -------------------------------------------------------------- tiles and volumes of 64-bit integers

#: Offsets that float64 cannot follow: limits near them round by 1024 to 4096.
WIDE = {
    "int64+2**62": lambda x: x.astype(np.int64) + 2**62,
    "uint64+2**64-1000": lambda x: x.astype(np.uint64) + np.uint64(2**64 - 1000),
}


@pytest.fixture(scope="module")
def tall() -> np.ndarray:
    """``(2100, 64)`` int64 in 0..800: a noisy background and five bright disks (tiled at 512 rows)."""
    rng = np.random.default_rng(3)
    rows, cols = np.mgrid[:2100, :64]
    image = rng.integers(0, 100, (2100, 64))
    for r in (200, 505, 900, 1530, 1800):
        image = image + ((rows - r) ** 2 + (cols - 32) ** 2 < 20**2) * 700
    return image.astype(np.int64)


@pytest.mark.parametrize("name", list(WIDE))
def test_tiles_of_wide_integers_are_normalised_like_the_plain_image(name, tall, model):
    """Each tile is normalised with the slice's exact limits, as the untiled path would."""
    moved = WIDE[name](tall)
    ref = ns.compute_embeddings(tall, model, tile=(512, 64))
    emb = ns.compute_embeddings(moved, model, tile=(512, 64))
    assert len(emb.tiles) == len(ref.tiles) > 3
    for tile, plain in zip(emb.tiles, ref.tiles, strict=True):
        np.testing.assert_array_equal(np.asarray(tile.features), np.asarray(plain.features))
    low, high = emb.tiles[0].preprocessing.contrast_limits[0]
    top = np.iinfo(moved.dtype).max
    assert moved.min() - 4096 <= low < high <= top  # rounded, but never past the dtype's range


@pytest.mark.parametrize("name", list(WIDE))
def test_tiled_wide_integers_give_the_plain_labels(name, tall, model, tmp_path):
    """Boxes inside one tile and one taller than a tile (embedded from its own window)."""
    boxes = [[480, 10, 530, 60], [180, 12, 220, 52], [300, 4, 950, 60]]
    plain = ns.segment(tall, boxes=boxes, model=model, tile=(512, 64))
    assert all((plain == k).any() for k in (1, 2))
    moved = WIDE[name](tall)
    np.testing.assert_array_equal(ns.segment(moved, boxes=boxes, model=model, tile=(512, 64)), plain)
    # through caches (float16 features): the recorded limits are exact too
    cached = {}
    for key, image in (("plain", tall), ("moved", moved)):
        ns.compute_embeddings(image, model, tile=(512, 64), cache=tmp_path / f"{key}.zarr")
        cached[key] = ns.segment(
            image, boxes=boxes, model=model, tile=(512, 64), cache=tmp_path / f"{key}.zarr"
        )
    np.testing.assert_array_equal(cached["moved"], cached["plain"])


@pytest.mark.parametrize("name", list(WIDE))
def test_volume_percentiles_of_wide_integers_are_exact(name, tall, model, tmp_path):
    stack = np.stack([tall[:96, :64], tall[480:576, :64], tall[1490:1586, :64]])
    moved = WIDE[name](stack)
    for cached in (False, True):  # in memory, and through caches (float16 features, recorded limits)
        caches = [tmp_path / f"{k}.zarr" if cached else None for k in ("plain", "moved")]
        ref = ns.compute_embeddings(stack, model, percentile_scope="volume", cache=caches[0])
        with warnings.catch_warnings():
            warnings.simplefilter("error", NoContrastWarning)
            emb = ns.compute_embeddings(moved, model, percentile_scope="volume", cache=caches[1])
        for z in range(3):
            np.testing.assert_array_equal(np.asarray(emb[z].features), np.asarray(ref[z].features))


# ------------------------------------------------------------------------------------------- properties

FAST = settings(max_examples=60, deadline=None)
base_images = hnp.arrays(np.uint16, st.tuples(st.integers(4, 12), st.integers(4, 12)))


@FAST
@given(base_images, st.integers(-1000, 990), st.integers(-(2**36), 2**36))
def test_normalised_float64_ignores_power_of_two_gains_and_offsets(image, exponent, offset):
    """``a * (x + b)`` with ``a = 2**k`` is exact in float64, so the result must match ``x``'s."""
    if image.min() == image.max():
        return
    base, *_ = normalize_intensity(image[..., None])
    moved = np.ldexp(image.astype(np.float64) + offset, exponent)
    out, _, _, limits = normalize_intensity(moved[..., None])
    np.testing.assert_allclose(out, base, atol=0.01)  # the uint16 reference runs in float32
    assert np.isfinite(limits).all()


@FAST
@given(base_images, st.integers(-(2**63), 2**63 - 2**16), st.sampled_from([np.int64, np.uint64]))
def test_normalised_wide_integers_ignore_any_offset(image, offset, dtype):
    """Any offset that keeps the values inside int64 / uint64 leaves the normalised image unchanged."""
    if image.min() == image.max():
        return
    if dtype is np.uint64:
        offset = abs(offset)
    base, *_ = normalize_intensity(image[..., None])
    moved = (image.astype(object) + offset).astype(dtype)
    out, *_ = normalize_intensity(moved[..., None])
    np.testing.assert_allclose(out, base, atol=0.01)  # the uint16 reference runs in float32
    lo, hi = percentile_limits(moved[..., None])[0]
    assert lo < hi


@FAST
@given(
    hnp.arrays(np.uint16, st.tuples(st.integers(4, 24), st.integers(4, 12))),
    st.integers(0, 2**64 - 2**16),
    st.sampled_from([np.int64, np.uint64]),
    st.integers(1, 23),
)
def test_a_part_of_a_wide_integer_image_is_normalised_like_the_whole(image, offset, dtype, cut):
    """A tile normalised with the whole image's exact limits gets the whole image's values."""
    if image.min() == image.max():
        return
    if dtype is np.int64:
        offset -= 2**63
    moved = (image.astype(object) + offset).astype(dtype)[..., None]
    whole, *_ = normalize_intensity(moved)
    limits, residuals = exact_percentile_limits(moved)
    part = moved[cut % moved.shape[0] :]
    np.testing.assert_allclose(_rescale(part, limits, residuals), whole[cut % moved.shape[0] :], atol=1e-3)
