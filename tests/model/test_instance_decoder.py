"""Our instance decoder against torch_em's UNETR decoder (micro-sam's AIS), from fixtures made by
scripts/make_instance_decoder_fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam.model.instance_decoder import InstanceDecoder

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "instance_decoder"
CASES = ("small_a", "small_b", "small_a_transpose")
TOL = 1e-4


def _case(name: str) -> tuple[dict[str, np.ndarray], dict[str, torch.Tensor]]:
    with np.load(FIXTURES / f"{name}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    state = torch.load(FIXTURES / f"{name}_decoder_state.pt", map_location="cpu", weights_only=True)
    return arrays, state


def _decoder_for(arrays: dict[str, np.ndarray]) -> InstanceDecoder:
    return InstanceDecoder(
        embed_dim=int(arrays["features"].shape[1]),
        image_size=int(arrays["image_size"]),
        initial_features=int(arrays["initial_features"]),
        conv_transpose=bool(arrays["conv_transpose"]),
    )


@pytest.mark.parametrize("name", CASES)
def test_maps_match_torch_em(name):
    arrays, state = _case(name)
    decoder = _decoder_for(arrays)
    decoder.load_state_dict(state, strict=True)
    decoder.eval()
    with torch.no_grad():
        maps = decoder(
            torch.from_numpy(arrays["features"]),
            tuple(int(v) for v in arrays["input_size"]),
            tuple(int(v) for v in arrays["original_size"]),
        )
    assert maps.dtype == torch.float32
    assert maps.shape == arrays["maps"].shape
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    diff = float(np.abs(maps.numpy() - arrays["maps"]).max())
    assert diff <= TOL, diff


@pytest.mark.parametrize("name", CASES)
def test_state_dict_keys_are_micro_sams(name):
    arrays, state = _case(name)
    ours = _decoder_for(arrays).state_dict()
    assert list(ours) == list(state)
    assert all(ours[k].shape == state[k].shape for k in state)


@pytest.mark.parametrize(("label", "transpose"), [("interpolate", False), ("conv_transpose", True)])
def test_full_size_layout_is_micro_sams(label, transpose):
    expected = json.loads((FIXTURES / "vit_b_decoder_keys.json").read_text(encoding="utf-8"))[label]
    ours = {k: list(v.shape) for k, v in InstanceDecoder(conv_transpose=transpose).state_dict().items()}
    assert list(ours) == list(expected)
    assert ours == expected


def test_full_size_output_shape():
    decoder = InstanceDecoder().eval()
    with torch.no_grad():
        maps = decoder(torch.randn(1, 256, 64, 64), (1024, 768), (512, 384))
    assert maps.shape == (1, 3, 512, 384)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
