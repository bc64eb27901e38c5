"""Reading, inferring, strictly loading and writing weights (official .pth and our safetensors)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam.errors import CheckpointError
from napari_sam.model import CONFIGS, SamConfig, build_sam
from napari_sam.model.checkpoint import (
    describe_architecture,
    infer_config,
    load_state_dict_strict,
    read_checkpoint,
    save_safetensors,
    weights_fingerprint,
)

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden"
OFFICIAL_KEY_SHAPES: dict[str, dict[str, list[int]]] = json.loads(
    (GOLDEN / "official_key_shapes.json").read_text()
)


# --------------------------------------------------------------------------- helpers


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


def _fake_official_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Tensors with the official shapes of ``name``, each a broadcast constant.

    ``torch.save`` stores only the single element behind each ``expand``ed view, so the file of even
    vit_h is a few hundred KB, yet every tensor reads back with its full official shape.
    """
    return {
        key: torch.full((1,), float(i % 7)).reshape([1] * len(shape)).expand(shape)
        for i, (key, shape) in enumerate(OFFICIAL_KEY_SHAPES[name].items())
    }


@pytest.fixture(scope="module")
def vit_b_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("official") / "sam_vit_b_fake.pth"
    torch.save(_fake_official_state_dict("vit_b"), path)
    assert path.stat().st_size < 2_000_000
    return path


def _run(model, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image features, mask logits and IoU scores for a fixed random image and two points."""
    gen = torch.Generator().manual_seed(seed)
    size = model.image_size
    image = torch.randn(1, 3, size, size, generator=gen)
    coords = torch.tensor([[[size * 0.3, size * 0.6], [size * 0.7, size * 0.2]]])
    labels = torch.tensor([[1, 0]])
    with torch.no_grad():
        features = model.image_encoder(image)
        sparse, dense = model.prompt_encoder((coords, labels), None, None)
        masks, iou = model.mask_decoder(
            features, model.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output=True
        )
    return features, masks, iou


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


# --------------------------------------------------------------------------- architecture inference


def test_infer_config_from_official_format_file(golden):
    expected = golden.config()
    inferred = infer_config(_state_dict(golden.weights))
    for field in dataclasses.fields(SamConfig):
        if field.name == "decoder_num_heads":
            continue  # leaves no trace in the shapes
        assert getattr(inferred, field.name) == getattr(expected, field.name), field.name
    assert inferred.decoder_num_heads == 8  # the official default
    assert inferred == dataclasses.replace(expected, decoder_num_heads=8)


def test_infer_config_takes_decoder_heads(golden):
    sd = _state_dict(golden.weights)
    expected = golden.config()
    assert infer_config(sd, decoder_num_heads=expected.decoder_num_heads) == expected


def test_build_sam_from_path_infers_architecture(golden):
    model = build_sam(golden.weights)
    assert model.config == dataclasses.replace(golden.config(), decoder_num_heads=8)
    assert model.image_size == golden.config_dict["image_size"]
    assert model.name == "weights"  # not a registered architecture: the file stem
    assert model.weights_sha256 == hashlib.sha256(golden.weights.read_bytes()).hexdigest()
    assert not model.training
    # every tensor of the file went into the model
    sd = _state_dict(golden.weights)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, sd[key], rtol=0, atol=0, msg=key)


def test_build_sam_from_path_accepts_str_and_equals_config_build(small_weights, small_model):
    from_path = build_sam(str(small_weights))
    _assert_same_weights(from_path, small_model)


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_infer_config_of_official_shapes_is_the_registered_config(name):
    sd = _fake_official_state_dict(name)
    assert infer_config(sd) == CONFIGS[name]
    assert describe_architecture(sd) == name


def test_build_sam_from_official_vit_b_shaped_file(vit_b_file):
    model = build_sam(vit_b_file)
    assert model.name == "vit_b"
    assert model.config == CONFIGS["vit_b"]
    keys = list(OFFICIAL_KEY_SHAPES["vit_b"])
    state = model.state_dict()
    for i in (0, 1, 5, len(keys) - 1):
        assert torch.all(state[keys[i]] == float(i % 7)), keys[i]


def test_infer_config_rejects_non_sam_state_dicts(small_weights):
    with pytest.raises(CheckpointError, match="patch_embed"):
        infer_config({"foo.weight": torch.zeros(3)})
    sd = _state_dict(small_weights)
    encoder_only = {k: v for k, v in sd.items() if k.startswith("image_encoder.")}
    with pytest.raises(CheckpointError, match="does not look like a Segment Anything"):
        infer_config(encoder_only)
    assert "not a ViT Segment Anything" in describe_architecture({"x": torch.zeros(1)})


def test_build_sam_on_encoder_only_file_says_what_is_missing(small_weights, tmp_path):
    sd = _state_dict(small_weights)
    path = tmp_path / "encoder_only.pth"
    torch.save({k: v for k, v in sd.items() if k.startswith("image_encoder.")}, path)
    with pytest.raises(CheckpointError, match=r"missing 'prompt_encoder\.|missing 'mask_decoder\."):
        build_sam(path)


# --------------------------------------------------------------------------- unreadable files


def test_truncated_file(small_weights, tmp_path):
    data = small_weights.read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert "truncated or corrupt" in message
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        build_sam(path)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prefix", [b"", b"PK\x03\x04", b"\x80\x02"])
def test_random_bytes(tmp_path, seed, prefix):
    rng = np.random.default_rng(seed)
    path = tmp_path / "random.pth"
    path.write_bytes(prefix + rng.bytes(4096))
    with pytest.raises(CheckpointError, match=r"random\.pth") as excinfo:
        read_checkpoint(path)
    message = str(excinfo.value)
    assert "truncated or corrupt" in message
    # the reason is torch's terse one, not its boilerplate about trusting the source
    assert "Please file an issue" not in message
    assert "trusted source" not in message


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth"):
        read_checkpoint(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        read_checkpoint(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        build_sam(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.pth"):
        build_sam("vit_b", checkpoint=path)


class Payload:
    """A Python object that must not be unpickled from a weights file."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)


class SideEffect:
    """Unpickling this would create a file (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_python_object_in_pickle_is_refused(tmp_path):
    path = tmp_path / "objects.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(CheckpointError) as excinfo:
        read_checkpoint(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert "weights_only" in message
    assert "Python objects" in message
    assert "Payload" in message  # names what is in the way
    assert "\x1b[" not in message  # no terminal escape codes from torch's message


def test_pickled_code_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "extra": SideEffect(marker)}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="Python objects"):
        read_checkpoint(path)
    assert not marker.exists()


def test_pickle_without_state_dict(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2), torch.ones(2)], path)
    with pytest.raises(CheckpointError, match="no state dict"):
        read_checkpoint(path)
    path = tmp_path / "numbers.pth"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match="no tensors"):
        read_checkpoint(path)


def test_corrupt_safetensors(small_model, tmp_path):
    path = save_safetensors(small_model, tmp_path / "m.safetensors", config=small_model.config)
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.safetensors"):
        read_checkpoint(cut)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(2048))
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        read_checkpoint(junk)


# --------------------------------------------------------------------------- strict loading


def test_wrong_architecture_lists_key_problems(small_weights):
    sd = _state_dict(small_weights)
    official = OFFICIAL_KEY_SHAPES["vit_b"]
    missing = sorted(set(official) - set(sd))
    mismatched = sorted(k for k in set(official) & set(sd) if list(sd[k].shape) != official[k])
    assert missing
    assert mismatched
    with pytest.raises(CheckpointError) as excinfo:
        build_sam("vit_b", checkpoint=small_weights)
    message = str(excinfo.value)
    assert message.startswith(f"{small_weights} does not fit 'vit_b': ")
    assert f"missing keys ({len(missing)}): {missing[0]}, {missing[1]}" in message
    assert f"… and {len(missing) - 8} more" in message
    assert "unexpected keys" not in message  # every key of the small model exists in vit_b
    first = mismatched[0]
    assert (
        f"shape mismatches ({len(mismatched)}): {first} "
        f"(checkpoint {tuple(sd[first].shape)}, model {tuple(official[first])})"
    ) in message
    assert "custom ViT (embed dim 64, depth 3, image size 256)" in message


def test_unexpected_keys_are_listed(small_weights, small_model, tmp_path):
    sd = dict(_state_dict(small_weights))
    sd["image_encoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): image_encoder\.extra\.weight"):
        build_sam(small_model.config, checkpoint=path)


def test_missing_keys_are_listed_and_counted(small_weights, small_model):
    sd = dict(_state_dict(small_weights))
    dropped = sorted(k for k in sd if k.startswith("mask_decoder.iou_prediction_head."))
    for key in dropped:
        del sd[key]
    model = build_sam(small_model.config)
    before = weights_fingerprint(model.state_dict())
    with pytest.raises(CheckpointError) as excinfo:
        load_state_dict_strict(model, sd, source="my weights")
    message = str(excinfo.value)
    assert message.startswith("my weights does not fit")
    assert f"missing keys ({len(dropped)})" in message
    assert dropped[0] in message
    assert "unexpected" not in message
    assert weights_fingerprint(model.state_dict()) == before  # nothing half-loaded


def test_long_listings_are_cut_short(small_weights, small_model):
    sd = {f"junk.{i}": torch.zeros(1) for i in range(20)}
    sd.update(_state_dict(small_weights))
    model = build_sam(small_model.config)
    with pytest.raises(CheckpointError, match=r"unexpected keys \(20\): .* … and 12 more"):
        load_state_dict_strict(model, sd)


def test_shape_mismatch_names_shapes(small_weights, small_model):
    sd = dict(_state_dict(small_weights))
    key = "mask_decoder.iou_token.weight"
    shape = tuple(sd[key].shape)
    sd[key] = torch.zeros(shape[0] + 1, *shape[1:])
    model = build_sam(small_model.config)
    with pytest.raises(CheckpointError) as excinfo:
        load_state_dict_strict(model, sd)
    bad = (shape[0] + 1, *shape[1:])
    assert f"shape mismatches (1): {key} (checkpoint {bad}, model {shape})" in str(excinfo.value)


def test_vit_b_weights_loaded_as_vit_l_suggest_vit_b(vit_b_file):
    with pytest.raises(CheckpointError) as excinfo:
        build_sam("vit_l", checkpoint=vit_b_file)
    message = str(excinfo.value)
    assert "model='vit_b'" in message
    assert "'vit_l'" in message
    assert "missing keys" in message
    assert "shape mismatches" in message
    assert str(vit_b_file) in message


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"model": sd}, id="model"),
        pytest.param(lambda sd: {"state_dict": sd}, id="state_dict"),
        pytest.param(lambda sd: {"model_state_dict": sd, "epoch": 7}, id="model_state_dict"),
        pytest.param(lambda sd: OrderedDict((f"module.{k}", v) for k, v in sd.items()), id="module"),
        pytest.param(
            lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "step": 1},
            id="state_dict+module",
        ),
        pytest.param(
            lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}},
            id="with-optimizer",
        ),
    ],
)
def test_wrapped_checkpoints_load(small_weights, small_model, tmp_path, wrap):
    sd = _state_dict(small_weights)
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(dict(sd)), path)
    read, metadata = read_checkpoint(path)
    assert metadata == {}
    assert read.keys() == sd.keys()
    _assert_same_weights(build_sam(path), small_model)
    _assert_same_weights(build_sam(small_model.config, checkpoint=path), small_model)


def test_module_prefix_kept_when_not_on_every_key(tmp_path):
    path = tmp_path / "mixed.pth"
    torch.save({"module.a": torch.zeros(1), "b": torch.ones(1)}, path)
    assert set(_state_dict(path)) == {"module.a", "b"}


def test_legacy_non_zip_pth_is_read(small_weights, tmp_path):
    sd = _state_dict(small_weights)
    path = tmp_path / "legacy.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    read = _state_dict(path)
    assert read.keys() == sd.keys()
    assert weights_fingerprint(read) == weights_fingerprint(sd)


# --------------------------------------------------------------------------- safetensors


def test_safetensors_round_trip(small_model, tmp_path):
    path = save_safetensors(small_model, tmp_path / "small.safetensors", config=small_model.config)
    assert path == tmp_path / "small.safetensors"
    sd, metadata = read_checkpoint(path)
    assert json.loads(metadata["napari_sam_config"]) == small_model.config.to_dict()
    loaded = build_sam(path)
    # decoder_num_heads (4 here) cannot be inferred from shapes: it comes from the metadata
    assert small_model.config.decoder_num_heads != 8
    assert loaded.config == small_model.config
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    _assert_same_weights(loaded, small_model)
    assert weights_fingerprint(sd) == weights_fingerprint(small_model.state_dict())
    for ours, theirs in zip(_run(loaded), _run(small_model), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


def test_safetensors_fp16(small_model, tmp_path):
    full = save_safetensors(small_model, tmp_path / "fp32.safetensors", config=small_model.config)
    half = save_safetensors(
        small_model, tmp_path / "fp16.safetensors", config=small_model.config, dtype=torch.float16
    )
    assert half.stat().st_size < 0.6 * full.stat().st_size
    sd, _ = read_checkpoint(half)
    assert {t.dtype for t in sd.values()} == {torch.float16}
    loaded = build_sam(half)
    assert loaded.config == small_model.config
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32, key  # the model stays float32
        expected = small_model.state_dict()[key].half().float()
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)
    for ours, theirs in zip(_run(loaded), _run(small_model), strict=True):
        scale = theirs.abs().max().item()
        assert (ours - theirs).abs().max().item() <= 0.02 * scale + 1e-3
    # and not bit-identical: the conversion really happened
    assert not torch.equal(_run(loaded)[1], _run(small_model)[1])


def test_safetensors_extra_metadata_and_name(small_model, tmp_path):
    path = save_safetensors(
        small_model,
        tmp_path / "named.safetensors",
        config=small_model.config,
        metadata={"napari_sam_name": "my_model", "note": "hello"},
    )
    _, metadata = read_checkpoint(path)
    assert metadata["note"] == "hello"
    assert build_sam(path).name == "my_model"


def test_safetensors_recognised_by_content(small_model, tmp_path):
    """A safetensors file with another suffix (renamed, or ``.SAFETENSORS``) still loads."""
    path = save_safetensors(small_model, tmp_path / "a.safetensors", config=small_model.config)
    for name in ("renamed.pth", "upper.SAFETENSORS", "no_suffix"):
        other = tmp_path / name
        other.write_bytes(path.read_bytes())
        _, metadata = read_checkpoint(other)
        assert "napari_sam_config" in metadata, name
        assert build_sam(other).config == small_model.config


def test_safetensors_without_config_metadata_infers(small_model, small_weights, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in small_model.state_dict().items()}, str(path))
    assert read_checkpoint(path)[1] == {}
    assert build_sam(path).config == infer_config(_state_dict(small_weights))


@pytest.mark.parametrize("raw", ["{not json", json.dumps({"encoder_embed_dim": 64, "bogus": 1}), "[]"])
def test_safetensors_with_bad_config_metadata(small_model, tmp_path, raw):
    from safetensors.torch import save_file

    path = tmp_path / "bad.safetensors"
    save_file(
        {k: v.contiguous() for k, v in small_model.state_dict().items()},
        str(path),
        metadata={"napari_sam_config": raw},
    )
    with pytest.raises(CheckpointError, match="invalid model config"):
        build_sam(path)


# --------------------------------------------------------------------------- official key names


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_state_dict_keys_and_shapes_equal_official(name):
    with torch.device("meta"):
        model = build_sam(name)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    official = OFFICIAL_KEY_SHAPES[name]
    assert sorted(set(official) - set(ours)) == []
    assert sorted(set(ours) - set(official)) == []
    wrong = {k: (ours[k], official[k]) for k in official if ours[k] != official[k]}
    assert wrong == {}
    assert "pixel_mean" not in ours  # non-persistent buffers, as in the official model


# --------------------------------------------------------------------------- fingerprint


def test_weights_fingerprint(small_model):
    sd = {k: v.clone() for k, v in small_model.state_dict().items()}
    first = weights_fingerprint(sd)
    assert len(first) == 64
    int(first, 16)
    assert weights_fingerprint(sd) == first  # stable
    assert weights_fingerprint(small_model.state_dict()) == first  # copies hash alike
    reordered = OrderedDict(reversed(list(sd.items())))
    assert weights_fingerprint(reordered) == first  # key order does not matter

    key = "mask_decoder.iou_token.weight"
    changed = dict(sd)
    changed[key] = sd[key].clone()
    changed[key].view(-1)[0] += 1e-6
    assert weights_fingerprint(changed) != first
    assert weights_fingerprint(sd) == first  # the original is untouched

    renamed = dict(sd)
    renamed["renamed"] = renamed.pop(key)
    assert weights_fingerprint(renamed) != first

    cast = dict(sd)
    cast[key] = sd[key].double()
    assert weights_fingerprint(cast) != first

    reshaped = dict(sd)
    reshaped[key] = sd[key].reshape(-1)
    assert weights_fingerprint(reshaped) != first


def test_weights_fingerprint_edge_tensors():
    scalar = {"step": torch.tensor(3.0), "count": torch.tensor(7)}
    fp = weights_fingerprint(scalar)
    assert fp == weights_fingerprint({"count": torch.tensor(7), "step": torch.tensor(3.0)})
    assert fp != weights_fingerprint({"step": torch.tensor(4.0), "count": torch.tensor(7)})
    # non-contiguous and empty tensors
    base = torch.arange(12.0).reshape(3, 4)
    assert weights_fingerprint({"t": base.t()}) == weights_fingerprint({"t": base.t().contiguous()})
    assert weights_fingerprint({"e": torch.zeros(0, 3)}) != weights_fingerprint({"e": torch.zeros(3, 0)})
    assert weights_fingerprint({"b": torch.tensor([True, False])}) != weights_fingerprint(
        {"b": torch.tensor([False, True])}
    )


def test_fingerprint_of_reloaded_model_matches(small_model, small_weights):
    assert weights_fingerprint(build_sam(small_weights).state_dict()) == weights_fingerprint(
        small_model.state_dict()
    )
