"""Generate the SAM 2 model and tracking parity fixtures from the official ``sam2`` package.

Run it in the reference environment (``.venv-ref``, ``sam2`` 1.1.0), never from the library:

    .venv-ref/bin/python scripts/make_sam2_fixtures.py   # → tests/fixtures/sam2/model (committed)

Weights are not committed: :func:`seeded_state_dict` draws every tensor from a seed and the reference's
own key list (``numpy.random.RandomState``, stable across numpy versions), so both environments
recreate bit-identical weights. Frames are drawn the same way (:func:`make_frames`). The folder holds:

- ``tiny_keys.json``: the small model's configuration (``Sam2Config`` fields), its state-dict keys with
  shapes and dtypes in the reference's order, and the seed;
- ``heads.npz``: ``SAM2Base._forward_sam_heads`` (the image path: the frame's features plus the
  no-memory embedding) for point, box, point + box and low-res mask prompts, one and three masks, and
  ``_use_mask_as_output`` for a binary mask (present and empty);
- ``video_<case>.npz`` + ``video_<case>.json``: ``SAM2VideoPredictor`` on 6 frames — the masks returned
  when prompting, then every frame yielded by ``propagate_in_video`` forwards and then in reverse,
  with each object's low-res mask logits and object score logits read from the inference state
  (``absent``: the prompts of ``frame2`` with a lower object-score bias, so that tracked frames lose
  the object);
- ``keys_<size>.json``: the state-dict keys and shapes of the four official sam2.1 sizes (built from
  their yaml files; no weights are kept).

The video predictor gets the frames through a patched ``load_video_frames`` (the very tensors our
tracker sees), built with the official video-predictor overrides (dynamic multimask via stability,
binarised prompt masks for the memory encoder; ``fill_hole_area=8`` needs a CUDA extension that the
CPU build lacks, so the reference skips hole filling, as our tracker does by default).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "sam2" / "model"

#: ``Sam2Config`` fields of the small model (the rest are the sam2.1 defaults). Kept equal to
#: ``napari_sam.model.sam2.configs.tiny_test_config()``.
TINY: dict[str, Any] = {
    "hiera_embed_dim": 16,
    "hiera_num_heads": 1,
    "hiera_stages": [1, 2, 2, 1],
    "hiera_global_att_blocks": [2, 4],
    "hiera_window_spec": [8, 4, 4, 2],
    "hiera_window_pos_embed_bkg_spatial_size": [4, 4],
    "mem_attn_num_layers": 2,
    "mem_attn_dim_feedforward": 256,
    "image_size": 128,
}
SEED = 21
NUM_FRAMES = 6
#: the original video's (height, width): the predictor resizes masks to it
VIDEO_SIZE = (24, 32)
#: added to the object-score head's output bias so that some frames hold the object, some not
OBJ_SCORE_BIAS = 0.2
#: the object-score bias of each video case (``absent``: the tracked frames lose the object)
CASE_BIAS = {"heads": 0.35, "frame2": OBJ_SCORE_BIAS, "multi": OBJ_SCORE_BIAS, "absent": -0.95}
OFFICIAL_SIZES = {
    "sam2.1_hiera_tiny": "sam2.1_hiera_t",
    "sam2.1_hiera_small": "sam2.1_hiera_s",
    "sam2.1_hiera_base_plus": "sam2.1_hiera_b+",
    "sam2.1_hiera_large": "sam2.1_hiera_l",
}

# ----------------------------------------------------------------------------------------------------------
# seeded weights and frames (imported by the tests: no reference code here)


def seeded_tensor(key: str, shape: list[int], dtype: str, rng: np.random.RandomState) -> torch.Tensor:
    """One tensor of sensible scale for ``key``: norm scales near 1, biases near 0, weights ~1/sqrt(fan-in)."""
    shape_t = tuple(int(s) for s in shape)
    if dtype == "torch.int64":
        return torch.zeros(shape_t, dtype=torch.int64)
    noise = rng.standard_normal(shape_t)
    if len(shape_t) == 1 and (key.endswith("weight") or key.endswith("gamma")):
        values = 1.0 + 0.1 * noise  # norm scales, layer scales
    elif len(shape_t) == 1:
        values = 0.05 * noise
    elif len(shape_t) == 0:
        values = noise
    elif key.endswith(("pos_embed", "pos_embed_window", "tpos_enc", "_embed", "pos_enc", "no_obj_ptr")) or (
        "embed_spatial" in key or key.endswith("mask_tokens.weight") or key.endswith("token.weight")
    ):
        values = 0.2 * noise
    else:
        fan_in = math.prod(shape_t[1:])
        values = noise / math.sqrt(max(fan_in, 1))
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def seeded_state_dict(keys: dict[str, list], seed: int, obj_score_bias: float = OBJ_SCORE_BIAS) -> dict:
    """A state dict with every key of ``keys`` (``{key: [shape, dtype]}``), drawn in sorted key order;
    ``obj_score_bias`` is added to the object-score head's last bias."""
    rng = np.random.RandomState(seed)
    drawn = {key: seeded_tensor(key, *keys[key], rng) for key in sorted(keys)}
    bias_key = "sam_mask_decoder.pred_obj_score_head.layers.2.bias"
    if bias_key in drawn:
        drawn[bias_key] = drawn[bias_key] + obj_score_bias
    return {key: drawn[key] for key in keys}


def make_frames(num_frames: int, size: int, seed: int) -> torch.Tensor:
    """``(num_frames, 3, size, size)`` float32 frames, normalised as the predictor does: a bright disk
    drifting over a dim textured background."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    background = rng.random_sample((3, size, size)).astype(np.float32) * 0.3
    frames = []
    for t in range(num_frames):
        cy, cx = size * (0.35 + 0.05 * t), size * (0.4 + 0.04 * t)
        disk = ((yy - cy) ** 2 + (xx - cx) ** 2 <= (size * 0.18) ** 2).astype(np.float32)
        noise = rng.random_sample((3, size, size)).astype(np.float32) * 0.1
        frames.append(np.clip(background + 0.6 * disk[None] + noise, 0.0, 1.0))
    images = torch.from_numpy(np.stack(frames))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (images - mean) / std


def prompt_mask(size: int, frame: int, *, empty: bool = False) -> np.ndarray:
    """A binary ``(size, size)`` mask prompt (a square near the disk of ``frame``), or an empty one."""
    mask = np.zeros((size, size), dtype=bool)
    if not empty:
        cy, cx = int(size * (0.35 + 0.05 * frame)), int(size * (0.4 + 0.04 * frame))
        half = size // 8
        mask[cy - half : cy + half, cx - half : cx + half] = True
    return mask


#: The video cases: per object id, its prompts as (frame, kind, value); coordinates on the video
#: (``VIDEO_SIZE``), as ``add_new_points_or_box`` takes them (x, y); masks at the canvas size.
VIDEO_CASES: dict[str, dict[str, list[list[Any]]]] = {
    # three objects prompted on frame 2 — a click, a box, a mask — tracked both ways
    "frame2": {
        "1": [[2, "points", [[14.0, 10.0]], [1]]],
        "2": [[2, "box", [6.0, 4.0, 22.0, 18.0]]],
        "3": [[2, "mask", False]],
    },
    # prompts on several frames: object 1 on frames 2 and 4, object 2 on frame 3 (its frame 2 is
    # tracked from a future conditioning frame), object 3 is an empty mask (no object)
    "multi": {
        "1": [[2, "points", [[14.0, 10.0], [3.0, 3.0]], [1, 0]], [4, "points", [[18.0, 13.0]], [1]]],
        "2": [[3, "box_points", [5.0, 5.0, 25.0, 20.0], [[12.0, 12.0]], [1]]],
        "3": [[2, "mask", True]],
    },
}
VIDEO_CASES["absent"] = VIDEO_CASES["frame2"]


# ----------------------------------------------------------------------------------------------------------
# the reference (official sam2)


def reference_model(
    config: dict[str, Any], *, video: bool = True, correct_as_cond: bool = False
) -> torch.nn.Module:
    """The official model for ``config`` (``Sam2Config`` fields over the sam2.1 defaults), built from
    its classes as the sam2.1 yaml files compose them, with the official builders' overrides;
    ``correct_as_cond``: the video predictor's ``add_all_frames_to_correct_as_cond``."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    c = {
        "hiera_embed_dim": 96,
        "hiera_num_heads": 1,
        "hiera_stages": [1, 2, 7, 2],
        "hiera_global_att_blocks": [5, 7, 9],
        "hiera_window_spec": [8, 4, 14, 7],
        "hiera_window_pos_embed_bkg_spatial_size": [7, 7],
        "mem_attn_num_layers": 4,
        "mem_attn_dim_feedforward": 2048,
        "image_size": 1024,
    }
    c.update(config)
    d_model, mem_dim = 256, 64
    channels = [c["hiera_embed_dim"] * 2**i for i in range(len(c["hiera_stages"]))][::-1]
    grid = c["image_size"] // 16
    trunk = Hiera(
        embed_dim=c["hiera_embed_dim"],
        num_heads=c["hiera_num_heads"],
        stages=c["hiera_stages"],
        global_att_blocks=c["hiera_global_att_blocks"],
        window_spec=c["hiera_window_spec"],
        window_pos_embed_bkg_spatial_size=c["hiera_window_pos_embed_bkg_spatial_size"],
    )
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(num_pos_feats=d_model, normalize=True, temperature=10000),
        d_model=d_model,
        backbone_channel_list=channels,
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )

    def rope(**extra: Any) -> RoPEAttention:
        return RoPEAttention(
            rope_theta=10000.0,
            feat_sizes=[grid, grid],
            embedding_dim=d_model,
            num_heads=1,
            downsample_rate=1,
            dropout=0.1,
            **extra,
        )

    layer = MemoryAttentionLayer(
        activation="relu",
        dim_feedforward=c["mem_attn_dim_feedforward"],
        dropout=0.1,
        pos_enc_at_attn=False,
        self_attention=rope(),
        d_model=d_model,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=rope(rope_k_repeat=True, kv_in_dim=mem_dim),
    )
    memory_attention = MemoryAttention(
        d_model=d_model, pos_enc_at_input=True, layer=layer, num_layers=c["mem_attn_num_layers"]
    )
    memory_encoder = MemoryEncoder(
        out_dim=mem_dim,
        position_encoding=PositionEmbeddingSine(num_pos_feats=mem_dim, normalize=True, temperature=10000),
        mask_downsampler=MaskDownSampler(kernel_size=3, stride=2, padding=1),
        fuser=Fuser(
            layer=CXBlock(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
            num_layers=2,
        ),
    )
    kwargs: dict[str, Any] = {
        "image_encoder": ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        "memory_attention": memory_attention,
        "memory_encoder": memory_encoder,
        "num_maskmem": 7,
        "image_size": c["image_size"],
        "sigmoid_scale_for_mem_enc": 20.0,
        "sigmoid_bias_for_mem_enc": -10.0,
        "use_mask_input_as_output_without_sam": True,
        "directly_add_no_mem_embed": True,
        "no_obj_embed_spatial": True,
        "use_high_res_features_in_sam": True,
        "multimask_output_in_sam": True,
        "iou_prediction_use_sigmoid": True,
        "use_obj_ptrs_in_encoder": True,
        "add_tpos_enc_to_obj_ptrs": True,
        "proj_tpos_enc_in_obj_ptrs": True,
        "use_signed_tpos_enc_to_obj_ptrs": True,
        "only_obj_ptrs_in_the_past_for_eval": True,
        "pred_obj_scores": True,
        "pred_obj_scores_mlp": True,
        "fixed_no_obj_ptr": True,
        "multimask_output_for_tracking": True,
        "use_multimask_token_for_obj_ptr": True,
        "multimask_min_pt_num": 0,
        "multimask_max_pt_num": 1,
        "use_mlp_for_obj_ptr_proj": True,
        "sam_mask_decoder_extra_args": {
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
    }
    if video:
        # the video builder's overrides; fill_hole_area needs sam2's CUDA extension (skipped on CPU)
        model = SAM2VideoPredictor(
            binarize_mask_from_pts_for_mem_enc=True,
            fill_hole_area=0,
            add_all_frames_to_correct_as_cond=correct_as_cond,
            **kwargs,
        )
        _float_memory(model)
    else:
        from sam2.modeling.sam2_base import SAM2Base

        model = SAM2Base(**kwargs)
    return model.eval()


def _float_memory(model: torch.nn.Module) -> None:
    """Give the memory attention float32 memories.

    The predictor stores memory features in bfloat16; concatenated with the float32 object pointers
    they come back as float32, but a frame without any pointer (tracked from a future conditioning
    frame only) hands bfloat16 to float32 layers, which fails outside CUDA autocast. Upcasting is
    exact, and a no-op wherever the concatenation already did it.
    """
    attention = model.memory_attention
    forward = attention.forward

    def float_forward(*args: Any, **kwargs: Any) -> torch.Tensor:
        kwargs["memory"] = kwargs["memory"].float()
        kwargs["memory_pos"] = kwargs["memory_pos"].float()
        return forward(*args, **kwargs)

    attention.forward = float_forward


def key_listing(model: torch.nn.Module) -> dict[str, list]:
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


def seeded_reference(
    config: dict[str, Any],
    seed: int,
    obj_score_bias: float = OBJ_SCORE_BIAS,
    *,
    correct_as_cond: bool = False,
) -> tuple[torch.nn.Module, dict[str, list]]:
    model = reference_model(config, correct_as_cond=correct_as_cond)
    keys = key_listing(model)
    model.load_state_dict(seeded_state_dict(keys, seed, obj_score_bias), strict=True)
    return model.eval(), keys


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def heads_cases(model: torch.nn.Module, frames: torch.Tensor) -> dict[str, np.ndarray]:
    """The image path on frame 0: ``_forward_sam_heads`` with the no-memory embedding added."""
    backbone = model.forward_image(frames[:1])
    _, feats, _, sizes = model._prepare_backbone_features(backbone)
    b, c = feats[-1].shape[1], feats[-1].shape[2]
    h, w = sizes[-1]
    image = (feats[-1] + model.no_mem_embed).permute(1, 2, 0).reshape(b, c, h, w)
    high_res = [
        x.permute(1, 2, 0).reshape(b, x.shape[2], *s) for x, s in zip(feats[:-1], sizes[:-1], strict=True)
    ]
    size = model.image_size
    rng = np.random.RandomState(SEED + 7)
    # a sample of the inputs, to tell encoder differences from head differences
    out: dict[str, np.ndarray] = {"image_embed_sub": _np(image[:, ::8])}
    low_res_mask = torch.from_numpy(rng.standard_normal((1, 1, size // 4, size // 4)).astype(np.float32))
    cases: dict[str, tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]] = {
        "point": (torch.tensor([[[50.0, 40.0]]]), torch.tensor([[1]], dtype=torch.int32), None),
        "points": (
            torch.tensor([[[50.0, 40.0], [90.0, 100.0], [10.0, 120.0]]]),
            torch.tensor([[1, 0, 1]], dtype=torch.int32),
            None,
        ),
        "box": (
            torch.tensor([[[20.0, 30.0], [90.0, 100.0]]]),
            torch.tensor([[2, 3]], dtype=torch.int32),
            None,
        ),
        "box_point": (
            torch.tensor([[[20.0, 30.0], [90.0, 100.0], [60.0, 64.0]]]),
            torch.tensor([[2, 3, 0]], dtype=torch.int32),
            None,
        ),
        "point_mask": (torch.tensor([[[50.0, 40.0]]]), torch.tensor([[1]], dtype=torch.int32), low_res_mask),
        "mask_only": (None, None, low_res_mask),
    }
    for name, (coords, labels, mask) in cases.items():
        points = None if coords is None else {"point_coords": coords, "point_labels": labels}
        for multimask in (False, True):
            result = model._forward_sam_heads(
                backbone_features=image,
                point_inputs=points,
                mask_inputs=mask,
                high_res_features=high_res,
                multimask_output=multimask,
            )
            tag = f"{name}_{'multi' if multimask else 'single'}"
            names = ("low_res_multimasks", "ious", "low_res_masks", "obj_ptr", "object_score_logits")
            for field, value in zip(
                names, (result[0], result[2], result[3], result[5], result[6]), strict=True
            ):
                out[f"{tag}/{field}"] = _np(value)
            if multimask:
                out[f"{tag}/high_res_masks_sub"] = _np(result[4][..., ::4, ::4])
    for name, empty in (("as_output", False), ("as_output_empty", True)):
        mask = torch.from_numpy(prompt_mask(size, 0, empty=empty))[None, None].float()
        result = model._use_mask_as_output(image, high_res, mask)
        names = ("low_res_masks", "ious", "obj_ptr", "object_score_logits")
        for field, value in zip(names, (result[3], result[2], result[5], result[6]), strict=True):
            out[f"{name}/{field}"] = _np(value)
    return out


def video_case(model: torch.nn.Module, frames: torch.Tensor, case: str) -> tuple[dict[str, np.ndarray], dict]:
    """Run the official video predictor on ``frames`` with the prompts of ``VIDEO_CASES[case]``."""
    import sam2.sam2_video_predictor as vp

    height, width = VIDEO_SIZE
    vp.load_video_frames = lambda **kwargs: (frames.clone(), height, width)
    state = model.init_state(video_path="frames-in-memory")
    arrays: dict[str, np.ndarray] = {}
    prompts = VIDEO_CASES[case]
    size = model.image_size
    order = []
    for obj_id, obj_prompts in prompts.items():
        for prompt in obj_prompts:
            frame, kind = prompt[0], prompt[1]
            if kind == "points":
                _, _, masks = model.add_new_points_or_box(
                    state, frame_idx=frame, obj_id=int(obj_id), points=prompt[2], labels=prompt[3]
                )
            elif kind == "box":
                _, _, masks = model.add_new_points_or_box(
                    state, frame_idx=frame, obj_id=int(obj_id), box=prompt[2]
                )
            elif kind == "box_points":
                _, _, masks = model.add_new_points_or_box(
                    state,
                    frame_idx=frame,
                    obj_id=int(obj_id),
                    box=prompt[2],
                    points=prompt[3],
                    labels=prompt[4],
                )
            else:
                mask = prompt_mask(size, frame, empty=prompt[2])
                _, _, masks = model.add_new_mask(state, frame_idx=frame, obj_id=int(obj_id), mask=mask)
            arrays[f"prompt_{len(order)}/video_masks"] = _np(masks)
            order.append([int(obj_id), frame])
    yields = _yields(model, state, arrays, "yield_")
    meta = {"prompts": prompts, "prompt_order": order, "yields": yields, "video_size": list(VIDEO_SIZE)}
    return arrays, meta


#: Correction clicks on tracked frames (``video_correct``): after both passes from the prompts of
#: frame 2, object 1 is corrected on frame 4 (reached going forwards) with a positive and a negative
#: click, object 2 on frame 0 (reached in reverse) with one click; then both passes run again. The
#: predictor keeps corrected frames as conditioning frames (``add_all_frames_to_correct_as_cond``),
#: so that a correction lasts through the next propagation.
CORRECTION_CASE: dict[str, Any] = {
    "prompts": {"1": [[2, "points", [[14.0, 10.0]], [1]]], "2": [[2, "box", [6.0, 4.0, 22.0, 18.0]]]},
    "corrections": [[1, 4, [[16.0, 12.0], [10.0, 8.0]], [1, 0]], [2, 0, [[13.0, 9.0]], [1]]],
}


def _yields(model: torch.nn.Module, state: dict, arrays: dict[str, np.ndarray], prefix: str) -> list[dict]:
    """Both passes of ``propagate_in_video``: each yield's video masks, low-res logits and scores."""
    yields = []
    for reverse in (False, True):
        for frame, obj_ids, masks in model.propagate_in_video(state, reverse=reverse):
            tag = f"{prefix}{len(yields)}"
            arrays[f"{tag}/video_masks"] = _np(masks)
            low, scores = [], []
            for obj_idx in range(len(obj_ids)):
                outputs = state["output_dict_per_obj"][obj_idx]
                out = outputs["cond_frame_outputs"].get(frame) or outputs["non_cond_frame_outputs"][frame]
                low.append(out["pred_masks"])
                scores.append(out["object_score_logits"])
            arrays[f"{tag}/low_res_masks"] = _np(torch.cat(low))
            arrays[f"{tag}/object_score_logits"] = _np(torch.cat(scores))
            yields.append({"frame": int(frame), "reverse": reverse, "obj_ids": [int(i) for i in obj_ids]})
    return yields


def correction_case(model: torch.nn.Module, frames: torch.Tensor) -> tuple[dict[str, np.ndarray], dict]:
    """:data:`CORRECTION_CASE` on the official predictor (built with ``correct_as_cond=True``)."""
    import sam2.sam2_video_predictor as vp

    height, width = VIDEO_SIZE
    vp.load_video_frames = lambda **kwargs: (frames.clone(), height, width)
    state = model.init_state(video_path="frames-in-memory")
    arrays: dict[str, np.ndarray] = {}
    model.add_new_points_or_box(state, frame_idx=2, obj_id=1, points=[[14.0, 10.0]], labels=[1])
    model.add_new_points_or_box(state, frame_idx=2, obj_id=2, box=[6.0, 4.0, 22.0, 18.0])
    first = _yields(model, state, arrays, "first_")
    for index, (obj_id, frame, points, labels) in enumerate(CORRECTION_CASE["corrections"]):
        _, _, masks = model.add_new_points_or_box(
            state, frame_idx=frame, obj_id=obj_id, points=points, labels=labels
        )
        obj_idx = state["obj_id_to_idx"][obj_id]
        out = state["temp_output_dict_per_obj"][obj_idx]["cond_frame_outputs"][frame]
        arrays[f"correction_{index}/video_masks"] = _np(masks)
        arrays[f"correction_{index}/low_res_masks"] = _np(out["pred_masks"])
        arrays[f"correction_{index}/object_score_logits"] = _np(out["object_score_logits"])
    second = _yields(model, state, arrays, "second_")
    meta = {**CORRECTION_CASE, "first": first, "second": second, "video_size": list(VIDEO_SIZE)}
    return arrays, meta


def official_keys(size: str) -> dict[str, list]:
    """Keys and shapes of an official sam2.1 size, built from its yaml file."""
    import sam2  # noqa: F401  (registers the config module with hydra)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=f"configs/sam2.1/{OFFICIAL_SIZES[size]}.yaml")
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)  # Hiera's init cannot run on the meta device
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def main() -> None:
    import sys

    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    if sys.argv[1:] == ["--correct-only"]:  # add the correction case without rewriting the others
        with torch.no_grad():
            frames = make_frames(NUM_FRAMES, TINY["image_size"], SEED)
            model, _ = seeded_reference(TINY, SEED, OBJ_SCORE_BIAS, correct_as_cond=True)
            arrays, meta = correction_case(model, frames)
        meta["obj_score_bias"] = OBJ_SCORE_BIAS
        np.savez(OUT / "video_correct.npz", **arrays)
        (OUT / "video_correct.json").write_text(json.dumps(meta, indent=1))
        return
    with torch.no_grad():
        model, keys = seeded_reference(TINY, SEED)
        (OUT / "tiny_keys.json").write_text(json.dumps({"config": TINY, "seed": SEED, "keys": keys}))
        frames = make_frames(NUM_FRAMES, TINY["image_size"], SEED)
        heads_model, _ = seeded_reference(TINY, SEED, CASE_BIAS["heads"])  # the object present
        np.savez(OUT / "heads.npz", obj_score_bias=CASE_BIAS["heads"], **heads_cases(heads_model, frames))
        for case in VIDEO_CASES:
            model, _ = seeded_reference(TINY, SEED, CASE_BIAS[case])
            arrays, meta = video_case(model, frames, case)
            meta["obj_score_bias"] = CASE_BIAS[case]
            np.savez(OUT / f"video_{case}.npz", **arrays)
            (OUT / f"video_{case}.json").write_text(json.dumps(meta, indent=1))
        model, _ = seeded_reference(TINY, SEED, OBJ_SCORE_BIAS, correct_as_cond=True)
        arrays, meta = correction_case(model, frames)
        meta["obj_score_bias"] = OBJ_SCORE_BIAS
        np.savez(OUT / "video_correct.npz", **arrays)
        (OUT / "video_correct.json").write_text(json.dumps(meta, indent=1))
    for size in OFFICIAL_SIZES:
        (OUT / f"keys_{size}.json").write_text(json.dumps(official_keys(size)))
    for path in sorted(OUT.iterdir()):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
