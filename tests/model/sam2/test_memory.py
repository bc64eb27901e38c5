"""SAM 2's rotary attention, memory attention and memory encoder against the official ``sam2`` package.

Fixtures: ``tests/fixtures/sam2/heads`` from ``scripts/make_sam2_heads_fixtures.py`` (see
``test_heads.py``): small configurations, seeds and the reference's outputs; weights and inputs are
recreated here by the script's own generators.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from napari_sam.model.sam2.memory_attention import MemoryAttention, MemoryAttentionLayer
from napari_sam.model.sam2.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from napari_sam.model.sam2.position_encoding import PositionEmbeddingSine
from napari_sam.model.sam2.rope import RoPEAttention, axial_rope_angles
from tests.model.sam2._heads_fixtures import inputs, max_abs, meta, outputs, script

# Measured on CPU (torch 2.13 here, 2.14.1 in the reference environment, float32): RoPE angle tables to
# ~1e-7, attention outputs to ~1e-6, memory attention (4 layers) and memory encoder to ~2e-6.
TOL = 1e-4


def _rope(cfg: dict[str, Any]) -> RoPEAttention:
    cfg = dict(cfg)
    if "feat_sizes" in cfg:
        cfg["feat_sizes"] = tuple(cfg["feat_sizes"])
    return RoPEAttention(**cfg)


def build_ours(name: str) -> torch.nn.Module:
    """Our module of the script's config ``name`` (no weights loaded)."""
    cfg = json.loads(json.dumps(script().CONFIGS[name]))
    if name.startswith("rope_"):
        return _rope(cfg)
    if name.startswith("memattn_"):
        layer = cfg.pop("layer")
        layer["self_attention"] = _rope(layer["self_attention"])
        layer["cross_attention"] = _rope(layer["cross_attention"])
        return MemoryAttention(layer=MemoryAttentionLayer(**layer), **cfg)
    fuser = cfg.pop("fuser")
    position = cfg.pop("position_encoding")
    return MemoryEncoder(
        mask_downsampler=MaskDownSampler(**cfg.pop("mask_downsampler")),
        fuser=Fuser(layer=CXBlock(**fuser.pop("layer")), **fuser),
        position_encoding=PositionEmbeddingSine(position.pop("num_pos_feats"), **position),
        **cfg,
    )


def seeded_ours(name: str) -> torch.nn.Module:
    module = meta()["modules"][name]
    model = build_ours(name)
    model.load_state_dict(script().seeded_state_dict(module["keys"], module["seed"]), strict=True)
    return model.eval()


def _listing(model: torch.nn.Module) -> dict[str, list]:
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


SMALL = (
    "rope_self",
    "rope_self_square",
    "rope_cross",
    "memattn_sam21",
    "memattn_variant",
    "memenc_sam21",
    "memenc_variant",
)


@pytest.mark.parametrize("name", SMALL)
def test_small_state_dict_keys_equal_the_reference(name):
    assert list(_listing(build_ours(name)).items()) == list(meta()["modules"][name]["keys"].items())


def test_real_sam21_keys_equal_the_reference():
    real = meta()["sam2.1_hiera_t"]
    with torch.device("meta"):
        attention, encoder = MemoryAttention(), MemoryEncoder()
    assert list(_listing(attention).items()) == list(real["memory_attention"].items())
    assert list(_listing(encoder).items()) == list(real["memory_encoder"].items())


def test_axial_angles_match_compute_axial_cis():
    ref = outputs("rope")
    for case, (dim, end_x, end_y, theta) in script().AXIAL_CASES.items():
        angles = axial_rope_angles(dim, end_x, end_y, theta=theta)
        diffs = (max_abs(angles.cos(), ref[f"{case}/cos"]), max_abs(angles.sin(), ref[f"{case}/sin"]))
        assert max(diffs) <= 1e-5, (case, diffs)


@torch.no_grad()
def test_rope_attention_matches_the_reference():
    x, ref = inputs(), outputs("rope")
    models = {name: seeded_ours(name) for name in ("rope_self", "rope_self_square", "rope_cross")}
    for case, (name, q, k, v, exclude) in script().ROPE_CASES.items():
        out = models[name](x[q], x[k], x[v], num_k_exclude_rope=exclude)
        diff = max_abs(out, ref[f"{case}/out"])
        assert diff <= TOL, (case, diff)


@torch.no_grad()
def test_memory_attention_matches_the_reference():
    x, ref = inputs(), outputs("memory_attention")
    for case, (name, frames, pointers) in script().MEMATTN_CASES.items():
        out = seeded_ours(name)(
            curr=x["curr"],
            memory=x[f"memory_{frames}_{pointers}"],
            curr_pos=x["curr_pos"],
            memory_pos=x[f"memory_pos_{frames}_{pointers}"],
            num_obj_ptr_tokens=pointers,
        )
        diff = max_abs(out, ref[f"{case}/out"])
        assert diff <= TOL, (case, diff)


@torch.no_grad()
def test_memory_encoder_matches_the_reference():
    x, ref = inputs(), outputs("memory_encoder")
    for case, (name, skip) in script().MEMENC_CASES.items():
        model = seeded_ours(name)
        assert isinstance(model, MemoryEncoder)
        result = model(x["pix_feat"], x["mem_masks"], skip_mask_sigmoid=skip)
        masks = x["mem_masks"] if skip else torch.sigmoid(x["mem_masks"])
        diffs = {
            "features": max_abs(result["vision_features"], ref[f"{case}/features"]),
            "pos": max_abs(result["vision_pos_enc"][0], ref[f"{case}/pos"]),
            "downsampled": max_abs(model.mask_downsampler(masks), ref[f"{case}/downsampled"]),
            "fused": max_abs(model.fuser(x["pix_feat"]), ref[f"{case}/fused"]),
        }
        assert max(diffs.values()) <= TOL, (case, diffs)


def test_rope_on_a_non_square_grid_of_feat_sizes():
    """``feat_sizes`` is ``(W, H)``: token ``t`` sits at column ``t % W``, row ``t // W``."""
    attention = RoPEAttention(embedding_dim=8, num_heads=1, feat_sizes=(3, 2))
    cos, sin = attention.rotation(6, torch.device("cpu"))
    angles = torch.atan2(sin, cos)
    column_freq, row_freq = angles[1, 0], angles[3, 2]  # token 1: (x 1, y 0); token 3: (x 0, y 1)
    torch.testing.assert_close(angles[:, 0], torch.tensor([0.0, 1, 2, 0, 1, 2]) * column_freq)
    torch.testing.assert_close(angles[:, 2], torch.tensor([0.0, 0, 0, 1, 1, 1]) * row_freq)


def test_rope_errors_are_clear():
    attention = RoPEAttention(embedding_dim=8, num_heads=1, feat_sizes=(3, 2))
    q = torch.zeros(1, 6, 8)
    with pytest.raises(ValueError, match="rope_k_repeat"):
        attention(q, torch.zeros(1, 12, 8), torch.zeros(1, 12, 8))
    with pytest.raises(ValueError, match="square"):
        attention(torch.zeros(1, 7, 8), torch.zeros(1, 7, 8), torch.zeros(1, 7, 8))
    repeat = RoPEAttention(embedding_dim=8, num_heads=1, rope_k_repeat=True, feat_sizes=(3, 2))
    with pytest.raises(ValueError, match="whole repeats"):
        repeat(q, torch.zeros(1, 8, 8), torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        RoPEAttention(embedding_dim=12, num_heads=2)


def test_memory_encoder_grid_mismatch_is_clear():
    encoder = seeded_ours("memenc_sam21")
    x = inputs()
    with pytest.raises(ValueError, match="grid"):
        encoder(x["pix_feat"], x["mem_masks"][..., :32, :32])
