"""Training and fine-tuning: prompt simulation, losses, checkpoints, data folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from napari_sam.data.basic import basic_nuclei_2d as nuclei_2d
from napari_sam.engine.training.canvas import prepare_canvas
from napari_sam.engine.training.data import find_pairs, folder_source
from napari_sam.engine.training.losses import dice_loss, focal_loss, mask_iou
from napari_sam.engine.training.train import TrainConfig, TrainRun, iter_training, train_model
from napari_sam.model import build_sam


def small_source(rng):
    return nuclei_2d((160, 192), n_objects=6, radius=(8, 14), seed=int(rng.integers(1 << 30)))


def tiny_cfg(**kwargs):
    base = {
        "steps": 2,
        "batch_images": 2,
        "objects_per_image": 3,
        "crop_size": 128,
        "log_every": 1,
        "checkpoint_every": 1,
    }
    base.update(kwargs)
    return TrainConfig(**base)


def test_losses_reward_the_right_mask():
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1
    good = (target * 2 - 1) * 10
    bad = -good
    logits = torch.cat([good, bad], dim=1)
    focal, dice = focal_loss(logits, target), dice_loss(logits, target)
    assert focal[0, 0] < focal[0, 1] and dice[0, 0] < 0.01 < dice[0, 1]
    np.testing.assert_allclose(mask_iou(logits, target).numpy(), [[1.0, 0.0]])


def test_canvas_matches_inference_geometry():
    model = build_sam("nano")
    image, labels = nuclei_2d((300, 600), n_objects=5, seed=3)
    canvas = prepare_canvas(image, labels, model)
    assert canvas.pixels.shape == (3, 1024, 1024)
    assert canvas.input_size == (512, 1024)
    assert canvas.labels.shape == (1024, 1024)
    assert canvas.labels[512:].max() == 0
    assert set(np.unique(canvas.labels)) == set(np.unique(labels))
    # a small image is enlarged at most model.max_upscale (2x for nano), as at inference
    small = prepare_canvas(*nuclei_2d((100, 200), n_objects=5, seed=3), model)
    assert small.input_size == (200, 400)
    assert small.labels[200:].max() == 0 and small.labels[:, 400:].max() == 0


def test_training_changes_weights_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = build_sam("nano")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = train_model(model, small_source, tiny_cfg(), TrainRun(out_dir=tmp_path), progress=False)
    assert state.step == 2
    assert all(np.isfinite(h["loss"]) for h in state.history)
    changed = [
        k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])
    ]
    assert any(k.startswith("image_encoder.") for k in changed)
    assert any(k.startswith("mask_decoder.") for k in changed)
    assert (tmp_path / "checkpoint.pt").is_file()
    resumed = train_model(
        build_sam("nano"), small_source, tiny_cfg(steps=3), TrainRun(out_dir=tmp_path), progress=False
    )
    assert resumed.step == 3
    assert [h["step"] for h in resumed.history] == [1, 2, 3]


def test_training_reports_through_the_one_progress_protocol():
    import threading

    from napari_sam.errors import Cancelled

    seen: list[tuple[int, int]] = []
    state = train_model(build_sam("nano"), small_source, tiny_cfg(), progress=lambda *a: seen.append(a))
    assert state.step == 2 and seen == [(0, 2), (1, 2), (2, 2)]
    steps = iter_training(build_sam("nano"), small_source, tiny_cfg(steps=1))
    assert next(steps) == (0, 1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled, match="training cancelled"):
        train_model(build_sam("nano"), small_source, tiny_cfg(), progress=False, cancel=cancel)


def test_loss_goes_down_when_fitting_one_image():
    image, labels = nuclei_2d((128, 128), n_objects=5, radius=(10, 16), seed=7)
    torch.manual_seed(1)
    model = build_sam("nano")
    cfg = tiny_cfg(steps=14, batch_images=1, objects_per_image=4, lr=2e-3, warmup_steps=1, correction_iters=0)
    state = train_model(model, lambda rng: (image, labels), cfg, progress=False)
    losses = [h["loss"] for h in state.history]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])


def test_fine_tuning_a_folder_with_frozen_encoder(tmp_path):
    for i in range(2):
        image, labels = nuclei_2d((96, 128), n_objects=4, seed=i)
        (tmp_path / "images").mkdir(exist_ok=True)
        (tmp_path / "labels").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "images" / f"img{i}.tif", image)
        tifffile.imwrite(tmp_path / "labels" / f"img{i}.tif", labels)
    assert len(find_pairs(tmp_path)) == 2
    model = build_sam("nano")
    encoder_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    decoder_before = {k: v.clone() for k, v in model.mask_decoder.state_dict().items()}
    train_model(model, folder_source(tmp_path), tiny_cfg(freeze_encoder=True), progress=False)
    for k, v in model.image_encoder.state_dict().items():
        assert torch.equal(v, encoder_before[k]), k
    assert any(not torch.equal(v, decoder_before[k]) for k, v in model.mask_decoder.state_dict().items())


def test_side_by_side_pairs_and_missing_pairs(tmp_path):
    image, labels = nuclei_2d((64, 64), n_objects=2, seed=0)
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "a_labels.tif", labels)
    tifffile.imwrite(tmp_path / "b.tif", image)
    pairs = find_pairs(tmp_path)
    assert [(p.name, q.name) for p, q in pairs] == [("a.tif", "a_labels.tif")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image/label pairs"):
        find_pairs(empty)
    with pytest.raises(FileNotFoundError):
        find_pairs(tmp_path / "nope")


def test_crop_training_needs_the_nano_encoder(small_model):
    with pytest.raises(ValueError, match="nano"):
        train_model(small_model, small_source, tiny_cfg(crop_size=64), progress=False)


@pytest.mark.parametrize(
    "kwargs", [{"crop_size": 100}, {"steps": -1}, {"point_fraction": 2.0}, {"batch_images": 0}]
)
def test_bad_training_settings(kwargs):
    with pytest.raises(ValueError, match="must"):
        TrainConfig(**kwargs)


def test_object_scale_canvas_follows_the_inference_rule():
    from napari_sam.engine.object_scale import canvas_scale
    from napari_sam.engine.training.canvas import labels_object_size, object_scale_canvas

    model = build_sam("nano")
    image, labels = nuclei_2d((600, 700), n_objects=40, radius=(6, 8), seed=5)
    size = labels_object_size(labels)
    assert 10 < size < 18
    scale = canvas_scale(size, model.object_scale)
    assert scale > 2  # small objects are enlarged beyond nano's fixed 2x cap
    canvas = object_scale_canvas(image, labels, model, np.random.default_rng(0), jitter=0.0)
    # the image is larger than the canvas at that scale: a window of side image_size / scale fills it
    side = int(1024 / scale)
    assert canvas.input_size == (round(side * scale), round(side * scale))
    assert canvas.labels[canvas.input_size[0] :].max() == 0
    on_canvas = labels_object_size(canvas.labels)
    assert on_canvas == pytest.approx(size * scale, rel=0.15)
    # the jitter moves the scale of larger objects (below nano's 3x cap) within exp(+-jitter)
    rng = np.random.default_rng(1)
    big_image, big_labels = nuclei_2d((400, 400), n_objects=20, radius=(14, 18), seed=6)
    big = labels_object_size(big_labels)
    sizes = [
        labels_object_size(object_scale_canvas(big_image, big_labels, model, rng, 0.3).labels)
        for _ in range(6)
    ]
    expected = big * canvas_scale(big, model.object_scale)
    assert max(sizes) / min(sizes) > 1.05
    assert expected * np.exp(-0.3) * 0.85 < min(sizes) <= max(sizes) < expected * np.exp(0.3) * 1.15
    # without objects the plain canvas is used
    plain = object_scale_canvas(image, np.zeros_like(labels), model, rng, jitter=0.3)
    assert plain.input_size == prepare_canvas(image, np.zeros_like(labels), model).input_size


def test_object_scale_training_runs(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_cfg(object_scale=True, windows_per_image=2)
    state = train_model(build_sam("nano"), small_source, cfg, TrainRun(out_dir=tmp_path), progress=False)
    assert state.step == 2 and all(np.isfinite(h["loss"]) for h in state.history)
    with pytest.raises(ValueError, match="windows_per_image"):
        TrainConfig(windows_per_image=0)
