"""The shipped nano model: registered hash, size, and quality on a fixed held-out set."""

from __future__ import annotations

import pytest

import napari_sam as ns
from napari_sam.data.synthetic import preset
from napari_sam.engine.training.evaluate import evaluate_prompts
from napari_sam.errors import WeightsHashError
from napari_sam.model.registry import NANO_SHA256, file_sha256, shipped_nano_path


@pytest.fixture(scope="module")
def nano():
    return ns.load_model("nano", device="cpu")


def test_shipped_weights_are_small_and_registered():
    path = shipped_nano_path()
    assert path.stat().st_size <= 20 * 1024 * 1024
    assert file_sha256(path) == NANO_SHA256


def test_nano_budget(nano):
    assert sum(p.numel() for p in nano.parameters()) <= 8_000_000
    assert nano.embedding_shape == (256, 64, 64)


def test_nano_box_quality_on_held_out_images(nano):
    """A bad retrain cannot land: box prompts on unseen synthetic nuclei must reach mean IoU >= 0.8."""
    samples = [preset("nuclei").sample(777_000 + i) for i in range(2)]  # seeds never used in training
    result = evaluate_prompts(nano, [(s.image, s.labels) for s in samples], clicks=0, max_objects=25)
    assert result["objects"] >= 30
    assert result["box"] >= 0.8, result


def test_tampered_nano_weights_are_refused(tmp_path, monkeypatch):
    import napari_sam.model.registry as registry

    copy = tmp_path / "nano.safetensors"
    data = bytearray(shipped_nano_path().read_bytes())
    data[-1] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(registry, "shipped_nano_path", lambda: copy)
    from napari_sam.engine.loading import open_model

    with pytest.raises(WeightsHashError):
        open_model("nano")
