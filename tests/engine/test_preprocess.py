"""Microscopy preprocessing: dtypes, channels, normalisation, resize and the inverse for masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.engine.preprocess import (
    Preprocessor,
    as_channels_last_2d,
    mask_to_prompt_logits,
    normalize_intensity,
    percentile_limits,
    prepare_image,
    preprocess_shape,
    select_channels,
    upscale_logits,
)
from napari_sam.errors import NoContrastWarning
from napari_sam.model.sam import PIXEL_MEAN, PIXEL_STD

MEAN = torch.tensor(PIXEL_MEAN).view(3, 1, 1)
STD = torch.tensor(PIXEL_STD).view(3, 1, 1)


def prep(image, **kwargs):
    return prepare_image(image, image_size=64, pixel_mean=MEAN, pixel_std=STD, **kwargs)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [((1024, 768), (1024, 768)), ((96, 128), (48, 64)), ((3, 1000), (1, 333))],
)
def test_preprocess_shape_rounds_like_official(shape, expected):
    long_side = max(expected)
    assert preprocess_shape(*shape, long_side) == expected


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_any_dtype_maps_to_the_same_input_after_percentiles(dtype):
    rng = np.random.default_rng(0)
    base = rng.random((40, 50))
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    scale = min(info.max, 10_000) if info else 1.0
    image = (base * scale).astype(dtype)
    x, input_size, original_size, params = prep(image)
    assert x.shape == (1, 3, 64, 64)
    assert x.dtype == torch.float32
    assert original_size == (40, 50)
    assert input_size == (51, 64)
    assert params.normalize == "percentile"
    # gray images become three equal channels (before mean/std)
    raw = x[0] * STD + MEAN
    torch.testing.assert_close(raw[0, :51, :64], raw[1, :51, :64])
    assert float(raw[:, :51, :64].min()) >= 0 and float(raw[:, :51, :64].max()) <= 255.0 + 1e-3
    # the padding is zero after normalisation, as in the official code
    assert torch.count_nonzero(x[..., 51:, :]) == 0


def test_percentile_normalisation_spreads_a_dim_uint16_image():
    rng = np.random.default_rng(1)
    image = rng.integers(100, 400, size=(64, 64)).astype(np.uint16)
    out, mode, perc, limits = normalize_intensity(image[..., None])
    assert mode == "percentile"
    assert perc == (1.0, 99.8)
    lo, hi = np.percentile(image, [1.0, 99.8])
    assert limits == ((pytest.approx(lo), pytest.approx(hi)),)
    assert out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 255.0
    assert np.mean(out > 128) == pytest.approx(np.mean(image > (lo + hi) / 2), abs=0.02)


def test_contrast_limits_override_percentiles_and_clip():
    image = np.array([[0, 50], [100, 200]], dtype=np.uint16)[..., None]
    out, mode, _, limits = normalize_intensity(image, contrast_limits=(50, 150))
    assert mode == "contrast_limits"
    assert limits == ((50.0, 150.0),)
    np.testing.assert_allclose(out[..., 0], [[0, 0], [127.5, 255]])


@pytest.mark.parametrize("limits", [(5, 5), (10, 1), (0, float("nan"))])
def test_bad_contrast_limits_are_rejected(limits):
    with pytest.raises(ValueError, match="contrast_limits"):
        normalize_intensity(np.zeros((4, 4, 1), np.float32), contrast_limits=limits)


def test_uint8_rgb_takes_the_official_path_by_default():
    rgb = np.random.default_rng(2).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out, mode, _, _ = normalize_intensity(rgb)
    assert mode == "none"
    assert out is rgb
    *_, params = prep(rgb, normalize=None)
    assert params.normalize == "none"


def test_normalize_none_rejects_values_beyond_8_bit():
    image = np.full((8, 8, 1), 1000, dtype=np.uint16)
    with pytest.raises(ValueError, match="normalize=None"):
        normalize_intensity(image, normalize=None)


def test_nan_pixels_are_ignored_and_become_background():
    image = np.random.default_rng(3).random((32, 32)).astype(np.float32)
    image[:4] = np.nan
    out, _, _, limits = normalize_intensity(image[..., None])
    assert np.isfinite(out).all()
    assert (out[:4] == 0).all()
    assert np.isfinite(limits).all()


def test_all_nan_image_is_an_error():
    with pytest.raises(ValueError, match="no finite values"):
        prep(np.full((16, 16), np.nan, dtype=np.float32))


def test_constant_image_does_not_divide_by_zero():
    with pytest.warns(NoContrastWarning, match="no contrast: every pixel is 7"):
        x, *_ = prep(np.full((16, 16), 7, dtype=np.uint16))
    assert torch.isfinite(x).all()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4,), np.uint8), "must be 2D"),
        (np.zeros((2, 8, 8, 8), np.uint8), "must be 2D"),
        (np.zeros((5, 64, 64), np.uint16), "3D stack"),
        (np.zeros((0, 10), np.uint8), "empty"),
        (np.zeros((8, 8), bool), "unsupported dtype"),
        (np.zeros((8, 8), np.complex64), "unsupported dtype"),
        (np.array([["a", "b"], ["c", "d"]]), "unsupported dtype"),
    ],
)
def test_bad_images_name_the_problem(image, message):
    with pytest.raises(ValueError, match=message):
        prep(image)


def test_channel_axis_moves_channels_last():
    image = np.random.default_rng(4).random((2, 30, 40)).astype(np.float32)
    arr = as_channels_last_2d(image, channel_axis=0)
    assert arr.shape == (30, 40, 2)
    _, _, original_size, params = prep(image, channel_axis=0, channel=1)
    assert original_size == (30, 40)
    assert params.channel == (1,)


def test_multichannel_needs_a_channel_choice():
    image = np.zeros((16, 16, 2), np.uint16)
    with pytest.raises(ValueError, match="channel="):
        select_channels(image, None)


def test_channel_list_maps_to_rgb_and_fills_missing_with_zero():
    image = np.stack([np.full((4, 4), v, np.uint16) for v in (1, 2, 3, 4)], axis=-1)
    rgb, picks = select_channels(image, (3, 0))
    assert picks == (3, 0)
    assert rgb.shape == (4, 4, 3)
    assert (rgb[..., 0] == 4).all() and (rgb[..., 1] == 1).all() and (rgb[..., 2] == 0).all()
    gray, picks = select_channels(image, -1)
    assert picks == (3,) and gray.shape == (4, 4, 1) and (gray == 4).all()


@pytest.mark.parametrize("channel", [5, (0, 1, 2, 3), (0, 9)])
def test_bad_channel_choice(channel):
    with pytest.raises(ValueError, match="channel"):
        select_channels(np.zeros((4, 4, 4), np.uint16), channel)


def test_rgba_uint8_drops_alpha():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgb, picks = select_channels(rgba, None)
    assert rgb.shape == (4, 4, 3) and picks is None


def test_percentiles_are_validated():
    with pytest.raises(ValueError, match="percentiles"):
        percentile_limits(np.zeros((4, 4, 1)), (99, 1))


def test_large_images_use_a_subsample_close_to_the_exact_percentiles():
    image = np.random.default_rng(5).gamma(2.0, 100.0, size=(3000, 3000)).astype(np.float32)
    ((lo, hi),) = percentile_limits(image[..., None])
    exact_lo, exact_hi = np.percentile(image, [1.0, 99.8])
    assert lo == pytest.approx(exact_lo, rel=0.05)
    assert hi == pytest.approx(exact_hi, rel=0.05)


def test_upscale_logits_crops_padding_and_restores_the_original_size():
    # a low-res mask that is 1 inside the resized image area and -1 on the padding
    image_size, input_size, original = 64, (32, 64), (50, 100)
    low = -torch.ones(1, 1, 16, 16)
    low[..., :8, :] = 1.0
    full = upscale_logits(low, input_size=input_size, original_size=original, image_size=image_size)
    assert full.shape == (1, 1, 50, 100)
    assert (full > 0).float().mean() > 0.95


def test_upscale_skips_identity_resize():
    low = torch.randn(1, 3, 16, 16)
    full = upscale_logits(low, input_size=(64, 64), original_size=(64, 64), image_size=64)
    expected = torch.nn.functional.interpolate(low, (64, 64), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, expected)


def test_mask_prompt_from_a_binary_mask():
    mask = np.zeros((100, 50), bool)
    mask[10:60, 5:30] = True
    logits = mask_to_prompt_logits(mask, image_size=64, mask_input_size=(16, 16))
    assert logits.shape == (1, 1, 16, 16)
    positive = logits[0, 0] > 0
    # the object lies in the top-left part of the (resized, padded) frame
    rows, cols = np.nonzero(positive.numpy())
    assert rows.min() >= 1 and rows.max() <= 10
    assert cols.max() <= 5
    assert float(logits.max()) == pytest.approx(10.0) and float(logits.min()) == pytest.approx(-10.0)


@pytest.mark.parametrize(
    ("shape", "max_upscale", "expected"),
    [
        ((256, 256), 2.0, (512, 512)),
        ((256, 128), 2.0, (512, 256)),
        ((700, 350), 2.0, (1024, 512)),
        ((2048, 1024), 2.0, (1024, 512)),
        ((256, 256), None, (1024, 1024)),
    ],
)
def test_max_upscale_limits_only_enlargement(shape, max_upscale, expected):
    assert preprocess_shape(*shape, 1024, max_upscale) == expected


def test_nano_embeds_small_images_at_most_twice_enlarged_and_prompts_follow():
    from napari_sam.data.synthetic import preset
    from napari_sam.engine.decode.predict import predict
    from napari_sam.engine.embed.embeddings import compute_embeddings
    from napari_sam.engine.loading import open_model

    sample = preset("nuclei", shape=(200, 160)).sample(4)
    nano = open_model("nano")
    emb = compute_embeddings(sample.image, nano, object_size="fixed")  # the fixed rule
    assert tuple(emb.input_size) == (400, 320)
    truth = sample.labels == 1
    rows, cols = np.nonzero(truth)
    box = [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
    from_box = predict(emb, box=box, multimask=False)
    assert from_box.masks.shape == (1, 1, 200, 160)
    iou = (from_box.masks[0, 0] & truth).sum() / (from_box.masks[0, 0] | truth).sum()
    assert iou > 0.7
    # a binary mask prompt is resized exactly like the image: the object's own mask refines to itself
    refined = predict(emb, box=box, mask_input=from_box.masks[0, 0], multimask=False).masks[0, 0]
    assert (refined & from_box.masks[0, 0]).sum() / (refined | from_box.masks[0, 0]).sum() > 0.9
    official_like = open_model("nano")
    official_like.max_upscale = None
    official_like.default_object_size = None  # the official models' fixed rule
    assert tuple(compute_embeddings(sample.image, official_like).input_size) == (1024, 819)


# ------------------------------------------------------------------------------------------ Preprocessor


class _Geometry:
    """What Preprocessor.canvas reads of a model: its canvas and pixel statistics."""

    image_size, max_upscale, device = 64, None, torch.device("cpu")
    pixel_mean, pixel_std = MEAN, STD


def test_the_preprocessor_prepares_as_prepare_image_does():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 4000, size=(40, 56, 2)).astype(np.uint16)
    pre = Preprocessor(percentiles=(2.0, 98.0), channel=(1, 0))
    inp, input_size, original_size, params = pre.prepare(image, _Geometry())
    ref = prep(image, percentiles=(2.0, 98.0), channel=(1, 0))
    torch.testing.assert_close(inp, ref[0], rtol=0, atol=0)
    assert (input_size, original_size, params) == ref[1:]
    assert params.channel == (1, 0) and params.normalize == "percentile"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"normalize": "zscore"}, "normalize must be"),
        ({"percentiles": (99, 1)}, "percentiles must satisfy"),
        ({"contrast_limits": (5, 1)}, "contrast_limits must be finite"),
    ],
)
def test_the_preprocessor_checks_its_options_when_made(options, message):
    with pytest.raises(ValueError, match=message):
        Preprocessor(**options)


def test_a_tile_normalised_as_recorded_matches_the_whole_image():
    rng = np.random.default_rng(4)
    image = rng.normal(1e12, 50.0, size=(64, 64))
    pre = Preprocessor()
    whole, params = pre.normalized(image)
    tile = pre.normalized_as(image[8:40, 16:48], params)
    np.testing.assert_allclose(tile, whole[8:40, 16:48], atol=1e-3)


def test_volume_limits_are_used_for_every_slice_and_recorded():
    pre = Preprocessor().with_volume_limits(((0.0, 510.0),), None)
    scaled, params = pre.normalized(np.full((8, 8), 255, dtype=np.uint16))
    assert np.allclose(scaled, 127.5) and params.contrast_limits == ((0.0, 510.0),)
    assert pre.mode_for(np.dtype(np.uint8), 3) == "none"
    assert Preprocessor().mode_for(np.dtype(np.uint16), 1) == "percentile"
