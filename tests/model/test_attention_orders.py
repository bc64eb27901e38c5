"""The decoder's cheaper attention orders compute the same thing as the standard one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.engine.coords import boxes_xyxy_to_rc
from napari_sam.engine.embeddings import compute_embeddings
from napari_sam.engine.predict import predict
from napari_sam.model.transformer import Attention
from tests.conftest import official_prompts_to_ours


@pytest.fixture
def attention():
    torch.manual_seed(0)
    layer = Attention(embedding_dim=256, num_heads=8, downsample_rate=2)
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0, 0.1)
    return layer


def test_small_query_order_matches_standard(attention):
    q = torch.randn(3, 7, 256)
    k = torch.randn(1, 500, 256)  # one image shared by three prompts
    v = torch.randn(1, 500, 256)
    expected = attention._attend_standard(q, k, v)
    got = attention._attend_small_queries(q, k, v)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_small_key_order_matches_standard(attention):
    q = torch.randn(1, 500, 256)  # image tokens shared by the batch
    k = torch.randn(3, 7, 256)
    v = torch.randn(3, 7, 256)
    expected = attention._attend_standard(q, k, v)
    got = attention._attend_small_keys(q, k, v)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    residual = torch.randn(1, 500, 256)
    fused = attention._attend_small_keys(q, k, v, residual)
    torch.testing.assert_close(fused, residual + expected, atol=2e-5, rtol=1e-4)


def test_forward_picks_the_cheap_order_for_vit_b_shapes(attention, monkeypatch):
    calls = []
    for name in ("_attend_standard", "_attend_small_queries", "_attend_small_keys"):
        original = getattr(Attention, name)

        def spy(self, *args, _name=name, _original=original):
            calls.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(Attention, name, spy)
    tokens, image = torch.randn(1, 7, 256), torch.randn(1, 4096, 256)
    attention(tokens, image, image)
    attention(image, tokens, tokens)
    attention(tokens, tokens, tokens)
    assert calls == ["_attend_small_queries", "_attend_small_keys", "_attend_standard"]


def test_gradients_flow_through_the_cheap_orders(attention):
    q = torch.randn(2, 7, 256, requires_grad=True)
    k = torch.randn(2, 300, 256, requires_grad=True)
    attention._attend_small_queries(q, k, k).sum().backward()
    assert q.grad is not None and k.grad is not None
    assert attention.k_proj.weight.grad is not None


@pytest.mark.parametrize("order", ["small", "standard"])
def test_golden_parity_with_each_order_forced(golden, monkeypatch, order):
    """Small test configs pick the standard order by cost; force the others through the fixtures."""

    def forced(self, q, k, v, residual=None):
        if order == "standard" or q.shape[1] == k.shape[1]:
            out = self._attend_standard(q, k, v)
        elif q.shape[1] < k.shape[1]:
            out = self._attend_small_queries(q, k, v)
        else:
            return self._attend_small_keys(q, k, v, residual)
        return out if residual is None else residual + out

    monkeypatch.setattr(Attention, "forward", forced)
    emb = compute_embeddings(golden.arrays["image"], golden.model(), normalize=None)
    for name in ("point", "box_points", "mask_input"):
        case = golden.case(name)
        kwargs = official_prompts_to_ours(case)
        pred = predict(emb, return_logits=True, **kwargs)
        np.testing.assert_allclose(pred.masks[0], case["masks"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(pred.iou_scores[0], case["iou"], atol=1e-4, rtol=0)
    batched = golden.case("batched_boxes")
    pred = predict(emb, box=boxes_xyxy_to_rc(batched["boxes"]), multimask=False, return_logits=True)
    np.testing.assert_allclose(pred.masks, batched["masks"], atol=1e-4, rtol=0)


def test_dense_pe_cache_follows_the_buffer(golden):
    model = golden.model()
    pe = model.prompt_encoder
    first = pe.get_dense_pe()
    assert pe.get_dense_pe() is first
    with torch.no_grad():
        pe.pe_layer.positional_encoding_gaussian_matrix.mul_(2.0)
    second = pe.get_dense_pe()
    assert second is not first
    torch.testing.assert_close(second, pe.pe_layer(pe.image_embedding_size).unsqueeze(0))
