"""vit_t (MobileSAM's TinyViT encoder) against the MobileSAM reference package.

The fixtures in ``tests/fixtures/vit_t`` come from ``scripts/make_vit_t_fixtures.py`` (reference
environment): the reference's state-dict keys with a seed (the weights are recreated here, bit for bit,
by the script's own generator), an image, and the reference's features and predictions. ``small`` is a
reduced TinyViT on a 256 canvas with every prompt case; ``vit_t`` is MobileSAM's ``build_sam_vit_t()``
at its 1024 canvas (every 8th feature row and column, three prompt cases).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from napari_sam.engine.decode.coords import boxes_xyxy_to_rc
from napari_sam.engine.decode.predict import predict
from napari_sam.engine.embed.embeddings import compute_embeddings
from napari_sam.engine.embed.encoder import encode_images
from napari_sam.errors import CheckpointError
from napari_sam.model import CONFIGS, InstanceDecoder, SamConfig, build_sam, save_safetensors
from napari_sam.model.sam import OFFICIAL_OBJECT_SCALE
from tests.conftest import official_prompts_to_ours

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "vit_t"
SCRIPT = ROOT / "scripts" / "make_vit_t_fixtures.py"

# Measured on CPU (torch 2.13 here, 2.14.1 in the reference environment, float32): features agree to
# ~4e-6 (values up to ~4.5), mask and low-res logits to ~4e-6 (up to ~2.6), iou scores to ~1e-6. Dropping
# the attention biases alone moves the features by ~0.5.
TOL = 1e-4
SMALL_CASES = ("point", "point_single", "points_posneg", "box", "box_multi", "box_points", "mask_input")


@cache
def _script() -> ModuleType:
    """The fixture script as a module (its generator of seeded weights; it imports no reference code)."""
    spec = importlib.util.spec_from_file_location("make_vit_t_fixtures", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Case:
    """One fixture case: the reference's key listing and seed, and its outputs."""

    def __init__(self, name: str) -> None:
        listing = json.loads((FIXTURES / f"{name}_keys.json").read_text())
        self.name = name
        self.seed: int = listing["seed"]
        self.keys: dict[str, list] = listing["keys"]
        config = listing.get("config")
        self.config = CONFIGS["vit_t"] if config is None else SamConfig.from_dict(config)
        self.arrays = dict(np.load(FIXTURES / f"{name}.npz"))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The reference's seeded weights, every key in the reference's order."""
        return _script().seeded_state_dict(self.keys, self.seed)


@pytest.fixture(scope="module", params=["small", "vit_t"])
def case(request) -> Case:
    return Case(request.param)


@pytest.fixture(scope="module")
def weights_file(case, tmp_path_factory) -> Path:
    """The seeded weights as MobileSAM saves them: a plain state dict (``mobile_sam.pt``)."""
    path = tmp_path_factory.mktemp(case.name) / f"{case.name}.pt"
    torch.save(case.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def model(case, weights_file):
    return build_sam(case.config, checkpoint=weights_file)


@pytest.fixture(scope="module")
def embeddings(case, model):
    return compute_embeddings(case.arrays["image"], model, device="cpu", normalize=None)


def _max_abs(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())


def test_state_dict_keys_shapes_and_order_equal_the_reference(case):
    with torch.device("meta"):
        ours = build_sam(case.config)
    listing = {k: [list(v.shape), str(v.dtype)] for k, v in ours.state_dict().items()}
    assert list(listing) == list(case.keys)
    assert listing == case.keys


def test_reference_weights_load_strictly(case, weights_file, model):
    reference = case.state_dict()
    assert set(model.state_dict()) == set(reference)
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    if case.name == "vit_t":  # the architecture is read from the file alone
        inferred = build_sam(weights_file)
        assert inferred.name == "vit_t"
        assert inferred.config == CONFIGS["vit_t"]


def test_encoder_features_match_the_reference(case, embeddings):
    assert embeddings.input_size == tuple(case.arrays["input_size"])
    assert embeddings.original_size == tuple(case.arrays["original_size"])
    step = int(case.arrays.get("feature_step", 1))
    ours = embeddings.features.cpu().numpy()
    assert ours.shape == (1, 256, case.config.embedding_size, case.config.embedding_size)
    reference = case.arrays["features"]
    diff = _max_abs(ours[..., ::step, ::step], reference)
    assert diff <= TOL, diff
    assert float(np.abs(reference).max()) > 1.0  # the comparison is not between near-zero values


def _check_predictions(embeddings, arrays: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    """Our predictions for the reference's prompt cases ``names`` (and its batched boxes when recorded)
    equal the reference's ``arrays`` within :data:`TOL`."""
    for name in names:
        prompts = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}/")}
        pred = predict(embeddings, return_logits=True, **official_prompts_to_ours(prompts))
        diffs = {
            "iou": _max_abs(pred.iou_scores[0], prompts["iou"]),
            "masks": _max_abs(pred.masks[0], prompts["masks"]),
        }
        if "low_res" in prompts:
            diffs["low_res"] = _max_abs(pred.low_res_logits[0], prompts["low_res"])
        assert all(v <= TOL for v in diffs.values()), (name, diffs)
        confident = np.abs(prompts["masks"]) > TOL
        np.testing.assert_array_equal((pred.masks[0] > 0)[confident], (prompts["masks"] > 0)[confident])
    if "batched_boxes/boxes" in arrays:  # several boxes in one decoder call (the reference's batched path)
        boxes = boxes_xyxy_to_rc(arrays["batched_boxes/boxes"])
        pred = predict(embeddings, box=boxes, multimask=False, return_logits=True)
        assert _max_abs(pred.iou_scores, arrays["batched_boxes/iou"]) <= TOL
        assert _max_abs(pred.masks, arrays["batched_boxes/masks"]) <= TOL


def test_predictions_match_the_reference(case, embeddings):
    _check_predictions(
        embeddings, case.arrays, SMALL_CASES if case.name == "small" else _script().VIT_T_CASES
    )


def test_micro_sam_file_with_decoder_state_loads_as_vit_t(tmp_path):
    case = Case("vit_t")
    torch.manual_seed(0)
    decoder = InstanceDecoder(embed_dim=256, image_size=1024, initial_features=2)
    path = tmp_path / "vit_t_lm.pt"
    torch.save(
        {
            "model_state": {f"sam.{k}": v for k, v in case.state_dict().items()},
            "decoder_state": decoder.state_dict(),
        },
        path,
    )
    sam = build_sam(path)
    assert sam.name == "vit_t" and sam.config == CONFIGS["vit_t"]
    assert sam.instance_decoder is not None
    for key, value in decoder.state_dict().items():
        assert torch.equal(sam.instance_decoder.state_dict()[key], value), key


def test_weights_of_another_architecture_are_refused_by_name(tmp_path):
    vit_t = Case("vit_t").state_dict()
    path = tmp_path / "mobile_sam.pt"
    torch.save(vit_t, path)
    with pytest.raises(CheckpointError, match=r"does not fit 'vit_b'.*use model='vit_t'"):
        build_sam("vit_b", checkpoint=path)
    small = tmp_path / "small.pt"
    torch.save(Case("small").state_dict(), small)
    with pytest.raises(
        CheckpointError, match=r"does not fit 'vit_t'.*custom TinyViT \(stage widths \[32, 64"
    ):
        build_sam("vit_t", checkpoint=small)
    missing = dict(vit_t)
    del missing["image_encoder.layers.2.blocks.3.attn.attention_biases"]
    missing["image_encoder.layers.2.blocks.3.attn.extra"] = torch.zeros(1)
    torch.save(missing, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\).*attention_biases.*unexpected keys \(1\)"):
        build_sam(path)


def test_vit_t_is_treated_like_vit_b():
    with torch.device("meta"):
        vit_t, vit_b = build_sam("vit_t"), build_sam("vit_b")
    assert vit_t.embedding_shape == vit_b.embedding_shape == (256, 64, 64)
    assert vit_t.image_size == 1024
    assert vit_t.object_scale == OFFICIAL_OBJECT_SCALE
    assert vit_t.default_object_size is None and vit_t.max_upscale is None


#: A TinyViT small enough to run in milliseconds (PyTorch's initialisation, biases made non-zero).
TINY = SamConfig(
    encoder_type="tiny_vit",
    encoder_embed_dim=32,
    encoder_depth=4,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(),
    encoder_widths=(8, 16, 24, 32),
    encoder_stage_depths=(1, 1, 1, 1),
    encoder_stage_heads=(1, 2, 2),
    encoder_stage_windows=(3, 3, 3),
    image_size=64,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


def test_bf16_and_safetensors_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_sam(TINY)
    for name, param in model.named_parameters():
        if name.endswith("attention_biases"):
            param.data.normal_()
    inputs = torch.randn(2, 3, 64, 64)
    fp32 = encode_images(model, inputs, precision="fp32")
    bf16 = encode_images(model, inputs, precision="bf16")
    assert bf16.dtype == torch.float32 and bf16.shape == fp32.shape == (2, 32, 4, 4)
    assert float((bf16 - fp32).abs().mean()) < 0.05 * float(fp32.abs().mean())
    path = save_safetensors(model, tmp_path / "tiny.safetensors", config=TINY)
    again = build_sam(path)
    assert again.config == TINY
    torch.testing.assert_close(encode_images(again, inputs, precision="fp32"), fp32, atol=0, rtol=0)


def test_tiny_vit_config_errors_name_the_field():
    fields = {**CONFIGS["vit_t"].to_dict(), "patch_size": 32}
    with pytest.raises(ValueError, match=r"4-stage tiny_vit encoder has stride 16, got patch_size=32"):
        SamConfig.from_dict(fields)
    fields = {**CONFIGS["vit_t"].to_dict(), "encoder_stage_heads": [4, 5]}
    with pytest.raises(ValueError, match="encoder_stage_heads"):
        SamConfig.from_dict(fields)
    fields = {**CONFIGS["vit_t"].to_dict(), "encoder_stage_heads": [3, 5, 10]}
    with pytest.raises(ValueError, match=r"divisible by their heads.*\(128, 3\)"):
        SamConfig.from_dict(fields)


@pytest.fixture(scope="module")
def full_size_reference(tmp_path_factory) -> Path:
    """The folder ``make_vit_t_fixtures.py --full`` writes in the reference environment (~2 min)."""
    from tests.model.test_parity_vit_b_slow import _reference_python, _run_reference

    python = _reference_python()
    probe = subprocess.run(
        [str(python), "-c", "import mobile_sam"], capture_output=True, text=True, timeout=300
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"{python} cannot import mobile_sam ({last}): `{python} -m pip install mobilesam-mirror timm`"
        )
    out = tmp_path_factory.mktemp("vit_t_full")
    _run_reference(python, [str(SCRIPT), "--full", str(out)])
    return out


@pytest.mark.slow
def test_full_size_vit_t_matches_the_reference(full_size_reference):
    """MobileSAM's own vit_t at 1024 with seeded weights, a 600×800 image, every prompt case."""
    sam = build_sam(full_size_reference / "weights.pt")  # a plain state dict, like mobile_sam.pt
    assert sam.name == "vit_t" and sam.config == CONFIGS["vit_t"]
    arrays = dict(np.load(full_size_reference / "cases.npz"))
    embeddings = compute_embeddings(arrays["image"], sam, device="cpu", normalize=None)
    assert embeddings.input_size == tuple(arrays["input_size"])
    assert _max_abs(embeddings.features.cpu().numpy(), arrays["features"]) <= TOL
    _check_predictions(embeddings, arrays, SMALL_CASES)
