"""SAM 2's prompt encoder and mask decoder against the official ``sam2`` package.

The fixtures in ``tests/fixtures/sam2/heads`` come from ``scripts/make_sam2_heads_fixtures.py`` (reference
environment): small configurations, the reference's state-dict keys and seeds (weights and inputs are
recreated here, bit for bit, by the script's own generators) and the reference's outputs; plus the key
listings of the real sam2.1 tiny model's modules.
"""

from __future__ import annotations

import json

import pytest
import torch

from napari_sam.model.sam2.mask_decoder import Sam2MaskDecoder, Sam2TwoWayTransformer
from napari_sam.model.sam2.prompt_encoder import Sam2PromptEncoder
from tests.model.sam2._heads_fixtures import inputs, max_abs, meta, outputs, script

# Measured on CPU (torch 2.13 here, 2.14.1 in the reference environment, float32): prompt embeddings
# agree exactly, mask logits / IoU / tokens / object scores to ~1e-6 (values up to ~5).
TOL = 1e-4
DECODERS = ("decoder_sam21", "decoder_linear_obj", "decoder_plain")


def build_ours(name: str) -> torch.nn.Module:
    """Our module of the script's config ``name`` (no weights loaded)."""
    cfg = json.loads(json.dumps(script().CONFIGS[name]))
    if name == "prompt_encoder":
        return Sam2PromptEncoder(
            embed_dim=cfg["embed_dim"],
            image_embedding_size=tuple(cfg["image_embedding_size"]),
            input_image_size=tuple(cfg["input_image_size"]),
            mask_in_chans=cfg["mask_in_chans"],
        )
    transformer = Sam2TwoWayTransformer(**cfg.pop("transformer"))
    return Sam2MaskDecoder(transformer=transformer, **cfg)


def seeded_ours(name: str) -> torch.nn.Module:
    module = meta()["modules"][name]
    model = build_ours(name)
    model.load_state_dict(script().seeded_state_dict(module["keys"], module["seed"]), strict=True)
    return model.eval()


def _listing(model: torch.nn.Module) -> dict[str, list]:
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["prompt_encoder", *DECODERS])
def test_small_state_dict_keys_equal_the_reference(name):
    assert list(_listing(build_ours(name)).items()) == list(meta()["modules"][name]["keys"].items())


def test_real_sam21_keys_equal_the_reference():
    real = meta()["sam2.1_hiera_t"]
    with torch.device("meta"):
        prompt_encoder = Sam2PromptEncoder()
        decoder = Sam2MaskDecoder()
    assert list(_listing(prompt_encoder).items()) == list(real["sam_prompt_encoder"].items())
    assert list(_listing(decoder).items()) == list(real["sam_mask_decoder"].items())
    assert decoder.dynamic_multimask_via_stability  # as build_sam2 / build_sam2_video_predictor set it


@torch.no_grad()
def test_prompt_encoder_matches_the_reference():
    model, x, ref = seeded_ours("prompt_encoder"), inputs(), outputs("prompt_encoder")
    assert max_abs(model.get_dense_pe(), ref["dense_pe"]) <= TOL
    for case, parts in script().PROMPT_CASES.items():
        points = next(((x[p], x[f"{p}_labels"]) for p in parts if p.startswith("points")), None)
        sparse, dense = model(
            points=points,
            boxes=x["boxes"] if "boxes" in parts else None,
            masks=x["masks"] if "masks" in parts else None,
        )
        diffs = (max_abs(sparse, ref[f"{case}/sparse"]), max_abs(dense, ref[f"{case}/dense"]))
        assert max(diffs) <= TOL, (case, diffs)


@torch.no_grad()
def test_box_corner_labels_get_the_corner_embeddings():
    model = seeded_ours("prompt_encoder")
    box = torch.tensor([[3.0, 5.0, 40.0, 50.0]])
    as_box, _ = model(points=None, boxes=box, masks=None)
    as_points, _ = model(points=(box.view(1, 2, 2), torch.tensor([[2, 3]])), boxes=None, masks=None)
    torch.testing.assert_close(as_points[:, :2], as_box, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", DECODERS)
@torch.no_grad()
def test_mask_decoder_matches_the_reference(name):
    model, x, ref = seeded_ours(name), inputs(), outputs("mask_decoder")
    assert isinstance(model, Sam2MaskDecoder)
    for case, (multimask, repeat_image) in script().DECODER_CASES.items():
        prefix = f"{name}/{case}"
        if f"{prefix}/thresh" in ref:
            model.dynamic_multimask_stability_thresh = float(ref[f"{prefix}/thresh"])
        suffix = "" if repeat_image else "s"
        masks, iou, tokens, obj = model(
            image_embeddings=x["image"] if repeat_image else x["images"],
            image_pe=x["image_pe"],
            sparse_prompt_embeddings=x["sparse"],
            dense_prompt_embeddings=x["dense"],
            multimask_output=multimask,
            repeat_image=repeat_image,
            high_res_features=[x[f"feat{suffix}_s0"], x[f"feat{suffix}_s1"]],
        )
        diffs = {
            "masks": max_abs(masks, ref[f"{prefix}/masks"]),
            "iou": max_abs(iou, ref[f"{prefix}/iou"]),
            "tokens": max_abs(tokens, ref[f"{prefix}/tokens"]),
            "obj": max_abs(obj, ref[f"{prefix}/obj"]),
        }
        assert max(diffs.values()) <= TOL, (prefix, diffs)
        if f"{prefix}/stable" in ref:  # both branches of the stability fallback are exercised
            assert set(ref[f"{prefix}/stable"].tolist()) == {True, False}


def test_decoder_errors_are_clear():
    model = seeded_ours("decoder_sam21")
    x = inputs()
    args = {
        "image_pe": x["image_pe"],
        "sparse_prompt_embeddings": x["sparse"],
        "dense_prompt_embeddings": x["dense"],
        "multimask_output": True,
    }
    with pytest.raises(ValueError, match="repeat_image"):
        model(image_embeddings=x["images"], repeat_image=True, high_res_features=None, **args)
    with pytest.raises(ValueError, match="high_res_features"):
        model(image_embeddings=x["image"], repeat_image=True, high_res_features=None, **args)
    with pytest.raises(ValueError, match="ReLU"):
        Sam2TwoWayTransformer(embedding_dim=64, activation=torch.nn.GELU)
