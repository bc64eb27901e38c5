"""export_model: a model written in micro-sam's checkpoint format, read back by our build_sam and by
micro-sam's own loader (reference environment)."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam.model import InstanceDecoder, SamConfig, build_sam
from napari_sam.model.export import export_model

ROOT = Path(__file__).resolve().parents[2]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
#: make_golden.py's small_a architecture (the reference environment builds the official model from it)
SMALL_A = SamConfig.from_dict(json.loads((GOLDEN / "small_a" / "config.json").read_text()))
INPUT_SIZE, ORIGINAL_SIZE = (256, 192), (128, 96)


def _model(seed: int = 0, *, batch_statistics: bool = True, **decoder_args) -> torch.nn.Module:
    """small_a with random weights and a random micro-sam-layout decoder (2 initial features)."""
    torch.manual_seed(seed)
    sam = build_sam(SMALL_A)
    for p in sam.parameters():
        p.data.normal_(0, 0.05)
    args = {"initial_features": 2, "batch_statistics": batch_statistics, **decoder_args}
    sam.instance_decoder = InstanceDecoder(embed_dim=SMALL_A.prompt_embed_dim, image_size=256, **args)
    for p in sam.instance_decoder.parameters():
        p.data.normal_(0, 0.2)
    return sam.eval()


def _outputs(sam, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        features = sam.image_encoder(image)
        return features, sam.instance_decoder(features, INPUT_SIZE, ORIGINAL_SIZE)


def _export(sam, path: Path, **kwargs):
    """export_model, which warns that micro-sam builds neither small_a nor a 2-feature decoder."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        written = export_model(sam, path, **kwargs)
    said = " ".join(str(w.message) for w in record)
    assert "micro-sam will refuse" in said and "get_predictor_and_decoder will refuse" in said
    return written


def test_decoder_inside_round_trip(tmp_path):
    sam = _model()
    written = _export(sam, tmp_path / "finetuned.pt")
    assert written.weights == tmp_path / "finetuned.pt" and written.decoder is None
    held = torch.load(written.weights, weights_only=True)
    assert set(held) == {"model_state", "decoder_state"}
    # Segment Anything's keys only in model_state, every decoder key in decoder_state, all float32
    ours = sam.state_dict()
    assert set(held["model_state"]) == {k for k in ours if not k.startswith("instance_decoder.")}
    assert set(held["decoder_state"]) == set(sam.instance_decoder.state_dict())
    assert all(v.dtype == torch.float32 for v in held["model_state"].values() if v.is_floating_point())
    again = build_sam(written.weights)
    assert set(again.state_dict()) == set(ours)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in ours.items())
    assert again.instance_decoder.config == sam.instance_decoder.config
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    for mine, theirs in zip(_outputs(sam, image), _outputs(again, image), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


def test_decoder_beside_and_none(tmp_path):
    sam = _model(seed=2)
    written = _export(sam, tmp_path / "vit_b_mine.pt", decoder="beside")
    assert written.decoder == tmp_path / "vit_b_mine_decoder.pt"  # as micro-sam's zoo ships them
    bare = torch.load(written.weights, weights_only=True)
    assert "image_encoder.patch_embed.proj.weight" in bare and "model_state" not in bare
    assert set(torch.load(written.decoder, weights_only=True)) == set(sam.instance_decoder.state_dict())
    again = build_sam(written.weights)  # finds <stem>_decoder.pt beside
    assert again.instance_decoder is not None
    assert all(torch.equal(again.state_dict()[k], v) for k, v in sam.state_dict().items())
    alone = _export(sam, tmp_path / "alone.pt", decoder="none")
    assert alone.decoder is None and build_sam(alone.weights).instance_decoder is None


def test_half_precision_is_written_as_float32(tmp_path):
    sam = _model(seed=3).half()
    written = _export(sam, tmp_path / "half.pt")
    held = torch.load(written.weights, weights_only=True)["model_state"]
    key = "image_encoder.blocks.0.attn.qkv.weight"
    assert held[key].dtype == torch.float32
    assert torch.equal(held[key], sam.state_dict()[key].float())


def test_nano_is_refused_for_micro_sam_and_written_in_ours(tmp_path):
    from napari_sam.model.registry import shipped_nano_path

    nano = build_sam(shipped_nano_path())
    with pytest.raises(ValueError, match="format='napari_sam'") as excinfo:
        export_model(nano, tmp_path / "nano.pt")
    assert "no counterpart in micro-sam" in str(excinfo.value)
    assert not (tmp_path / "nano.pt").exists()
    written = export_model(nano, tmp_path / "nano_copy.safetensors", format="napari_sam")
    again = build_sam(written.weights)
    assert again.config == nano.config and again.instance_decoder is not None
    assert all(torch.equal(again.state_dict()[k], v) for k, v in nano.state_dict().items())


def test_a_decoder_micro_sam_would_run_differently_is_warned_about(tmp_path):
    sam = _model(seed=4, batch_statistics=False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        export_model(sam, tmp_path / "ours.pt")
    assert any("running statistics" in str(w.message) for w in record)


def test_bad_arguments(tmp_path):
    sam = _model(seed=5)
    with pytest.raises(ValueError, match="format must be one of"):
        export_model(sam, tmp_path / "x.pt", format="onnx")
    with pytest.raises(ValueError, match="decoder must be one of"):
        export_model(sam, tmp_path / "x.pt", decoder="inline")
    with pytest.raises(ValueError, match="is a folder"):
        export_model(sam, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_model(sam, tmp_path / "no" / "x.pt")


_MICRO_SAM_READS = """
import sys
import numpy as np, torch
sys.path.insert(0, "scripts")
from make_golden import SMALL_CONFIGS, build_official
from make_instance_decoder_fixtures import build_unetr
from micro_sam.util import _load_checkpoint

path, image_path, out = sys.argv[1:4]
state, model_state = _load_checkpoint(path)          # micro-sam's reader of model files
sam = build_official(SMALL_CONFIGS["small_a"])
sam.load_state_dict(model_state, strict=True)        # every key used, none missing
unetr = build_unetr(sam.image_encoder, initial_features=2, conv_transpose=False)
wanted = {k for k in unetr.state_dict() if not k.startswith("encoder")}
given = set(state["decoder_state"])
assert given == wanted, (sorted(given - wanted), sorted(wanted - given))
full = unetr.state_dict()
full.update(state["decoder_state"])                  # get_unetr's strict copy
unetr.load_state_dict(full)
image = torch.from_numpy(np.load(image_path))
with torch.no_grad():                                 # as micro-sam's DecoderAdapter runs it (not eval)
    features = sam.image_encoder(image)
    maps = unetr.decode((features, None, None), (256, 192), (128, 96))
np.savez(out, features=features.numpy(), maps=maps.numpy())
"""


@pytest.mark.slow
@pytest.mark.skipif(not REF_PYTHON.is_file(), reason="needs the reference environment (.venv-ref)")
def test_micro_sams_loader_reads_the_export(tmp_path):
    sam = _model(seed=6)
    written = _export(sam, tmp_path / "export.pt")
    image = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(7))
    np.save(tmp_path / "image.npy", image.numpy())
    script = tmp_path / "micro_sam_reads.py"
    script.write_text(_MICRO_SAM_READS)
    subprocess.run(
        [
            str(REF_PYTHON),
            str(script),
            str(written.weights),
            str(tmp_path / "image.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=600,
    )
    reference = np.load(tmp_path / "out.npz")
    features, maps = _outputs(build_sam(written.weights), image)  # ours, reading the same file
    np.testing.assert_allclose(features.numpy(), reference["features"], atol=1e-4)
    np.testing.assert_allclose(maps.numpy(), reference["maps"], atol=1e-4)


_MICRO_SAM_LOADS_VIT_B = """
import sys, torch
from micro_sam.instance_segmentation import get_predictor_and_decoder
predictor, decoder = get_predictor_and_decoder("vit_b", sys.argv[1], device="cpu")
weight = predictor.model.image_encoder.patch_embed.proj.weight
print(float(weight.double().sum()), sum(p.numel() for p in decoder.parameters()))
"""


@pytest.mark.slow
@pytest.mark.skipif(not REF_PYTHON.is_file(), reason="needs the reference environment (.venv-ref)")
def test_micro_sam_loads_an_exported_vit_b_with_its_decoder(tmp_path):
    """Full size: a random vit_b with a micro-sam-size decoder, through get_predictor_and_decoder."""
    torch.manual_seed(0)
    sam = build_sam("vit_b")
    sam.instance_decoder = InstanceDecoder(embed_dim=256, image_size=1024, batch_statistics=True)
    written = export_model(sam, tmp_path / "vit_b_mine.pt")  # no warning: micro-sam builds this
    done = subprocess.run(
        [str(REF_PYTHON), "-c", _MICRO_SAM_LOADS_VIT_B, str(written.weights)],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
        timeout=1200,
    )
    weight_sum, decoder_params = done.stdout.split()[-2:]
    ours = sam.image_encoder.patch_embed.proj.weight.double().sum().item()
    assert float(weight_sum) == pytest.approx(ours, abs=1e-6)
    assert int(decoder_params) == sum(p.numel() for p in sam.instance_decoder.parameters())
    again = build_sam(written.weights)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in sam.state_dict().items())
