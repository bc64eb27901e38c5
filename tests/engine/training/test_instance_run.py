"""Training a model's instance decoder on user data: data split, caching, resume, export."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch

from napari_sam.engine.training import instance_run
from napari_sam.engine.training.instance_run import (
    check_out_folder,
    instance_data,
    instance_train_config,
    new_instance_decoder,
    train_instance_run,
    validation_count,
)
from napari_sam.errors import Cancelled
from napari_sam.model import InstanceDecoder, build_sam

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions run faster on one thread when the cores are shared; one thread also keeps a
    resumed run's arithmetic the same as an unbroken one's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_pairs(folder: Path, count: int, shape: tuple[int, int] = (48, 64)) -> Path:
    """``count`` synthetic nuclei images with their labels, as NAME.tif + NAME_labels.tif."""
    from napari_sam.data.synthetic import nuclei_2d

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, labels = nuclei_2d(shape, n_objects=3, seed=i)
        tifffile.imwrite(folder / f"cell{i}.tif", image)
        tifffile.imwrite(folder / f"cell{i}_labels.tif", labels.astype(np.uint16))
    return folder


@pytest.fixture
def small_with_decoder(small_model):
    """The small random SAM (256 canvas, 32-channel embeddings) with a tiny seeded instance decoder."""
    import copy

    sam = copy.deepcopy(small_model)
    torch.manual_seed(0)
    sam.instance_decoder = InstanceDecoder(embed_dim=32, image_size=256, initial_features=4).eval()
    return sam


def test_validation_count():
    assert [validation_count(n) for n in (1, 4, 5, 9, 10, 24, 40, 100)] == [0, 0, 1, 1, 2, 4, 8, 8]


def test_folder_pairs_are_split_by_the_seed(tmp_path):
    folder = write_pairs(tmp_path / "data", 10)
    data = instance_data(folder, seed=3)
    assert len(data.train) == 8 and len(data.validation) == 2
    held = data.key["validation"]
    again = instance_data(folder, seed=3)
    assert again.key == data.key
    # the held-out readers read the held-out files
    for reader, index in zip(data.validation, held, strict=True):
        image, labels = reader()
        np.testing.assert_array_equal(image, tifffile.imread(folder / f"cell{index}.tif"))
        assert labels.dtype == np.int64
    others = {tuple(instance_data(folder, seed=s).key["validation"]) for s in range(6)}
    assert len(others) > 1  # the seed chooses them
    few = instance_data(write_pairs(tmp_path / "few", 4), seed=0)
    assert len(few.train) == 4 and few.validation == []


def test_callable_pairs_are_drawn_per_index(monkeypatch):
    monkeypatch.setattr(instance_run, "CALLABLE_PAIRS", 10)
    seen = []

    def source(rng):
        value = int(rng.integers(1 << 30))
        seen.append(value)
        return np.full((8, 8), value % 255, np.uint8), np.ones((8, 8), np.int32)

    data = instance_data(source, seed=1)
    assert len(data.train) == 8 and len(data.validation) == 2
    data.validation[1]()
    assert seen == [int(np.random.default_rng([1, 9]).integers(1 << 30))]
    with pytest.raises(ValueError, match="labels of shape"):
        instance_data(lambda rng: (np.zeros((8, 8)), np.zeros((4, 4), int)), seed=0).train[0]()


def test_large_images_are_cut_into_tile_sized_pieces():
    image = np.arange(2100 * 30, dtype=np.float32).reshape(2100, 30)
    labels = (image % 7).astype(np.int64)
    pieces = list(instance_run._pieces(image, labels))
    assert [p[0].shape for p in pieces] == [(700, 30)] * 3
    np.testing.assert_array_equal(np.concatenate([p[0] for p in pieces]), image)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in pieces]), labels)
    assert len(list(instance_run._pieces(image[:2048], labels[:2048]))) == 1  # at the threshold: whole


def test_a_new_decoder_has_the_shipped_nano_or_micro_sams_architecture():
    from napari_sam.model.configs import CONFIGS

    def stub(name):
        return SimpleNamespace(config=CONFIGS[name], image_size=CONFIGS[name].image_size)

    nano = new_instance_decoder(stub("nano")).config
    assert (nano.initial_features, nano.full_resolution, nano.embed_dim) == (16, False, 256)
    vit = new_instance_decoder(stub("vit_b"))
    # micro-sam's vit_b decoder_state (torch_em's UNETR, interpolating samplers): same keys and shapes
    keys = json.loads((FIXTURES / "instance_decoder" / "vit_b_decoder_keys.json").read_text())["interpolate"]
    assert {k: list(v.shape) for k, v in vit.state_dict().items()} == keys


def test_config_validates_about_eight_times_and_warms_up_a_tenth():
    config = instance_train_config(800, 4, 1e-3, 0)
    assert (config.validate_every, config.checkpoint_every, config.warmup_steps) == (100, 50, 50)
    small = instance_train_config(8, 2, 1e-3, 5)
    assert (small.validate_every, small.checkpoint_every, small.warmup_steps, small.batch_size) == (
        1,
        1,
        0,
        2,
    )


def run(sam, folder, out, **kw):
    kw = {"steps": 8, "batch_images": 2, "lr": None, "seed": 0, "device": torch.device("cpu"), **kw}
    return train_instance_run(sam, instance_data(folder, kw["seed"]), out, **kw)


def test_an_interrupted_run_resumes_to_the_unbroken_runs_weights(small_with_decoder, tmp_path, monkeypatch):
    import copy

    folder = write_pairs(tmp_path / "data", 6)
    start = copy.deepcopy(small_with_decoder.instance_decoder.state_dict())
    unbroken = run(copy.deepcopy(small_with_decoder), folder, tmp_path / "whole")
    assert unbroken.state.step == 8 and (unbroken.train_images, unbroken.validation_images) == (5, 1)

    cancel = threading.Event()

    def stop_after_five(done, total):
        if total == 8 and done == 5:
            cancel.set()

    out = tmp_path / "broken"
    with pytest.raises(Cancelled):
        run(copy.deepcopy(small_with_decoder), folder, out, progress=stop_after_five, cancel=cancel)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert json.loads(saved["state"])["step"] == 5 and not (out / "model.safetensors").exists()

    calls = []
    monkeypatch.setattr(instance_run, "embed_samples", lambda *a, **k: calls.append(1))
    sam = copy.deepcopy(small_with_decoder)
    resumed = run(sam, folder, out)  # the embeddings come from the folder's cache
    assert calls == [] and resumed.state.step == 8
    assert [e["step"] for e in resumed.state.history] == list(range(1, 9))
    best_unbroken = torch.load(tmp_path / "whole" / "best.pt", weights_only=True)
    best_resumed = torch.load(out / "best.pt", weights_only=True)
    for key, value in best_unbroken.items():
        torch.testing.assert_close(best_resumed[key], value, rtol=0, atol=1e-6)
    # the model's decoder is the best one, and it moved away from the start
    for key, value in sam.instance_decoder.state_dict().items():
        torch.testing.assert_close(value, best_resumed[key], rtol=0, atol=0)
    assert any(not torch.equal(start[k], v) for k, v in best_resumed.items())


def test_files_written_load_as_model_and_as_micro_sam_decoder(small_with_decoder, tmp_path):
    import copy

    folder = write_pairs(tmp_path / "data", 3)  # no validation: the last decoder is kept
    sam = copy.deepcopy(small_with_decoder)
    result = run(sam, folder, tmp_path / "out", steps=3)
    assert result.validation_images == 0 and not (tmp_path / "out" / "best.pt").exists()
    loaded = build_sam(result.weights)
    trained = {
        k: v.half().float() if v.is_floating_point() else v
        for k, v in sam.instance_decoder.state_dict().items()
    }
    for key, value in loaded.instance_decoder.state_dict().items():
        torch.testing.assert_close(value, trained[key], rtol=0, atol=0)
    decoder_state = torch.load(result.decoder, weights_only=True)  # what micro-sam's loader does
    assert type(decoder_state) is dict and "base.block.1.weight" in decoder_state
    for key, value in sam.instance_decoder.state_dict().items():
        assert decoder_state[key].dtype == (torch.float32 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(decoder_state[key], value, rtol=0, atol=0)
    alone = build_sam(small_model_path(), instance_decoder=result.decoder).instance_decoder
    # the same architecture; a bare decoder_state is micro-sam's file, run as micro-sam runs it
    assert replace(alone.config, batch_statistics=False) == sam.instance_decoder.config
    assert alone.config.batch_statistics


def small_model_path() -> Path:
    return FIXTURES / "golden" / "small_a" / "weights.pth"


def test_other_settings_are_refused_before_embedding(small_with_decoder, tmp_path, monkeypatch):
    import copy

    folder = write_pairs(tmp_path / "data", 3)
    run(copy.deepcopy(small_with_decoder), folder, tmp_path / "out", steps=2)
    calls = []
    monkeypatch.setattr(instance_run, "embed_samples", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(instance_run, "_samples", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError, match=r"steps: 2 then, 3 now.*lr: 0\.0001 then, 0\.01 now"):
        run(copy.deepcopy(small_with_decoder), folder, tmp_path / "out", steps=3, lr=0.01)
    assert calls == []


def test_the_other_kind_of_checkpoint_is_refused(tmp_path):
    torch.save({"model": {}, "optimizer": {}}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"SAM .interactive. training run; use another output folder"):
        check_out_folder(tmp_path, instance=True)
    check_out_folder(tmp_path, instance=False)
    torch.save({"decoder": {}, "optimizer": {}, "config": "{}", "state": "{}"}, tmp_path / "checkpoint.pt")
    with pytest.raises(ValueError, match="instance decoder's run"):
        check_out_folder(tmp_path, instance=False)
    check_out_folder(tmp_path, instance=True)


@pytest.mark.slow
def test_a_nano_without_decoder_gets_a_new_one_trained_from_a_callable(tmp_path, monkeypatch):
    """~10 s: a random nano (no decoder) → a new decoder of the shipped nano's architecture, lr 1e-3."""
    import napari_sam as ns
    from napari_sam.data.synthetic import nuclei_2d

    monkeypatch.setattr(instance_run, "CALLABLE_PAIRS", 3)
    nano = build_sam("nano")
    assert nano.instance_decoder is None

    def pairs(rng):
        return nuclei_2d((96, 128), n_objects=4, seed=int(rng.integers(1000)))

    result = ns.train(pairs, nano, out=tmp_path, steps=2, instance_decoder=True, device="cpu", progress=False)
    assert nano.instance_decoder is None  # the given model is left alone
    assert result.history[0]["lr"] == 1e-3 and "val_loss" not in result.history[0]  # 3 pairs: none held out
    decoder = ns.load_model(result.weights, device="cpu").instance_decoder
    assert (decoder.config.initial_features, decoder.config.full_resolution) == (16, False)
    assert len(instance_run.InstanceSamples.load(tmp_path / "instance_train.npz")) == 3
