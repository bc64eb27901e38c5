"""Generate the SAM 2 heads and memory parity fixtures from the official ``sam2`` package.

Run it in the reference environment (``.venv-ref``, with ``sam2`` 1.1.0), never from the library:

    .venv-ref/bin/python scripts/make_sam2_heads_fixtures.py     # → tests/fixtures/sam2/heads (committed)

The official modules are built directly from their classes on small configurations (:data:`CONFIGS`),
in eval mode, float32, on the CPU. Neither weights nor inputs are committed: weights come from
:func:`seeded_state_dict` (the reference's key list and a seed) and inputs from :func:`make_inputs`,
both drawn with ``numpy.random.RandomState`` so that ``tests/model/sam2/test_heads.py`` and
``test_memory.py`` recreate them bit for bit. This module imports only numpy and torch at import time.

The folder holds:

- ``keys.json``: per module, the seed, the small config, the reference's state-dict keys (order, shape,
  dtype) and a checksum of each input; and under ``"sam2.1_hiera_t"`` the key listings of the four
  modules of the real sam2.1 tiny model (``build_sam2``), to compare with ours at their defaults;
- ``prompt_encoder.npz``, ``mask_decoder.npz``, ``rope.npz``, ``memory_attention.npz``,
  ``memory_encoder.npz``: the reference's outputs, ``<case>/<output>``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "sam2" / "heads"

INPUT_SEED = 2100
SEEDS = {
    "prompt_encoder": 2101,
    "decoder_sam21": 2102,
    "decoder_linear_obj": 2103,
    "decoder_plain": 2104,
    "rope_self": 2105,
    "rope_self_square": 2106,
    "rope_cross": 2107,
    "memattn_sam21": 2108,
    "memattn_variant": 2109,
    "memenc_sam21": 2110,
    "memenc_variant": 2111,
}

#: grid of the prompt encoder and mask decoder cases (an input canvas 16× larger)
HEAD_GRID = 4
#: grid of the RoPE and memory attention cases
MEM_GRID = 6
D = 64  # model width of the small cases
MEM_D = 32  # memory width of the small cases

_TRANSFORMER = {"depth": 2, "embedding_dim": D, "num_heads": 4, "mlp_dim": 128}

#: Constructor arguments (official names, ours too) of every small module. ``transformer``, ``layer``,
#: ``self_attention`` / ``cross_attention``, ``mask_downsampler``, ``fuser`` and ``position_encoding``
#: are the arguments of the sub-module passed under that name.
CONFIGS: dict[str, dict] = {
    "prompt_encoder": {
        "embed_dim": D,
        "image_embedding_size": [HEAD_GRID, HEAD_GRID],
        "input_image_size": [16 * HEAD_GRID, 16 * HEAD_GRID],
        "mask_in_chans": 16,
    },
    "decoder_sam21": {
        "transformer_dim": D,
        "transformer": _TRANSFORMER,
        "iou_head_hidden_dim": 32,
        "use_high_res_features": True,
        "iou_prediction_use_sigmoid": True,
        "dynamic_multimask_via_stability": True,
        "pred_obj_scores": True,
        "pred_obj_scores_mlp": True,
        "use_multimask_token_for_obj_ptr": True,
    },
    "decoder_linear_obj": {
        "transformer_dim": D,
        "transformer": _TRANSFORMER,
        "iou_head_depth": 2,
        "iou_head_hidden_dim": 48,
        "use_high_res_features": False,
        "iou_prediction_use_sigmoid": False,
        "dynamic_multimask_via_stability": True,
        "pred_obj_scores": True,
        "pred_obj_scores_mlp": False,
        "use_multimask_token_for_obj_ptr": False,
    },
    "decoder_plain": {
        "transformer_dim": D,
        "transformer": _TRANSFORMER,
        "iou_head_hidden_dim": 32,
        "use_high_res_features": False,
        "iou_prediction_use_sigmoid": False,
        "dynamic_multimask_via_stability": False,
        "pred_obj_scores": False,
        "pred_obj_scores_mlp": False,
        "use_multimask_token_for_obj_ptr": True,
    },
    "rope_self": {"embedding_dim": D, "num_heads": 2, "dropout": 0.1, "feat_sizes": [MEM_GRID, MEM_GRID]},
    # feat_sizes differ from the 4×4 input: the square grid is read from the token count
    "rope_self_square": {"embedding_dim": 32, "num_heads": 1, "downsample_rate": 2},
    "rope_cross": {
        "embedding_dim": D,
        "num_heads": 2,
        "kv_in_dim": MEM_D,
        "rope_k_repeat": True,
        "rope_theta": 1000.0,
        "feat_sizes": [MEM_GRID, MEM_GRID],
    },
    "memattn_sam21": {
        "d_model": D,
        "pos_enc_at_input": True,
        "num_layers": 4,
        "layer": {
            "activation": "relu",
            "d_model": D,
            "dim_feedforward": 128,
            "dropout": 0.1,
            "pos_enc_at_attn": False,
            "pos_enc_at_cross_attn_keys": True,
            "pos_enc_at_cross_attn_queries": False,
            "self_attention": {"embedding_dim": D, "num_heads": 1, "feat_sizes": [MEM_GRID, MEM_GRID]},
            "cross_attention": {
                "embedding_dim": D,
                "num_heads": 1,
                "kv_in_dim": MEM_D,
                "rope_k_repeat": True,
                "feat_sizes": [MEM_GRID, MEM_GRID],
            },
        },
    },
    "memattn_variant": {
        "d_model": D,
        "pos_enc_at_input": False,
        "num_layers": 2,
        "layer": {
            "activation": "gelu",
            "d_model": D,
            "dim_feedforward": 96,
            "dropout": 0.0,
            "pos_enc_at_attn": True,
            "pos_enc_at_cross_attn_keys": False,
            "pos_enc_at_cross_attn_queries": True,
            "self_attention": {"embedding_dim": D, "num_heads": 2, "feat_sizes": [MEM_GRID, MEM_GRID]},
            "cross_attention": {
                "embedding_dim": D,
                "num_heads": 2,
                "kv_in_dim": MEM_D,
                "rope_k_repeat": True,
                "feat_sizes": [MEM_GRID, MEM_GRID],
            },
        },
    },
    "memenc_sam21": {
        "out_dim": MEM_D,
        "in_dim": D,
        "mask_downsampler": {"embed_dim": D, "kernel_size": 3, "stride": 2, "padding": 1, "total_stride": 16},
        "fuser": {
            "num_layers": 2,
            "layer": {
                "dim": D,
                "kernel_size": 7,
                "padding": 3,
                "layer_scale_init_value": 1e-6,
                "use_dwconv": True,
            },
        },
        "position_encoding": {"num_pos_feats": MEM_D, "normalize": True, "scale": None, "temperature": 10000},
    },
    "memenc_variant": {
        "out_dim": D,
        "in_dim": D,
        "mask_downsampler": {"embed_dim": D, "kernel_size": 4, "stride": 4, "padding": 0, "total_stride": 16},
        "fuser": {
            "num_layers": 1,
            "dim": D,
            "input_projection": True,
            "layer": {
                "dim": D,
                "kernel_size": 3,
                "padding": 1,
                "layer_scale_init_value": 0.0,
                "use_dwconv": False,
            },
        },
        "position_encoding": {"num_pos_feats": D, "normalize": True, "scale": None, "temperature": 10000},
    },
}

#: Prompt encoder cases: which of points / boxes / masks each passes.
PROMPT_CASES = {
    "points_pad": ("points6",),
    "points_boxes": ("points3", "boxes"),
    "boxes": ("boxes",),
    "masks_points": ("points6", "masks"),
    "masks": ("masks",),
    "empty": (),
}
#: Mask decoder cases: (multimask_output, repeat_image).
DECODER_CASES = {
    "multi_repeat": (True, True),
    "single_repeat": (False, True),
    "multi_batched": (True, False),
    "single_batched": (False, False),
}
#: RoPE attention cases: (module, query input, key input, value input, num_k_exclude_rope).
ROPE_CASES = {
    "self": ("rope_self", "rope_q", "rope_k", "rope_v", 0),
    "self_square": ("rope_self_square", "rope_q_small", "rope_k_small", "rope_v_small", 0),
    "cross_ptrs": ("rope_cross", "rope_q", "mem_k", "mem_v", 5),
    "cross_frames": ("rope_cross", "rope_q", "mem_k2", "mem_v2", 0),
    "cross_only_ptrs": ("rope_cross", "rope_q", "ptr_k", "ptr_v", 4),
}
#: RoPE angle tables of ``compute_axial_cis``: (head dim, end_x, end_y, theta); a non-square grid.
AXIAL_CASES = {"axial_16_6x4": (16, 6, 4, 10000.0), "axial_32_3x5": (32, 3, 5, 100.0)}
#: Memory attention cases: (module, memory frames, object pointer tokens).
MEMATTN_CASES = {"sam21_ptrs": ("memattn_sam21", 3, 8), "variant_frames": ("memattn_variant", 2, 0)}
#: Memory encoder cases: (module, skip_mask_sigmoid).
MEMENC_CASES = {
    "sam21_skip": ("memenc_sam21", True),
    "sam21_sigmoid": ("memenc_sam21", False),
    "variant_sigmoid": ("memenc_variant", False),
}


# --- seeded weights and inputs (used by the tests too) ---------------------------------------------

#: learned tokens, prompt embeddings and the random Fourier projection: drawn at unit scale
_EMBEDDINGS = (
    r"(^|\.)(iou_token|mask_tokens|obj_score_token|point_embeddings\.\d+|not_a_point_embed|no_mask_embed)"
    r"\.weight$|positional_encoding_gaussian_matrix$"
)


def seeded_tensor(key: str, shape: Iterable[int], dtype: str, rng: np.random.RandomState) -> torch.Tensor:
    """One tensor of sensible scale for ``key``: tokens and embeddings ~N(0, 1), norm scales near 1,
    layer scales near 0.5, biases ~N(0, 0.2²), matrices ~N(0, 1 / fan_in)."""
    shape = tuple(int(s) for s in shape)
    if dtype != "torch.float32":
        raise ValueError(f"{key}: unexpected dtype {dtype}")
    noise = rng.standard_normal(shape)
    name = key.rsplit(".", 1)[-1]
    if re.search(_EMBEDDINGS, key):
        values = noise
    elif name == "gamma":
        values = 0.5 + 0.1 * noise
    elif len(shape) == 1 and name == "weight":
        values = 1.0 + 0.1 * noise
    elif len(shape) == 1:
        values = 0.2 * noise
    else:
        values = noise / math.sqrt(max(math.prod(shape[1:]), 1))
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def seeded_state_dict(keys: dict[str, list], seed: int) -> dict[str, torch.Tensor]:
    """Every key of ``keys`` (``{key: [shape, dtype]}``), drawn in sorted key order, returned in
    ``keys``' order: the same listing and seed give bit-identical tensors in both environments."""
    rng = np.random.RandomState(seed)
    drawn = {key: seeded_tensor(key, *keys[key], rng) for key in sorted(keys)}
    return {key: drawn[key] for key in keys}


def make_inputs() -> dict[str, np.ndarray]:
    """Every input of every case, drawn in a fixed order from :data:`INPUT_SEED`."""
    rng = np.random.RandomState(INPUT_SEED)
    side, b, g, m = 16 * HEAD_GRID, 2, HEAD_GRID, MEM_GRID

    def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal(shape)).astype(np.float32)

    x: dict[str, np.ndarray] = {}
    x["points6"] = (rng.random_sample((b, 6, 2)) * side).astype(np.float32)
    x["points6_labels"] = np.array([[-1, 0, 1, 2, 3, 1], [3, 2, 1, 0, -1, 0]], dtype=np.int64)
    x["points3"] = (rng.random_sample((b, 3, 2)) * side).astype(np.float32)
    x["points3_labels"] = np.array([[2, 3, 1], [0, 2, 3]], dtype=np.int64)
    corners = np.sort(rng.random_sample((b, 2, 2)) * side, axis=1)  # (x0, y0) ≤ (x1, y1)
    x["boxes"] = corners.reshape(b, 4).astype(np.float32)
    x["masks"] = normal(b, 1, 4 * g, 4 * g, scale=3.0)
    # mask decoder
    x["image"] = normal(1, D, g, g)
    x["images"] = normal(b, D, g, g)
    x["image_pe"] = normal(1, D, g, g)
    x["sparse"] = normal(b, 5, D)
    x["dense"] = normal(b, D, g, g, scale=0.5)
    x["feat_s0"] = normal(1, D // 8, 4 * g, 4 * g)
    x["feat_s1"] = normal(1, D // 4, 2 * g, 2 * g)
    x["feats_s0"] = normal(b, D // 8, 4 * g, 4 * g)
    x["feats_s1"] = normal(b, D // 4, 2 * g, 2 * g)
    # RoPE attention (batch first)
    x["rope_q"] = normal(b, m * m, D)
    x["rope_k"] = normal(b, m * m, D)
    x["rope_v"] = normal(b, m * m, D)
    x["rope_q_small"] = normal(b, 16, 32)
    x["rope_k_small"] = normal(b, 16, 32)
    x["rope_v_small"] = normal(b, 16, 32)
    x["mem_k"] = normal(b, 3 * m * m + 5, MEM_D)
    x["mem_v"] = normal(b, 3 * m * m + 5, MEM_D)
    x["mem_k2"] = normal(b, 2 * m * m, MEM_D)
    x["mem_v2"] = normal(b, 2 * m * m, MEM_D)
    x["ptr_k"] = normal(b, 4, MEM_D)
    x["ptr_v"] = normal(b, 4, MEM_D)
    # memory attention (sequence first)
    x["curr"] = normal(m * m, b, D)
    x["curr_pos"] = normal(m * m, b, D)
    x["memory_3_8"] = normal(3 * m * m + 8, b, MEM_D)
    x["memory_pos_3_8"] = normal(3 * m * m + 8, b, MEM_D)
    x["memory_2_0"] = normal(2 * m * m, b, MEM_D)
    x["memory_pos_2_0"] = normal(2 * m * m, b, MEM_D)
    # memory encoder
    x["pix_feat"] = normal(b, D, g, g)
    x["mem_masks"] = normal(b, 1, 16 * g, 16 * g, scale=4.0)
    return x


def input_checksums(inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """A float64 sum of each input, to catch a drift of the generator."""
    return {k: float(np.asarray(v, dtype=np.float64).sum()) for k, v in inputs.items()}


def key_listing(model: torch.nn.Module) -> dict[str, list]:
    """``{key: [shape, dtype]}`` of ``model``'s state dict, in its order."""
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


# --- the reference modules ---------------------------------------------------------------------------


def build_reference(name: str) -> torch.nn.Module:
    """The official module of config ``name``."""
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.prompt_encoder import PromptEncoder
    from sam2.modeling.sam.transformer import RoPEAttention, TwoWayTransformer

    cfg = json.loads(json.dumps(CONFIGS[name]))  # a deep copy
    if name == "prompt_encoder":
        cfg["image_embedding_size"] = tuple(cfg["image_embedding_size"])
        cfg["input_image_size"] = tuple(cfg["input_image_size"])
        return PromptEncoder(**cfg)
    if name.startswith("decoder_"):
        return MaskDecoder(transformer=TwoWayTransformer(**cfg.pop("transformer")), **cfg)
    if name.startswith("rope_"):
        return RoPEAttention(**cfg)
    if name.startswith("memattn_"):
        layer = cfg.pop("layer")
        layer["self_attention"] = RoPEAttention(**layer["self_attention"])
        layer["cross_attention"] = RoPEAttention(**layer["cross_attention"])
        return MemoryAttention(layer=MemoryAttentionLayer(**layer), **cfg)
    if name.startswith("memenc_"):
        fuser = cfg.pop("fuser")
        return MemoryEncoder(
            mask_downsampler=MaskDownSampler(**cfg.pop("mask_downsampler")),
            fuser=Fuser(CXBlock(**fuser.pop("layer")), **fuser),
            position_encoding=PositionEmbeddingSine(**cfg.pop("position_encoding")),
            **cfg,
        )
    raise KeyError(name)


def seeded_reference(name: str) -> tuple[torch.nn.Module, dict[str, list]]:
    model = build_reference(name)
    keys = key_listing(model)
    model.load_state_dict(seeded_state_dict(keys, SEEDS[name]), strict=True)
    return model.eval(), keys


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().numpy()


def prompt_encoder_outputs(x: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    model, keys = seeded_reference("prompt_encoder")
    out = {"dense_pe": _np(model.get_dense_pe())}
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    for case, parts in PROMPT_CASES.items():
        points = next(((t[p], t[f"{p}_labels"]) for p in parts if p.startswith("points")), None)
        sparse, dense = model(
            points=points,
            boxes=t["boxes"] if "boxes" in parts else None,
            masks=t["masks"] if "masks" in parts else None,
        )
        out[f"{case}/sparse"], out[f"{case}/dense"] = _np(sparse), _np(dense)
    return out, {"prompt_encoder": keys}


def decoder_inputs(t: dict[str, torch.Tensor], repeat_image: bool) -> dict:
    """The keyword arguments of a decoder call (the high-res features are used only when configured)."""
    suffix = "" if repeat_image else "s"
    return {
        "image_embeddings": t["image"] if repeat_image else t["images"],
        "image_pe": t["image_pe"],
        "sparse_prompt_embeddings": t["sparse"],
        "dense_prompt_embeddings": t["dense"],
        "repeat_image": repeat_image,
        "high_res_features": [t[f"feat{suffix}_s0"], t[f"feat{suffix}_s1"]],
    }


def stability_threshold(scores: torch.Tensor) -> float:
    """A threshold between the smallest and largest of ``scores`` (so both branches are taken)."""
    low, high = float(scores.min()), float(scores.max())
    if not high > low:
        raise RuntimeError(f"the single-mask outputs are equally stable ({low}); change the seed")
    return (low + high) / 2


def mask_decoder_outputs(x: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    out: dict[str, np.ndarray] = {}
    listings = {}
    for name in ("decoder_sam21", "decoder_linear_obj", "decoder_plain"):
        model, listings[name] = seeded_reference(name)
        for case, (multimask, repeat_image) in DECODER_CASES.items():
            args = decoder_inputs(t, repeat_image)
            prefix = f"{name}/{case}"
            if not multimask and model.dynamic_multimask_via_stability:
                all_masks = model.predict_masks(**args)[0]
                scores = model._get_stability_scores(all_masks[:, 0:1])[:, 0]
                model.dynamic_multimask_stability_thresh = stability_threshold(scores)
                out[f"{prefix}/thresh"] = np.array(model.dynamic_multimask_stability_thresh)
                out[f"{prefix}/stable"] = (scores >= model.dynamic_multimask_stability_thresh).numpy()
            masks, iou, tokens, obj = model(multimask_output=multimask, **args)
            out[f"{prefix}/masks"], out[f"{prefix}/iou"] = _np(masks), _np(iou)
            out[f"{prefix}/tokens"], out[f"{prefix}/obj"] = _np(tokens), _np(obj)
    return out, listings


def rope_outputs(x: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    from sam2.modeling.position_encoding import compute_axial_cis

    out: dict[str, np.ndarray] = {}
    for case, (dim, end_x, end_y, theta) in AXIAL_CASES.items():
        cis = compute_axial_cis(dim=dim, end_x=end_x, end_y=end_y, theta=theta)
        out[f"{case}/cos"], out[f"{case}/sin"] = _np(cis.real), _np(cis.imag)
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    models, listings = {}, {}
    for name in ("rope_self", "rope_self_square", "rope_cross"):
        models[name], listings[name] = seeded_reference(name)
    for case, (name, q, k, v, exclude) in ROPE_CASES.items():
        out[f"{case}/out"] = _np(models[name](t[q], t[k], t[v], num_k_exclude_rope=exclude))
    return out, listings


def memory_attention_outputs(x: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    out: dict[str, np.ndarray] = {}
    listings = {}
    for case, (name, frames, pointers) in MEMATTN_CASES.items():
        model, listings[name] = seeded_reference(name)
        result = model(
            curr=t["curr"],
            memory=t[f"memory_{frames}_{pointers}"],
            curr_pos=t["curr_pos"],
            memory_pos=t[f"memory_pos_{frames}_{pointers}"],
            num_obj_ptr_tokens=pointers,
        )
        out[f"{case}/out"] = _np(result)
    return out, listings


def memory_encoder_outputs(x: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict]:
    t = {k: torch.from_numpy(v) for k, v in x.items()}
    out: dict[str, np.ndarray] = {}
    listings = {}
    for case, (name, skip) in MEMENC_CASES.items():
        model, listings[name] = seeded_reference(name)
        result = model(t["pix_feat"], t["mem_masks"], skip_mask_sigmoid=skip)
        out[f"{case}/features"] = _np(result["vision_features"])
        out[f"{case}/pos"] = _np(result["vision_pos_enc"][0])
        masks = t["mem_masks"] if skip else torch.sigmoid(t["mem_masks"])
        out[f"{case}/downsampled"] = _np(model.mask_downsampler(masks))
        out[f"{case}/fused"] = _np(model.fuser(t["pix_feat"]))
    return out, listings


def real_listings() -> dict[str, dict[str, list]]:
    """Key listings of the prompt encoder, mask decoder, memory attention and memory encoder of the
    real sam2.1 tiny model, as ``build_sam2`` makes it."""
    from sam2.build_sam import build_sam2

    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")
    return {
        "sam_prompt_encoder": key_listing(model.sam_prompt_encoder),
        "sam_mask_decoder": key_listing(model.sam_mask_decoder),
        "memory_attention": key_listing(model.memory_attention),
        "memory_encoder": key_listing(model.memory_encoder),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT, help="fixture folder")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs()
    listings: dict[str, dict] = {}
    for stem, make in (
        ("prompt_encoder", prompt_encoder_outputs),
        ("mask_decoder", mask_decoder_outputs),
        ("rope", rope_outputs),
        ("memory_attention", memory_attention_outputs),
        ("memory_encoder", memory_encoder_outputs),
    ):
        arrays, keys = make(inputs)
        listings.update(keys)
        np.savez_compressed(args.out / f"{stem}.npz", **arrays)
        print(f"wrote {stem}.npz ({(args.out / f'{stem}.npz').stat().st_size // 1024} KB)")
    meta = {
        "torch": torch.__version__,
        "input_seed": INPUT_SEED,
        "input_checksums": input_checksums(inputs),
        "modules": {
            name: {"seed": SEEDS[name], "config": CONFIGS[name], "keys": listings[name]} for name in SEEDS
        },
        "sam2.1_hiera_t": real_listings(),
    }
    (args.out / "keys.json").write_text(json.dumps(meta) + "\n")
    print(f"wrote {args.out / 'keys.json'}")


if __name__ == "__main__":
    main()
