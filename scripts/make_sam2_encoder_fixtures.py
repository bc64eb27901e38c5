"""Generate the SAM 2 image-encoder (Hiera + FPN neck) parity fixtures from the official ``sam2`` package.

Run it in the reference environment (``.venv-ref``, with ``sam2`` 1.1.0), never from the library:

    .venv-ref/bin/python scripts/make_sam2_encoder_fixtures.py              # → tests/fixtures/sam2/encoder
    .venv-ref/bin/python scripts/make_sam2_encoder_fixtures.py --benchmark  # ours vs official, tiny, 1024²

Weights are not committed: every tensor is drawn by :func:`seeded_state_dict` from a seed and the official
module's own key list (``numpy.random.RandomState``, whose stream numpy keeps stable), and so are the input
images (:func:`seeded_image`), so both environments recreate them bit for bit. The committed folder holds:

- ``official_keys.json``: for each SAM 2.1 size (``t``, ``s``, ``b+``, ``l``) the image encoder's
  hyperparameters as its config file gives them (the trunk's and the neck's arguments, ``scalp``) and the
  ``image_encoder.*`` state-dict keys, in order, with shapes, of the whole official model built from that
  config (no weights);
- ``<case>_keys.json`` + ``<case>.npz`` for the reduced cases below: the case's config, seed and key listing,
  and the official outputs.

Cases (official modules built directly from their classes, float32, CPU, eval mode):

- ``small``: a reduced Hiera (embed_dim 8, stages [1, 2, 4, 2], global blocks 4 and 6; windows 8, 6, 6, 3 so
  that windows pad, pooled windows pad and crop, and the last stage pads) with the SAM 2.1 neck (nearest
  top-down on levels 2, 3; scalp 1) on a batch of two 64×96 images. Stored: the trunk's four outputs, the
  kept ``backbone_fpn`` levels, and the ``vision_pos_enc`` levels of the first image (the encoding does not
  depend on the image).
- ``small_bilinear``: the same trunk shape with the other neck options (bilinear top-down on every level,
  ``avg`` fusion, no scalp, d_model 8); the first image's outputs.
- ``tiny_1024``: the official SAM 2.1 tiny encoder (its config) on one 1024² image; every 16th channel of
  16×16 evenly spaced positions of each ``backbone_fpn`` level, and of the coarsest ``vision_pos_enc`` level.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "sam2" / "encoder"
SIZES = ("t", "s", "b+", "l")

#: Reduced trunk shared by the two small cases (official ``Hiera`` argument names).
SMALL_TRUNK = {
    "embed_dim": 8,
    "num_heads": 1,
    "stages": [1, 2, 4, 2],
    "global_att_blocks": [4, 6],
    "window_spec": [8, 6, 6, 3],
    "window_pos_embed_bkg_spatial_size": [7, 7],
}
#: The case configs: trunk and neck arguments (official names), ``scalp``, the input batch shape.
CASES = {
    "small": {
        "trunk": SMALL_TRUNK,
        "neck": {
            "d_model": 16,
            "backbone_channel_list": [64, 32, 16, 8],
            "fpn_top_down_levels": [2, 3],
            "fpn_interp_model": "nearest",
        },
        "position_encoding": {"num_pos_feats": 16, "normalize": True, "scale": None, "temperature": 10000},
        "scalp": 1,
        "input_shape": [2, 3, 64, 96],
    },
    "small_bilinear": {
        "trunk": SMALL_TRUNK,
        "neck": {
            "d_model": 8,
            "backbone_channel_list": [64, 32, 16, 8],
            "fpn_top_down_levels": None,
            "fpn_interp_model": "bilinear",
            "fuse_type": "avg",
        },
        "position_encoding": {"num_pos_feats": 8, "normalize": True, "scale": None, "temperature": 10000},
        "scalp": 0,
        "input_shape": [2, 3, 64, 96],
    },
}
SEEDS = {"small": 21, "small_bilinear": 22, "tiny_1024": 23}
TINY_STEP = {"channels": 16, "positions": 16}


def seeded_tensor(key: str, shape: Iterable[int], rng: np.random.RandomState) -> torch.Tensor:
    """One float32 tensor of sensible scale for ``key``: norm scales near 1, biases near 0, position
    embeddings of unit order, weights scaled by their fan-in (so activations stay of order 1)."""
    shape = tuple(int(s) for s in shape)
    noise = rng.standard_normal(shape)
    if "pos_embed" in key:
        values = 0.5 * noise
    elif len(shape) == 1 and key.endswith("weight"):  # layer-norm scales
        values = 1.0 + 0.1 * noise
    elif len(shape) == 1:  # biases
        values = 0.05 * noise
    else:
        values = noise / math.sqrt(max(math.prod(shape[1:]), 1))
    return torch.from_numpy(np.asarray(values, dtype=np.float32))


def seeded_state_dict(keys: dict[str, list], seed: int) -> dict[str, torch.Tensor]:
    """A state dict with every key of ``keys`` (``{key: [shape, dtype]}``), drawn in sorted key order.

    Used by this script and by ``tests/model/sam2/test_image_encoder.py``: the same ``keys`` and ``seed``
    give bit-identical tensors in both environments.
    """
    rng = np.random.RandomState(seed)
    drawn = {key: seeded_tensor(key, keys[key][0], rng) for key in sorted(keys)}
    return {key: drawn[key] for key in keys}


def seeded_image(shape: Iterable[int], seed: int) -> torch.Tensor:
    """A float32 ``(B, 3, H, W)`` batch of standard-normal pixels (a normalised image's scale)."""
    rng = np.random.RandomState(seed + 1000)
    return torch.from_numpy(rng.standard_normal(tuple(shape)).astype(np.float32))


def key_listing(model: torch.nn.Module) -> dict[str, list]:
    """``{key: [shape, dtype]}`` of ``model``'s state dict, in its order."""
    return {k: [list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()}


def tiny_positions(side: int) -> np.ndarray:
    """The ``TINY_STEP['positions']`` evenly spaced rows (= columns) kept of a ``side``-long level."""
    count = TINY_STEP["positions"]
    step = side // count
    return np.arange(step // 2, side, step)[:count]


def subsample(level: np.ndarray) -> np.ndarray:
    """Every 16th channel of the 16×16 kept positions of a ``(B, C, S, S)`` level."""
    rows = tiny_positions(level.shape[-1])
    kept = level[:, :: TINY_STEP["channels"]][:, :, rows][:, :, :, rows]
    return np.ascontiguousarray(kept)


def build_official_encoder(case: dict):
    """The official ``ImageEncoder`` of a case config (modules built from their classes)."""
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine

    neck = FpnNeck(position_encoding=PositionEmbeddingSine(**case["position_encoding"]), **case["neck"])
    return ImageEncoder(trunk=Hiera(**case["trunk"]), neck=neck, scalp=case["scalp"])


def official_config(size: str) -> dict:
    """The image-encoder part of ``sam2.1_hiera_<size>.yaml`` as a case config (no input shape)."""
    import sam2
    from omegaconf import OmegaConf

    path = Path(sam2.__file__).parent / "configs" / "sam2.1" / f"sam2.1_hiera_{size}.yaml"
    node = OmegaConf.to_container(OmegaConf.load(path).model.image_encoder)
    strip = {"_target_"}
    neck = {k: v for k, v in node["neck"].items() if k not in strip | {"position_encoding"}}
    position = {k: v for k, v in node["neck"]["position_encoding"].items() if k not in strip}
    trunk = {k: v for k, v in node["trunk"].items() if k not in strip}
    return {"trunk": trunk, "neck": neck, "position_encoding": position, "scalp": node["scalp"]}


def official_model_keys(size: str) -> dict[str, list]:
    """``image_encoder.*`` keys and shapes of the whole official SAM 2.1 model of ``size`` (built on the CPU:
    the official Hiera cannot be built on the meta device)."""
    import sam2
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    path = Path(sam2.__file__).parent / "configs" / "sam2.1" / f"sam2.1_hiera_{size}.yaml"
    model = instantiate(OmegaConf.load(path).model, _recursive_=True)
    return {k: v for k, v in key_listing(model).items() if k.startswith("image_encoder.")}


def run_case(encoder: torch.nn.Module, keys: dict[str, list], seed: int, shape: list[int]):
    """Load seeded weights strictly, run the seeded image; returns the trunk outputs and the encoder's."""
    encoder.load_state_dict(seeded_state_dict(keys, seed), strict=True)
    encoder.eval()
    image = seeded_image(shape, seed)
    trunk = [t.numpy() for t in encoder.trunk(image)]
    out = encoder(image)
    if out["vision_features"] is not out["backbone_fpn"][-1]:
        raise AssertionError("vision_features is expected to be the last backbone_fpn level")
    fpn = [t.numpy() for t in out["backbone_fpn"]]
    pos = [t.numpy() for t in out["vision_pos_enc"]]
    for level in pos:  # the encoding depends on the grid only: storing one image's is enough
        np.testing.assert_array_equal(level[0], level[-1])
    return trunk, fpn, pos


def write_json(out: Path, name: str, listing: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(listing) + "\n")
    print(f"wrote {out / name}.json")


def make_small(out: Path) -> None:
    for name, case in CASES.items():
        encoder = build_official_encoder(case)
        keys = key_listing(encoder)
        trunk, fpn, pos = run_case(encoder, keys, SEEDS[name], case["input_shape"])
        first = slice(None) if name == "small" else slice(0, 1)  # the variant keeps the first image only
        arrays = {f"trunk/{i}": t[first] for i, t in enumerate(trunk)} if name == "small" else {}
        arrays.update({f"backbone_fpn/{i}": f[first] for i, f in enumerate(fpn)})
        arrays.update({f"vision_pos_enc/{i}": p[:1] for i, p in enumerate(pos)})
        write_json(out, f"{name}_keys", {"seed": SEEDS[name], "config": case, "keys": keys})
        np.savez_compressed(out / f"{name}.npz", **arrays)
        print(f"wrote {out / name}.npz")


def make_official(out: Path) -> None:
    listing = {}
    for size in SIZES:
        listing[size] = {"config": official_config(size), "keys": official_model_keys(size)}
        print(f"sam2.1_hiera_{size}: {len(listing[size]['keys'])} image encoder keys")
    write_json(out, "official_keys", listing)

    config = listing["t"]["config"]
    encoder = build_official_encoder(config)
    keys = key_listing(encoder)
    expected = {k.removeprefix("image_encoder."): v for k, v in listing["t"]["keys"].items()}
    if keys != expected:
        raise AssertionError("the tiny encoder built from its classes differs from the hydra-built one")
    _, fpn, pos = run_case(encoder, keys, SEEDS["tiny_1024"], [1, 3, 1024, 1024])
    arrays = {f"backbone_fpn/{i}": subsample(f) for i, f in enumerate(fpn)}
    arrays["vision_pos_enc/last"] = subsample(pos[-1])
    arrays["seed"] = np.array(SEEDS["tiny_1024"])
    np.savez_compressed(out / "tiny_1024.npz", **arrays)
    print(f"wrote {out / 'tiny_1024.npz'}")


def benchmark(runs: int) -> None:
    """CPU time of the official tiny encoder and ours at 1024² (same seeded weights, same process)."""
    from napari_sam.model.sam2.hiera import Hiera as OurHiera
    from napari_sam.model.sam2.image_encoder import FpnNeck as OurNeck
    from napari_sam.model.sam2.image_encoder import Sam2ImageEncoder
    from napari_sam.model.sam2.position_encoding import PositionEmbeddingSine as OurPosition

    config = official_config("t")
    official = build_official_encoder(config)
    keys = key_listing(official)
    weights = seeded_state_dict(keys, SEEDS["tiny_1024"])
    official.load_state_dict(weights)
    position = config["position_encoding"]
    ours = Sam2ImageEncoder(
        trunk=OurHiera(**config["trunk"]),
        neck=OurNeck(
            position_encoding=OurPosition(
                position["num_pos_feats"],
                temperature=position["temperature"],
                normalize=position["normalize"],
                scale=position["scale"],
            ),
            **config["neck"],
        ),
        scalp=config["scalp"],
    )
    ours.load_state_dict(weights)
    image = seeded_image([1, 3, 1024, 1024], SEEDS["tiny_1024"])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tiny encoder, 1 × 3 × 1024²")
    results = {}
    for name, model in (("official", official.eval()), ("ours", ours.eval())):
        model(image)  # warm-up
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            results[name] = model(image)
            times.append(time.perf_counter() - start)
        print(f"{name:>9}: " + ", ".join(f"{t:.2f} s" for t in times))
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(results["official"]["backbone_fpn"], results["ours"]["backbone_fpn"], strict=True)
    )
    print(f"max |ours - official| over backbone_fpn: {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=OUT, help="committed fixture folder")
    parser.add_argument("--benchmark", action="store_true", help="time ours vs official instead")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per model (--benchmark)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.benchmark:
        benchmark(args.runs)
        return
    make_small(args.out)
    make_official(args.out)


if __name__ == "__main__":
    main()
