"""Building and loading SAM 2: the four sam2.1 sizes' keys, inference of the size from weights, strict
loading through ``build_sam``, and the registry entries (nothing is downloaded)."""

from __future__ import annotations

import json

import pytest
import torch

from napari_sam.errors import CheckpointError, WeightsHashError, WeightsUnavailableError
from napari_sam.model import MODEL_NAMES, SAM2_CONFIGS, Sam, Sam2, build_sam
from napari_sam.model.checkpoint import infer_sam2_config, is_sam2_state_dict
from napari_sam.model.registry import SAM2_WEIGHTS, fetch_sam2_weights
from tests.model.sam2.test_sam2_model import FIXTURES, fixture_script, tiny_config, tiny_listing

SIZES = tuple(SAM2_CONFIGS)


def _official(size: str) -> dict[str, list[int]]:
    return json.loads((FIXTURES / f"keys_{size}.json").read_text())


@pytest.mark.parametrize("size", SIZES)
def test_keys_and_shapes_equal_the_official(size):
    with torch.device("meta"):
        model = Sam2(SAM2_CONFIGS[size])
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == _official(size)


@pytest.mark.parametrize("size", SIZES)
def test_size_is_inferred_from_shapes(size):
    state = {k: torch.empty(shape, device="meta") for k, shape in _official(size).items()}
    assert is_sam2_state_dict(state)
    assert infer_sam2_config(state) == (size, SAM2_CONFIGS[size])


def test_unregistered_sam2_weights_name_their_shapes():
    state = {k: torch.empty(spec[0], device="meta") for k, spec in tiny_listing()["keys"].items()}
    with pytest.raises(CheckpointError, match=r"no registered size.*hiera_embed_dim=16"):
        infer_sam2_config(state)


@pytest.fixture(scope="module")
def official_tiny_file(tmp_path_factory):
    """A file laid out like the official ``sam2.1_hiera_tiny.pt`` (``{"model": state_dict}``), zeros."""
    path = tmp_path_factory.mktemp("sam2") / "sam2.1_hiera_tiny.pt"
    state = {k: torch.zeros(shape) for k, shape in _official("sam2.1_hiera_tiny").items()}
    torch.save({"model": state}, path)
    return path


def test_build_sam_reads_an_official_layout_file(official_tiny_file):
    model = build_sam(official_tiny_file)
    assert isinstance(model, Sam2) and model.name == "sam2.1_hiera_tiny" and not model.training
    assert model.weights_sha256 is not None and model.instance_decoder is None
    named = build_sam("sam2.1_hiera_tiny", checkpoint=official_tiny_file)
    assert isinstance(named, Sam2) and float(named.no_mem_embed.detach().abs().sum()) == 0.0


def test_build_sam_names_and_configs():
    assert set(SAM2_CONFIGS) <= set(MODEL_NAMES)
    assert isinstance(build_sam("vit_b"), Sam)
    assert isinstance(build_sam(tiny_config()), Sam2)


def test_strict_loading_names_the_keys(tmp_path, official_tiny_file):
    state = torch.load(official_tiny_file, weights_only=True)["model"]
    del state["no_obj_ptr"]
    state["extra.weight"] = torch.zeros(1)
    broken = tmp_path / "broken.pt"
    torch.save({"model": state}, broken)
    with pytest.raises(
        CheckpointError, match=r"missing keys \(1\): no_obj_ptr.*unexpected keys \(1\): extra.weight"
    ):
        build_sam("sam2.1_hiera_tiny", checkpoint=broken)
    with pytest.raises(CheckpointError, match="does not fit"):
        build_sam("sam2.1_hiera_small", checkpoint=official_tiny_file)
    with pytest.raises(CheckpointError):
        build_sam("vit_b", checkpoint=official_tiny_file)


def test_custom_config_file_loads_with_its_config(tmp_path):
    listing = tiny_listing()
    weights = fixture_script().seeded_state_dict(listing["keys"], listing["seed"])
    path = tmp_path / "tiny.pt"
    torch.save({"model": weights}, path)
    model = build_sam(tiny_config(), checkpoint=path)
    torch.testing.assert_close(model.state_dict()["no_mem_embed"], weights["no_mem_embed"])
    with pytest.raises(CheckpointError, match="no registered size"):
        build_sam(path)


def test_registry_entries_and_unpublished_hashes(tmp_path, monkeypatch):
    assert SAM2_WEIGHTS["sam2.1_hiera_base_plus"].url == (
        "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_base_plus.pt"
    )
    monkeypatch.setenv("NAPARI_SAM_CACHE", str(tmp_path))
    monkeypatch.delenv("NAPARI_SAM_WEIGHTS", raising=False)
    with pytest.raises(WeightsUnavailableError, match="downloading is off"):
        fetch_sam2_weights("sam2.1_hiera_tiny", download=False)
    local = tmp_path / "sam2.1_hiera_tiny.pt"
    local.write_bytes(b"first copy")
    assert fetch_sam2_weights("sam2.1_hiera_tiny", download=False) == local  # recorded at first use
    local.write_bytes(b"another copy")
    with pytest.raises(WeightsHashError, match="recorded"):
        fetch_sam2_weights("sam2.1_hiera_tiny", download=False)
    with pytest.raises(ValueError, match="no SAM 2 checkpoint"):
        fetch_sam2_weights("sam2_hiera_tiny")


def test_the_engine_refuses_sam2_models_clearly(official_tiny_file):
    from napari_sam.engine.loading import load_model

    with pytest.raises(NotImplementedError, match=r"SAM 2 model.*SAM 1 models only"):
        load_model("sam2.1_hiera_tiny", device="cpu")
    with pytest.raises(NotImplementedError, match="SAM 2 model"):
        load_model(official_tiny_file, device="cpu")
