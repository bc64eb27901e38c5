"""Training the instance decoder on a frozen encoder: geometry, loss, resume, data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from napari_sam.engine.training.instance_targets import instance_target_maps
from napari_sam.engine.training.instance_training import (
    InstanceSamples,
    InstanceTrainConfig,
    dice_distance_loss,
    embed_samples,
    resize_matrix,
    train_instance_decoder,
    validation_loss,
)
from napari_sam.model import InstanceDecoder

# a tiny decoder: 8-channel embeddings of 4×4 tokens on a 64-px canvas (patch 16), maps at 32×32
EMBED, TOKENS, CANVAS = 8, 4, 64


@pytest.fixture(autouse=True)
def one_thread():
    """These tiny convolutions run several times faster on one thread when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_decoder(seed: int = 0) -> InstanceDecoder:
    torch.manual_seed(seed)
    return InstanceDecoder(embed_dim=EMBED, image_size=CANVAS, initial_features=2, full_resolution=False)


def disc_labels(shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    labels = np.zeros(shape, np.int32)
    for value in range(1, 4):
        r, c = rng.integers(4, shape[0] - 4), rng.integers(4, shape[1] - 4)
        labels[np.hypot(rows - r, cols - c) < rng.uniform(2, 5)] = value
    return labels


def tiny_samples(seed: int = 0) -> InstanceSamples:
    """Two images: 40×60 (input 43×64: 3 token rows hold image) and 64×48 (input 64×48)."""
    torch.manual_seed(seed)
    sizes = [((40, 60), (43, 64)), ((64, 48), (64, 48))]
    targets = [
        np.round(instance_target_maps(disc_labels(o, seed + i)) * 255).astype(np.uint8)
        for i, (o, _) in enumerate(sizes)
    ]
    return InstanceSamples(
        features=torch.randn(2, EMBED, TOKENS, TOKENS).half(),
        targets=targets,
        input_sizes=[s for _, s in sizes],
        original_sizes=[o for o, _ in sizes],
    )


def test_resize_matrix_is_the_decoders_resizing():
    x = torch.randn(3, 32)
    matrix = resize_matrix(32, CANVAS, 43, 40)
    assert matrix.shape == (40, 32)
    expected = F.interpolate(x[None], size=CANVAS, mode="linear", align_corners=False)[..., :43]
    expected = F.interpolate(expected, size=40, mode="linear", align_corners=False)[0]
    torch.testing.assert_close(x @ matrix.T, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("full_resolution", [False, True])
def test_whole_image_loss_is_the_loss_of_the_decoders_forward(full_resolution):
    torch.manual_seed(0)
    decoder = InstanceDecoder(
        embed_dim=EMBED, image_size=CANVAS, initial_features=2, full_resolution=full_resolution
    ).eval()
    samples = tiny_samples()
    losses = []
    with torch.no_grad():
        for i in range(2):
            maps = decoder(
                samples.features[i : i + 1].float(), samples.input_sizes[i], samples.original_sizes[i]
            )
            target = torch.from_numpy(samples.targets[i]).float()[None] / 255
            assert maps.shape == target.shape
            losses.append(float(dice_distance_loss(maps, target)))
    assert validation_loss(decoder, samples) == pytest.approx(np.mean(losses), abs=1e-5)


def test_the_half_resolution_decoder_trains_on_the_tokens_that_cover_the_image(tmp_path):
    samples = tiny_samples()  # image 0 is covered by 3 of 4 token rows; the 4th is canvas padding
    changed = InstanceSamples(
        samples.features.clone(), samples.targets, samples.input_sizes, samples.original_sizes
    )
    changed.features[0, :, 3] = 100.0
    decoder = tiny_decoder()
    assert validation_loss(decoder, changed) == validation_loss(decoder, samples)
    config = tiny_config(steps=3, full_fraction=1.0, full_batch_size=2)
    one, two = tiny_decoder(), tiny_decoder()
    train_instance_decoder(one, samples, config, tmp_path / "a")
    train_instance_decoder(two, changed, config, tmp_path / "b")
    for key, value in one.state_dict().items():
        torch.testing.assert_close(two.state_dict()[key], value, atol=0, rtol=0, msg=key)


def test_dice_distance_loss():
    target = torch.zeros(1, 3, 4, 4)
    target[0, 0, 1:3, 1:3] = 1
    target[0, 1:, 1:3, 1:3] = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    assert float(dice_distance_loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    # distance predictions in the background do not count
    noisy = target.clone()
    noisy[0, 1:, 0, :] = 0.7
    assert float(dice_distance_loss(noisy, target)) == pytest.approx(0.0, abs=1e-6)
    # by hand: foreground all 0.5 → 1 - 2·(0.5·4) / (0.25·16 + 4) = 0.5
    half = target.clone()
    half[0, 0] = 0.5
    assert float(dice_distance_loss(half, target)) == pytest.approx(0.5, abs=1e-6)
    flat = dice_distance_loss(half[0].reshape(3, -1), target[0].reshape(3, -1))
    assert float(flat) == pytest.approx(0.5, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        dice_distance_loss(half, target[:, :, :2])
    with pytest.raises(ValueError, match="3 channels"):
        dice_distance_loss(half[:, :2], target[:, :2])


def tiny_config(**changes) -> InstanceTrainConfig:
    values: dict = {
        "steps": 5,
        "batch_size": 2,
        "window": 2,
        "full_fraction": 0.4,
        "warmup_steps": 2,
        "checkpoint_every": 2,
        "validate_every": 2,
    }
    values.update(changes)
    return InstanceTrainConfig(**values)


def test_training_resumes_to_the_same_weights(tmp_path):
    samples, config = tiny_samples(), tiny_config()
    unbroken = tiny_decoder()
    seen = []
    state = train_instance_decoder(
        unbroken,
        samples,
        config,
        tmp_path / "a",
        validation=samples,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert state.finished and state.step == 5 and seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert [h["step"] for h in state.history] == [2, 4, 5] and state.best_step in (2, 4, 5)
    assert (tmp_path / "a" / "best.pt").is_file()
    before = {k: v.clone() for k, v in tiny_decoder().state_dict().items()}
    assert any(not torch.equal(before[k], v) for k, v in unbroken.state_dict().items())

    broken, calls = tiny_decoder(), 0
    while True:  # max_seconds=0: every call stops (checkpointed) after one step; a fresh decoder resumes
        calls += 1
        state = train_instance_decoder(
            broken, samples, config, tmp_path / "b", validation=samples, max_seconds=0
        )
        if state.finished:
            break
        broken = tiny_decoder(seed=calls)  # other initial weights: the checkpoint replaces them
    assert calls == 5
    for key, value in unbroken.state_dict().items():
        torch.testing.assert_close(broken.state_dict()[key], value, atol=0, rtol=0, msg=key)


def test_resume_with_another_config_is_refused(tmp_path):
    samples = tiny_samples()
    train_instance_decoder(tiny_decoder(), samples, tiny_config(steps=2), tmp_path)
    with pytest.raises(ValueError, match="another config"):
        train_instance_decoder(tiny_decoder(), samples, tiny_config(steps=3, lr=5e-4), tmp_path)


def test_loss_goes_down_fitting_two_images(tmp_path):
    samples = tiny_samples()
    decoder = tiny_decoder()
    start = validation_loss(decoder, samples)
    config = tiny_config(
        steps=20, lr=2e-2, full_fraction=1.0, full_batch_size=2, validate_every=20, checkpoint_every=20
    )
    train_instance_decoder(decoder, samples, config, tmp_path)
    assert validation_loss(decoder, samples) < start - 0.1


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"window": 1.5}, "window"),
        ({"full_fraction": 2.0}, "full_fraction"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_bad_config(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**changes)


def test_learning_rate_schedule():
    config = tiny_config(steps=100, warmup_steps=10, lr=1.0, min_lr_fraction=0.1)
    assert config.lr_at(0) == pytest.approx(0.1) and config.lr_at(9) == pytest.approx(1.0)
    assert config.lr_at(10) == pytest.approx(1.0) and config.lr_at(100) == pytest.approx(0.1)
    assert config.lr_at(55) == pytest.approx(0.55)


def test_samples_save_load_and_embed(tmp_path, small_model):
    samples = tiny_samples()
    samples.save(tmp_path / "s.npz")
    loaded = InstanceSamples.load(tmp_path / "s.npz")
    assert torch.equal(loaded.features, samples.features) and loaded.input_sizes == samples.input_sizes
    assert all(np.array_equal(a, b) for a, b in zip(loaded.targets, samples.targets, strict=True))
    both = InstanceSamples.concat([samples, loaded])
    assert len(both) == 4 and both.features.shape[0] == 4

    image = np.random.default_rng(0).random((40, 60)).astype(np.float32)
    labels = disc_labels((40, 60), 1)
    made = embed_samples([(image, labels)], small_model)
    assert made.features.dtype == torch.float16 and made.features.shape[0] == 1
    assert made.original_sizes == [(40, 60)] and made.input_sizes == [(171, 256)]
    np.testing.assert_array_equal(
        made.targets[0], np.round(instance_target_maps(labels) * 255).astype(np.uint8)
    )
