"""SAM 2's prompt encoder and mask decoder against the official ``sam2`` package.

The fixtures in ``tests/fixtures/sam2/heads`` come from ``scripts/make_sam2_heads_fixtures.py`` (reference
environment): small configurations, the reference's state-dict keys and seeds (weights and inputs are
recreated here, bit for bit, by the script's own generators) and the reference's outputs; plus the key
listings of the real sam2.1 tiny model's modules.
"""

from __future__ import annotations

import importlib.util
import json
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from napari_sam.model.sam2.mask_decoder import Sam2MaskDecoder, Sam2TwoWayTransformer
from napari_sam.model.sam2.prompt_encoder import Sam2PromptEncoder

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "sam2" / "heads"
SCRIPT = ROOT / "scripts" / "make_sam2_heads_fixtures.py"

# Measured on CPU (torch 2.13 here, 2.14.1 in the reference environment, float32): prompt embeddings
# agree exactly, mask logits / IoU / tokens / object scores to ~1e-6 (values up to ~5).
TOL = 1e-4
DECODERS = ("decoder_sam21", "decoder_linear_obj", "decoder_plain")


@cache
def _script() -> ModuleType:
    """The fixture script as a module (its seeded generators; it imports no reference code)."""
    spec = importlib.util.spec_from_file_location("make_sam2_heads_fixtures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def _meta() -> dict[str, Any]:
    return json.loads((FIXTURES / "keys.json").read_text())


@cache
def _inputs() -> dict[str, torch.Tensor]:
    inputs = _script().make_inputs()
    checksums = _script().input_checksums(inputs)
    for name, value in _meta()["input_checksums"].items():
        assert checksums[name] == pytest.approx(value, rel=1e-12, abs=1e-9), name
    return {k: torch.from_numpy(v) for k, v in inputs.items()}


def _outputs(stem: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"{stem}.npz"))


def _max_abs(ours: torch.Tensor, reference: np.ndarray) -> float:
    a = ours.detach().double().numpy()
    assert a.shape == reference.shape, (a.shape, reference.shape)
    return float(np.abs(a - reference.astype(np.float64)).max()) if a.size else 0.0


def build_ours(name: str) -> torch.nn.Module:
    """Our module of the script's config ``name`` (no weights loaded)."""
    cfg = json.loads(json.dumps(_script().CONFIGS[name]))
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
    module = _meta()["modules"][name]
    model = build_ours(name)
    model.load_state_dict(_script().seeded_state_dict(module["keys"], module["seed"]), strict=True)
    return model.eval()


def _listing(model: torch.nn.Module) -> dict[str, list]:
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["prompt_encoder", *DECODERS])
def test_small_state_dict_keys_equal_the_reference(name):
    assert list(_listing(build_ours(name)).items()) == list(_meta()["modules"][name]["keys"].items())


def test_real_sam21_keys_equal_the_reference():
    real = _meta()["sam2.1_hiera_t"]
    with torch.device("meta"):
        prompt_encoder = Sam2PromptEncoder()
        decoder = Sam2MaskDecoder()
    assert list(_listing(prompt_encoder).items()) == list(real["sam_prompt_encoder"].items())
    assert list(_listing(decoder).items()) == list(real["sam_mask_decoder"].items())
    assert decoder.dynamic_multimask_via_stability  # as build_sam2 / build_sam2_video_predictor set it


@torch.no_grad()
def test_prompt_encoder_matches_the_reference():
    model, x, ref = seeded_ours("prompt_encoder"), _inputs(), _outputs("prompt_encoder")
    assert _max_abs(model.get_dense_pe(), ref["dense_pe"]) <= TOL
    for case, parts in _script().PROMPT_CASES.items():
        points = next(((x[p], x[f"{p}_labels"]) for p in parts if p.startswith("points")), None)
        sparse, dense = model(
            points=points,
            boxes=x["boxes"] if "boxes" in parts else None,
            masks=x["masks"] if "masks" in parts else None,
        )
        diffs = (_max_abs(sparse, ref[f"{case}/sparse"]), _max_abs(dense, ref[f"{case}/dense"]))
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
    model, x, ref = seeded_ours(name), _inputs(), _outputs("mask_decoder")
    assert isinstance(model, Sam2MaskDecoder)
    for case, (multimask, repeat_image) in _script().DECODER_CASES.items():
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
            "masks": _max_abs(masks, ref[f"{prefix}/masks"]),
            "iou": _max_abs(iou, ref[f"{prefix}/iou"]),
            "tokens": _max_abs(tokens, ref[f"{prefix}/tokens"]),
            "obj": _max_abs(obj, ref[f"{prefix}/obj"]),
        }
        assert max(diffs.values()) <= TOL, (prefix, diffs)
        if f"{prefix}/stable" in ref:  # both branches of the stability fallback are exercised
            assert set(ref[f"{prefix}/stable"].tolist()) == {True, False}


def test_decoder_errors_are_clear():
    model = seeded_ours("decoder_sam21")
    x = _inputs()
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
