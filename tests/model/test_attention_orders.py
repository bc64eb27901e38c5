"""The decoder's cheaper attention orders compute the same thing as the standard one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.engine.decode.coords import boxes_xyxy_to_rc
from napari_sam.engine.decode.predict import predict
from napari_sam.engine.embed.embeddings import compute_embeddings
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


def test_projected_key_and_query_paths_match_standard(attention):
    image = torch.randn(1, 500, 256)
    tokens = torch.randn(3, 7, 256)
    keys_h = attention.project_heads(image, attention.k_proj)
    values_h = attention.project_heads(image, attention.v_proj)
    expected = attention._attend_standard(tokens, image, image)
    torch.testing.assert_close(
        attention.attend_projected_keys(tokens, keys_h, values_h), expected, atol=2e-5, rtol=1e-4
    )
    queries_h = attention.project_heads(image, attention.q_proj)
    residual = torch.randn(1, 500, 256)
    expected = residual + attention._attend_standard(image, tokens, tokens)
    got = attention.attend_projected_queries(queries_h, tokens, tokens, residual)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)


def test_prepared_image_decodes_like_the_plain_path(golden):
    """Decoding from MaskDecoder.prepare_image equals decoding from the embedding tensor."""
    model = golden.model().eval()
    torch.manual_seed(1)
    grid = model.prompt_encoder.image_embedding_size
    features = torch.randn(1, model.prompt_encoder.embed_dim, *grid)
    side = model.image_size
    boxes = torch.tensor([[10.0, 20.0, 200.0, 150.0], [0.0, 0.0, 60.0, 90.0], [100.0, 5.0, side - 1.0, 80.0]])
    points = (torch.rand(3, 2, 2) * side, torch.tensor([[1, 0], [1, 1], [1, 0]]))
    with torch.inference_mode():
        sparse, dense = model.prompt_encoder(points, boxes, None)
        pe = model.prompt_encoder.get_dense_pe()
        plain = model.mask_decoder(features, pe, sparse, dense, multimask_output=True)
        prepared = model.mask_decoder.prepare_image(features, pe, dense)
        fast = model.mask_decoder(prepared, None, sparse, dense, multimask_output=True)
    for got, expected in zip(fast, plain, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_predict_reuses_the_prepared_image_and_respects_mask_prompts(golden):
    from napari_sam.engine.decode import plain as predict_module

    emb = compute_embeddings(golden.arrays["image"], golden.model(), normalize=None)
    first = predict_module.prepared_image(emb, emb.model)
    assert predict_module.prepared_image(emb, emb.model) is first
    case = golden.case("mask_input")  # a mask prompt takes the plain path and still matches
    pred = predict(emb, return_logits=True, **official_prompts_to_ours(case))
    np.testing.assert_allclose(pred.masks[0], case["masks"], atol=1e-4, rtol=0)


def test_prepared_images_are_kept_for_a_few_recent_embeddings_only(golden):
    from napari_sam.engine.decode import plain as predict_module

    model = golden.model()
    image = golden.arrays["image"]
    embeddings = [
        compute_embeddings(image, model, normalize=None) for _ in range(predict_module.PREPARED_KEPT + 2)
    ]
    for emb in embeddings:
        predict_module.prepared_image(emb, model)
    kept = [emb for emb in embeddings if emb in predict_module._PREPARED]
    assert kept == embeddings[-predict_module.PREPARED_KEPT :]
