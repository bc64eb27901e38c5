"""Reduced-precision encoding (bf16 / fp16 autocast) keeps masks equivalent; precision names are checked."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.data.synthetic import nuclei_2d
from napari_sam.engine.decode.predict import predict
from napari_sam.engine.embed.embeddings import compute_embeddings
from napari_sam.engine.embed.encoder import encode_images, resolve_precision
from napari_sam.engine.training.evaluate import masks_iou


@pytest.fixture(scope="module")
def nuclei():
    image, labels = nuclei_2d((384, 384), n_objects=12, seed=2024)
    ids = np.unique(labels)[1:]
    boxes = []
    for i in ids:
        rows, cols = np.nonzero(labels == i)
        boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
    return image, np.asarray(boxes, dtype=float)


@pytest.mark.parametrize(
    "precision",
    # fp16 convolutions on CPUs without native fp16 take about a minute here: checked with -m slow
    ["bf16", pytest.param("fp16", marks=pytest.mark.slow)],
)
def test_reduced_precision_masks_match_fp32(nuclei, precision):
    if not torch.amp.is_autocast_available("cpu"):
        pytest.skip("this torch build has no CPU autocast")
    image, boxes = nuclei
    reference = predict(
        compute_embeddings(image, "nano", device="cpu", precision="fp32"), box=boxes, multimask=False
    )
    reduced_emb = compute_embeddings(image, "nano", device="cpu", precision=precision)
    assert reduced_emb.features.dtype == torch.float32  # returned as float32 whatever the arithmetic
    reduced = predict(reduced_emb, box=boxes, multimask=False)
    ious = masks_iou(reference.masks[:, 0], reduced.masks[:, 0])
    assert ious.mean() >= 0.98, ious
    # and the arithmetic really was reduced: the features are not bit-identical to fp32
    fp32 = compute_embeddings(image, "nano", device="cpu", precision="fp32").features
    assert not torch.equal(reduced_emb.features, fp32)


def test_precision_auto_is_fp32_on_cpu_and_names_are_validated():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bfloat16", cpu) == "bf16"
    assert resolve_precision("FP16", cpu) == "fp16"
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision("int8", cpu)
    with pytest.raises(ValueError, match="precision must be"):
        resolve_precision(16, cpu)  # type: ignore[arg-type]


def test_batched_encoding_equals_one_by_one(small_model):
    torch.manual_seed(0)
    side = small_model.image_size
    batch = torch.randn(3, 3, side, side)
    together = encode_images(small_model, batch, precision="fp32")
    apart = torch.cat([encode_images(small_model, batch[i : i + 1], precision="fp32") for i in range(3)])
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_compiled_encoder_matches_eager(small_model, tmp_path, monkeypatch):
    """torch.compile (opt-in) gives the eager results; slow: compiling takes tens of seconds on a CPU."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    from napari_sam.engine.embed.encoder import warm_up

    seconds = warm_up(small_model, batch_size=2, precision="fp32")
    assert seconds > 0
    batch = torch.randn(2, 3, small_model.image_size, small_model.image_size)
    eager = encode_images(small_model, batch, precision="fp32")
    compiled = encode_images(small_model, batch, precision="fp32", compile=True)
    torch.testing.assert_close(compiled, eager, atol=1e-4, rtol=1e-4)
    assert any((tmp_path / "inductor").iterdir())  # kernels cached on disk for the next process
    image = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    plain = compute_embeddings(image, small_model, precision="fp32").features
    fast = compute_embeddings(image, small_model, precision="fp32", compile=True).features
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)


def test_compile_mode_is_validated(small_model):
    from napari_sam.engine.embed.encoder import compiled_encoder

    with pytest.raises(ValueError, match="compile mode"):
        compiled_encoder(small_model, mode="fastest")
