"""Generate the parity fixtures from the official ``segment-anything`` package.

Run it in the reference environment (torch + torchvision + segment-anything; see
``scripts/setup_reference_env.sh``), never from the library:

    .venv-ref/bin/python scripts/make_golden.py                 # small configs → tests/fixtures/golden
    .venv-ref/bin/python scripts/make_golden.py --vit-b OUTDIR  # full-size vit_b (slow test, not committed)
    .venv-ref/bin/python scripts/make_golden.py --amg           # automatic mask generator → golden/amg only

Every official module is built with a fixed seed and every parameter is overwritten with seeded random
values (the official initialisation leaves relative positions and positional embeddings at zero, which
would hide bugs). The official ``SamPredictor`` then computes features and masks for a set of prompts.
Coordinates in the fixtures are the official ones: points ``(x, y)``, boxes ``(x0, y0, x1, y1)``.

The automatic-mask-generator fixture (``golden/amg``) runs the official ``SamAutomaticMaskGenerator``
on the shipped nano model (its image encoder is ours, plugged into the official ``Sam``; the prompt
encoder and mask decoder are the official modules with nano's weights) — random weights give
image-wide masks whose boxes all coincide, which would leave nothing for the suppression steps to
decide. Its clean-up case needs OpenCV in the reference environment
(``pip install opencv-python-headless``); without it that case is skipped.
"""

from __future__ import annotations

import argparse
import json
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor, sam_model_registry
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"

# Small architectures covering: window padding (grid 20, window 6), several heads, a global block,
# non-default decoder sizes. Field names are napari_sam.model.SamConfig's.
SMALL_CONFIGS = {
    "small_a": dict(  # noqa: C408
        encoder_embed_dim=64,
        encoder_depth=3,
        encoder_num_heads=4,
        encoder_global_attn_indexes=[1],
        image_size=256,
        patch_size=16,
        window_size=4,
        mlp_ratio=4.0,
        prompt_embed_dim=32,
        mask_in_chans=16,
        decoder_depth=2,
        decoder_num_heads=4,
        decoder_mlp_dim=64,
        decoder_attention_downsample_rate=2,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
        num_multimask_outputs=3,
        original_size=[96, 128],
    ),
    "small_b": dict(  # noqa: C408
        encoder_embed_dim=48,
        encoder_depth=2,
        encoder_num_heads=3,
        encoder_global_attn_indexes=[0],
        image_size=160,
        patch_size=8,
        window_size=6,
        mlp_ratio=2.0,
        prompt_embed_dim=64,
        mask_in_chans=8,
        decoder_depth=2,
        decoder_num_heads=8,
        decoder_mlp_dim=128,
        decoder_attention_downsample_rate=2,
        iou_head_depth=3,
        iou_head_hidden_dim=64,
        num_multimask_outputs=3,
        original_size=[120, 80],
    ),
}


def build_official(cfg: dict) -> Sam:
    grid = cfg["image_size"] // cfg["patch_size"]
    dim = cfg["prompt_embed_dim"]
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=cfg["encoder_depth"],
            embed_dim=cfg["encoder_embed_dim"],
            img_size=cfg["image_size"],
            mlp_ratio=cfg["mlp_ratio"],
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=cfg["encoder_num_heads"],
            patch_size=cfg["patch_size"],
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=cfg["encoder_global_attn_indexes"],
            window_size=cfg["window_size"],
            out_chans=dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(cfg["image_size"], cfg["image_size"]),
            mask_in_chans=cfg["mask_in_chans"],
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=cfg["num_multimask_outputs"],
            transformer=TwoWayTransformer(
                depth=cfg["decoder_depth"],
                embedding_dim=dim,
                mlp_dim=cfg["decoder_mlp_dim"],
                num_heads=cfg["decoder_num_heads"],
                attention_downsample_rate=cfg["decoder_attention_downsample_rate"],
            ),
            transformer_dim=dim,
            iou_head_depth=cfg["iou_head_depth"],
            iou_head_hidden_dim=cfg["iou_head_hidden_dim"],
        ),
    )


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter with seeded values of a sensible scale."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in sorted(model.named_parameters()):
        noise = torch.randn(param.shape, generator=gen)
        if param.ndim == 1 and name.endswith("weight"):  # norm scales
            param.copy_(1.0 + 0.1 * noise)
        elif param.ndim == 1:  # biases
            param.copy_(0.05 * noise)
        elif "pos_embed" in name:
            param.copy_(0.5 * noise)
        else:
            fan_in = math.prod(param.shape[1:]) if param.ndim > 1 else param.shape[0]
            param.copy_(noise / math.sqrt(max(fan_in, 1)))


def run_cases(predictor: SamPredictor, h: int, w: int, low_res_side: int) -> dict[str, np.ndarray]:
    """Official predictions for a fixed set of prompts; returns flat arrays for one npz."""
    rng = np.random.default_rng(7)
    out: dict[str, np.ndarray] = {}

    def record(name, masks, iou, low_res, **prompts):
        out[f"{name}/masks"] = np.asarray(masks, dtype=np.float32)
        out[f"{name}/iou"] = np.asarray(iou, dtype=np.float32)
        out[f"{name}/low_res"] = np.asarray(low_res, dtype=np.float32)
        for key, value in prompts.items():
            out[f"{name}/{key}"] = np.asarray(value)

    def xy(n):
        return np.stack([rng.uniform(0, w - 1, n), rng.uniform(0, h - 1, n)], axis=1).round(1)

    one = xy(1)
    lab1 = np.array([1])
    posneg = xy(3)
    lab3 = np.array([1, 1, 0])
    box = np.array([w * 0.2, h * 0.25, w * 0.7, h * 0.8]).round(1)
    box_pts = np.array([[w * 0.4, h * 0.5], [w * 0.6, h * 0.3]]).round(1)
    lab2 = np.array([1, 0])
    p = partial(predictor.predict, return_logits=True)

    record(
        "point",
        *p(point_coords=one, point_labels=lab1, multimask_output=True),
        points=one,
        labels=lab1,
        multimask=True,
    )
    record(
        "point_single",
        *p(point_coords=one, point_labels=lab1, multimask_output=False),
        points=one,
        labels=lab1,
        multimask=False,
    )
    masks, iou, low = p(point_coords=posneg, point_labels=lab3, multimask_output=True)
    record("points_posneg", masks, iou, low, points=posneg, labels=lab3, multimask=True)
    record("box", *p(box=box, multimask_output=False), box=box, multimask=False)
    record("box_multi", *p(box=box, multimask_output=True), box=box, multimask=True)
    record(
        "box_points",
        *p(point_coords=box_pts, point_labels=lab2, box=box, multimask_output=False),
        points=box_pts,
        labels=lab2,
        box=box,
        multimask=False,
    )
    mask_in = low[int(np.argmax(iou))][None]  # (1, 4g, 4g) logits
    assert mask_in.shape[-1] == low_res_side
    record(
        "mask_input",
        *p(point_coords=posneg, point_labels=lab3, mask_input=mask_in, multimask_output=False),
        points=posneg,
        labels=lab3,
        mask_input=mask_in,
        multimask=False,
    )

    # Several boxes in one decoder call (the official batched path).
    boxes = np.array([box, [0, 0, w * 0.5, h * 0.5], [w * 0.3, h * 0.1, w - 1, h - 1]]).round(1)
    boxes_t = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float), (h, w))
    masks, iou, low = predictor.predict_torch(
        None, None, boxes=boxes_t, multimask_output=False, return_logits=True
    )
    record("batched_boxes", masks.numpy(), iou.numpy(), low.numpy(), boxes=boxes, multimask=False)
    return out


def make_case_file(model: Sam, image: np.ndarray, out_dir: Path, config: dict) -> None:
    h, w = image.shape[:2]
    predictor = SamPredictor(model)
    predictor.set_image(image)
    resized = predictor.transform.apply_image(image)
    arrays = {
        "image": image,
        "resized_image": resized,
        "features": predictor.features.numpy(),
        "input_size": np.array(predictor.input_size),
        "original_size": np.array(predictor.original_size),
        "dense_pe": model.prompt_encoder.get_dense_pe().detach().numpy(),
    }
    arrays.update(run_cases(predictor, h, w, 4 * (config["image_size"] // config["patch_size"])))
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_dir / "cases.npz", **arrays)
    torch.save(model.state_dict(), out_dir / "weights.pth")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def make_small(golden: Path) -> None:
    for index, (name, cfg) in enumerate(SMALL_CONFIGS.items()):
        torch.manual_seed(1000 + index)
        model = build_official(cfg).eval()
        randomize(model, seed=2000 + index)
        h, w = cfg["original_size"]
        rng = np.random.default_rng(3000 + index)
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        config = {k: v for k, v in cfg.items() if k != "original_size"}
        make_case_file(model, image, golden / name, config)
        print(f"wrote {golden / name}")


def make_key_shapes(golden: Path) -> None:
    shapes = {}
    for name in ("vit_b", "vit_l", "vit_h"):
        torch.manual_seed(0)
        model = sam_model_registry[name]()
        shapes[name] = {k: list(v.shape) for k, v in model.state_dict().items()}
        del model
    (golden / "official_key_shapes.json").write_text(json.dumps(shapes, indent=0) + "\n")
    print(f"wrote {golden / 'official_key_shapes.json'}")


def make_vit_b(out_dir: Path, seed: int = 0) -> None:
    """Full-size vit_b with seeded random weights, a 600×800 (rows × cols) image and the same prompt cases."""
    torch.manual_seed(seed)
    model = sam_model_registry["vit_b"]().eval()
    randomize(model, seed=seed + 1)
    rng = np.random.default_rng(seed + 2)
    image = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    config = {"name": "vit_b"}
    config_small = {"image_size": 1024, "patch_size": 16}
    with torch.no_grad():
        make_case_file(model, image, out_dir, {**config, **config_small})
    print(f"wrote {out_dir}")


# Automatic mask generator cases: official generator options (thresholds low enough for the nano
# model's masks to reach the suppression steps); "cleanup" needs OpenCV.
AMG_CASES = {
    "whole": {"points_per_side": 4, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.6},
    "crops": {
        "points_per_side": 4,
        "pred_iou_thresh": 0.5,
        "stability_score_thresh": 0.6,
        "crop_n_layers": 1,
        "crop_n_points_downscale_factor": 2,
        "box_nms_thresh": 0.6,
    },
    "cleanup": {
        "points_per_side": 4,
        "pred_iou_thresh": 0.5,
        "stability_score_thresh": 0.6,
        "min_mask_region_area": 40,
    },
}


def official_nano() -> Sam:
    """The official ``Sam`` with our nano image encoder and nano's weights everywhere."""
    from napari_sam.engine.loading import open_model

    ours = open_model("nano").float().eval()
    official = Sam(
        image_encoder=ours.image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(64, 64), input_image_size=(1024, 1024), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    # the prompt model only: nano's instance decoder (shipped beside it) has no place in the official Sam
    prompt_model = {k: v for k, v in ours.state_dict().items() if not k.startswith("instance_decoder.")}
    official.load_state_dict(prompt_model)
    return official.eval()


def make_amg(golden: Path) -> None:
    """Official automatic masks for a small synthetic nuclei image (uint8 RGB), one npz for all cases."""
    try:
        import cv2  # noqa: F401  (the official clean-up step uses it)

        cases = AMG_CASES
    except ImportError:
        cases = {k: v for k, v in AMG_CASES.items() if "min_mask_region_area" not in v}
        print("OpenCV missing: skipping the AMG clean-up case")
    from napari_sam.data.synthetic import nuclei_2d

    gray, _ = nuclei_2d((112, 144), n_objects=9, diameter=(12.0, 30.0), seed=5, dtype="uint8")
    image = np.repeat(gray[..., None], 3, axis=2)
    model = official_nano()
    arrays: dict[str, np.ndarray] = {"image": image}
    for name, options in cases.items():
        records = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **options).generate(image)
        masks = np.stack([r["segmentation"] for r in records]).astype(bool)
        arrays[f"{name}/packed_masks"] = np.packbits(masks.reshape(len(records), -1), axis=1)
        arrays[f"{name}/predicted_iou"] = np.array([r["predicted_iou"] for r in records], np.float32)
        arrays[f"{name}/stability_score"] = np.array([r["stability_score"] for r in records], np.float32)
        arrays[f"{name}/area"] = np.array([r["area"] for r in records], np.int64)
        arrays[f"{name}/bbox_xywh"] = np.array([r["bbox"] for r in records], np.float64)
        arrays[f"{name}/point_xy"] = np.array([r["point_coords"][0] for r in records], np.float64)
        arrays[f"{name}/crop_xywh"] = np.array([r["crop_box"] for r in records], np.float64)
        print(f"AMG case {name}: {len(records)} masks")
    out = golden / "amg"
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "amg.npz", **arrays)
    (out / "options.json").write_text(json.dumps({k: cases[k] for k in cases}, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=GOLDEN, help="fixture folder (small configs)")
    parser.add_argument(
        "--vit-b", type=Path, metavar="DIR", help="write full-size vit_b fixtures to DIR instead"
    )
    parser.add_argument("--amg", action="store_true", help="only the automatic mask generator fixture")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.vit_b is not None:
        make_vit_b(args.vit_b)
        return
    if args.amg:
        make_amg(args.out)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    make_small(args.out)
    make_key_shapes(args.out)
    make_amg(args.out)


if __name__ == "__main__":
    main()
