"""Generate the vit_t (MobileSAM TinyViT) parity fixtures from the MobileSAM reference package.

Run it in the reference environment (``.venv-ref``, with ``pip install mobilesam-mirror timm``; the import
name is ``mobile_sam``), never from the library:

    .venv-ref/bin/python scripts/make_vit_t_fixtures.py             # → tests/fixtures/vit_t (committed)
    .venv-ref/bin/python scripts/make_vit_t_fixtures.py --full DIR  # full-size vit_t (slow test)

Weights are not committed: every tensor is drawn by :func:`seeded_state_dict` from a seed and the
reference's own key list (``numpy.random.RandomState``, whose stream numpy keeps stable), so both
environments recreate bit-identical weights. The committed folder holds, per case:

- ``<case>_keys.json``: the reference's state-dict keys in order, with shapes and dtypes, and the seed;
- ``<case>.npz``: the input image, the reference's encoder features and its predictions for a set of
  prompts (the cases of ``make_golden.py``; coordinates are the official ``(x, y)`` ones).

Cases:

- ``small``: a reduced TinyViT on a 256 canvas (16×16 embedding; windows 5, 6, 4 so that two stages pad
  and one does not) with the standard decoder; full features and every prompt case. MobileSAM's
  ``TinyViT.forward_features`` hard-codes the 64×64 grid of its 1024 canvas, so this case reshapes to
  the real grid instead (the one line changed; every module is the reference's).
- ``vit_t``: MobileSAM's ``build_sam_vit_t()`` itself (1024 canvas, 64×64 embedding) on a 120×160 image:
  every 8th feature row and column, and the masks and scores of three prompt cases (low-res logits are
  left out to keep the folder small).

``--full DIR`` writes the full-size case for the slow test, not committed: ``weights.pt`` (a plain state
dict like ``mobile_sam.pt``), a 600×800 image, full features and every prompt case with low-res logits.

MobileSAM caches each attention layer's bias table when the model is put in eval mode; the model is put in
eval mode again after its weights are written (as MobileSAM's own example does after loading), so the
table holds the weights' biases.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import types
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "vit_t"

#: The reduced case: SamConfig fields (napari_sam names). The last width must stay 320: MobileSAM keeps
#: the grid in the last merge only for widths 320 / 448 / 576.
SMALL = {
    "encoder_type": "tiny_vit",
    "encoder_embed_dim": 320,
    "encoder_depth": 6,
    "encoder_num_heads": 5,
    "encoder_global_attn_indexes": [],
    "encoder_widths": [32, 64, 96, 320],
    "encoder_stage_depths": [1, 2, 2, 1],
    "encoder_stage_heads": [2, 3, 5],
    "encoder_stage_windows": [5, 6, 4],
    "encoder_num_classes": 10,
    "image_size": 256,
    "patch_size": 16,
}
SEEDS = {"small": 11, "vit_t": 12, "full": 13}
#: (rows, cols) of each case's image
IMAGE_SHAPES = {"small": (64, 80), "vit_t": (120, 160), "full": (600, 800)}
VIT_T_CASES = ("point", "box", "box_points")
VIT_T_FEATURE_STEP = 8


def seeded_tensor(key: str, shape: Iterable[int], dtype: str, rng: np.random.RandomState) -> torch.Tensor:
    """One tensor of sensible scale for ``key`` (norm scales near 1, biases near 0, …).

    The reference's initialisation leaves attention biases at zero and batch norms at the identity,
    which would hide bugs; these values do not.
    """
    shape = tuple(int(s) for s in shape)
    if dtype == "torch.int64":  # batch norm's num_batches_tracked
        return torch.zeros(shape, dtype=torch.int64)
    if key.endswith("running_var"):
        values = 0.5 + rng.random_sample(shape)
    else:
        noise = rng.standard_normal(shape)
        if key.endswith("running_mean"):
            values = 0.1 * noise
        elif len(shape) == 1 and key.endswith("weight"):  # norm scales
            values = 1.0 + 0.1 * noise
        elif len(shape) == 1:  # biases
            values = 0.05 * noise
        elif key.endswith("attention_biases"):
            values = 0.5 * noise
        else:
            fan_in = math.prod(shape[1:])
            values = noise / math.sqrt(max(fan_in, 1))
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def seeded_state_dict(keys: dict[str, list], seed: int) -> dict[str, torch.Tensor]:
    """A state dict with every key of ``keys`` (``{key: [shape, dtype]}``), drawn in sorted key order.

    Used by this script and by ``tests/model/test_vit_t.py``: the same ``keys`` and ``seed`` give
    bit-identical tensors in both environments.
    """
    rng = np.random.RandomState(seed)
    drawn = {key: seeded_tensor(key, *keys[key], rng) for key in sorted(keys)}
    return {key: drawn[key] for key in keys}


def key_listing(model: torch.nn.Module) -> dict[str, list]:
    """``{key: [shape, dtype]}`` of ``model``'s state dict, in its order."""
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


def _grid_forward_features(self, x):  # MobileSAM's forward_features with the real grid, not 64
    side = x.shape[-1] // 16
    x = self.patch_embed(x)
    for layer in self.layers:
        x = layer(x)
    b, _, c = x.shape
    return self.neck(x.view(b, side, side, c).permute(0, 3, 1, 2))


def build_small():
    """The reduced MobileSAM model of :data:`SMALL` (reference modules, default decoder)."""
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TinyViT, TwoWayTransformer

    size = SMALL["image_size"]
    encoder = TinyViT(
        img_size=size,
        in_chans=3,
        num_classes=SMALL["encoder_num_classes"],
        embed_dims=SMALL["encoder_widths"],
        depths=SMALL["encoder_stage_depths"],
        num_heads=[1, *SMALL["encoder_stage_heads"]],  # stage 1 is convolutional: no heads
        window_sizes=[7, *SMALL["encoder_stage_windows"]],
        mlp_ratio=4.0,
        drop_rate=0.0,
        drop_path_rate=0.0,
    )
    encoder.forward_features = types.MethodType(_grid_forward_features, encoder)
    grid = size // SMALL["patch_size"]
    return Sam(
        image_encoder=encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256, image_embedding_size=(grid, grid), input_image_size=(size, size), mask_in_chans=16
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )


def build_vit_t():
    from mobile_sam import sam_model_registry

    return sam_model_registry["vit_t"]()


def seeded_model(model: torch.nn.Module, seed: int) -> dict[str, list]:
    """Write seeded weights into the reference ``model`` (strictly), put it in eval mode, return its keys."""
    keys = key_listing(model)
    model.load_state_dict(seeded_state_dict(keys, seed), strict=True)
    model.eval()  # MobileSAM refreshes its cached attention-bias tables here
    return keys


def predictions(model: torch.nn.Module, image: np.ndarray) -> dict[str, np.ndarray]:
    """The reference's features and predictions for ``make_golden.py``'s prompt cases."""
    from mobile_sam import SamPredictor

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_golden import run_cases

    predictor = SamPredictor(model)
    predictor.set_image(image)
    h, w = image.shape[:2]
    arrays = {
        "image": image,
        "features": predictor.features.numpy(),
        "input_size": np.array(predictor.input_size),
        "original_size": np.array(predictor.original_size),
    }
    low_res_side = 4 * predictor.features.shape[-1]
    arrays.update(run_cases(predictor, h, w, low_res_side))
    return arrays


def _image(case: str) -> np.ndarray:
    rng = np.random.default_rng(SEEDS[case] + 100)
    return rng.integers(0, 256, (*IMAGE_SHAPES[case], 3), dtype=np.uint8)


def write_case(out: Path, case: str, model: torch.nn.Module, arrays: dict[str, np.ndarray], keys) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / f"{case}.npz", **arrays)
    listing = {"seed": SEEDS[case], "keys": keys}
    if case == "small":
        listing["config"] = SMALL
    (out / f"{case}_keys.json").write_text(json.dumps(listing) + "\n")
    print(f"wrote {out / case}.npz and {case}_keys.json")


def make_committed(out: Path) -> None:
    model = build_small()
    keys = seeded_model(model, SEEDS["small"])
    write_case(out, "small", model, predictions(model, _image("small")), keys)

    model = build_vit_t()
    keys = seeded_model(model, SEEDS["vit_t"])
    arrays = predictions(model, _image("vit_t"))
    kept = {k: v for k, v in arrays.items() if "/" not in k or k.split("/")[0] in VIT_T_CASES}
    kept = {k: v for k, v in kept.items() if not k.endswith("/low_res")}
    step = VIT_T_FEATURE_STEP
    kept["features"] = np.ascontiguousarray(arrays["features"][..., ::step, ::step])
    kept["feature_step"] = np.array(step)
    write_case(out, "vit_t", model, kept, keys)


def make_full(out: Path) -> None:
    model = build_vit_t()
    seeded_model(model, SEEDS["full"])
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "cases.npz", **predictions(model, _image("full")))
    torch.save(model.state_dict(), out / "weights.pt")
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT, help="committed fixture folder")
    parser.add_argument("--full", type=Path, metavar="DIR", help="write the full-size case to DIR instead")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.full is not None:
        make_full(args.full)
    else:
        make_committed(args.out)


if __name__ == "__main__":
    main()
