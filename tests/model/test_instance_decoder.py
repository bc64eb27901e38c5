"""Our instance decoder against torch_em's UNETR decoder (micro-sam's AIS), from fixtures made by
scripts/make_instance_decoder_fixtures.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam.model import instance_decoder_fast as fast
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


# ------------------------------------------------------------------ inference path (instance_decoder_fast)


@pytest.fixture(params=[True, False], ids=["winograd", "direct"])
def winograd(request):
    before = fast.winograd_enabled()
    fast.set_winograd(request.param)
    yield request.param
    fast.set_winograd(before)


def _random_decoder(*, full_resolution: bool, conv_transpose: bool, seed: int = 0) -> InstanceDecoder:
    """A small decoder with random weights and random (non-trivial) batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    decoder = InstanceDecoder(
        embed_dim=24,
        image_size=96,
        initial_features=8,
        conv_transpose=conv_transpose,
        full_resolution=full_resolution,
    )
    for module in decoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.3, 0.3)
    return decoder.eval()


@pytest.mark.parametrize("full_resolution", [True, False], ids=["full", "half"])
@pytest.mark.parametrize("conv_transpose", [False, True], ids=["interpolate", "transpose"])
@pytest.mark.parametrize("spatial", [(6, 6), (1, 2), (2, 5)])
def test_inference_path_matches_layer_graph(winograd, full_resolution, conv_transpose, spatial):
    # eval + no autograd runs the inference kernels; with autograd on, the same module runs its layer graph
    decoder = _random_decoder(full_resolution=full_resolution, conv_transpose=conv_transpose)
    features = torch.randn(2, 24, *spatial) * 2 + 0.5
    side = 16 * spatial[0]
    sizes = [((side, side), (side, side)), ((side, side), (side // 2, side // 2))]
    sizes.append(((side, max(1, side * 3 // 4)), (side // 2 + 1, max(1, side * 3 // 8))))
    for input_size, original_size in sizes:
        decoder.image_size = side
        with torch.enable_grad():
            expected = decoder(features, input_size, original_size)
        with torch.inference_mode():
            got = decoder(features, input_size, original_size)
        assert expected.requires_grad and not got.requires_grad
        assert got.shape == expected.shape == (2, 3, *original_size)
        assert got.is_contiguous()
        diff = float((got - expected.detach()).abs().max())
        assert diff <= (TOL if winograd else 1e-5), (input_size, original_size, diff)


def test_inference_path_matches_layer_graph_full_size(winograd):
    decoder = InstanceDecoder().eval()
    torch.manual_seed(1)
    features = torch.randn(1, 256, 4, 4)
    with torch.enable_grad():
        expected = decoder.decode(features).detach()
    with torch.no_grad():
        got = decoder.decode(features)
    assert got.shape == expected.shape == (1, 3, 64, 64)
    assert float((got - expected).abs().max()) <= (TOL if winograd else 1e-5)


def test_training_mode_keeps_the_layer_graph():
    decoder = _random_decoder(full_resolution=True, conv_transpose=False).train()
    features = torch.randn(2, 24, 4, 4)
    with torch.no_grad():  # training mode: batch statistics, whatever the grad mode
        train_maps = decoder.decode(features)
    running = decoder.deconv1.block[2].running_mean.clone()
    maps = decoder.decode(features)
    maps.mean().backward()
    assert not torch.equal(decoder.deconv1.block[2].running_mean, running)  # batch norm updated its stats
    assert all(p.grad is not None for p in decoder.parameters())
    decoder.eval()
    with torch.no_grad():
        eval_maps = decoder.decode(features)
    assert float((train_maps - eval_maps).abs().max()) > 1e-3  # the two modes really differ


def test_merged_upsampling_convolutions_restore_the_border_bias():
    # relu(conv3x3(conv1x1(up(x)))) with a 1x1 bias: merged into one 3x3 convolution when I < M
    torch.manual_seed(2)
    x = torch.randn(1, 3, 5, 4)
    w1, b1 = torch.randn(7, 3, 1, 1), torch.randn(7)
    w3, b3 = torch.randn(5, 7, 3, 3), torch.randn(5)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    expected = torch.nn.functional.conv2d(torch.nn.functional.conv2d(up, w1, b1), w3, b3, padding=1).relu()
    before = fast.winograd_enabled()
    fast.set_winograd(False)
    try:
        got = fast.upsample_conv1x1_conv3x3_relu(x, w1, b1, w3, b3)
    finally:
        fast.set_winograd(before)
    assert float((got - expected).abs().max()) <= 1e-5
    assert float(expected.abs().max()) > 1.0  # the border correction is large enough to matter


def test_instance_norm_kernels_match_torch():
    torch.manual_seed(3)
    parts = [torch.rand(2, 3, 9, 7) * 5 + 2, torch.randn(2, 4, 9, 7)]
    expected = torch.nn.functional.instance_norm(torch.cat(parts, dim=1), eps=1e-5)
    assert float((fast.instance_norm_cat(parts, 1e-5) - expected).abs().max()) <= 1e-5
    x = parts[0].clone()
    out = fast.instance_norm_(x, 1e-5)
    assert out.data_ptr() == x.data_ptr()
    assert float((out - expected[:, :3]).abs().max()) <= 1e-5


def test_resize_maps_skips_only_identity_resizes():
    torch.manual_seed(4)
    maps = torch.rand(1, 3, 32, 32)
    same = fast.resize_maps(maps, 32, (32, 32), (32, 32))
    assert torch.equal(same, maps)
    expected = torch.nn.functional.interpolate(maps[..., :32, :24], (16, 12), mode="bilinear")
    assert torch.equal(fast.resize_maps(maps, 32, (32, 24), (16, 12)), expected)
    up = torch.nn.functional.interpolate(maps, (64, 64), mode="bilinear")[..., :40, :64]
    assert torch.equal(fast.resize_maps(maps, 64, (40, 64), (40, 64)), up)


def test_set_winograd_rejects_non_bool():
    with pytest.raises(TypeError, match="enabled must be a bool"):
        fast.set_winograd(1)  # type: ignore[arg-type]


def test_half_resolution_variant_reads_only_the_tokens_that_cover_the_image():
    torch.manual_seed(3)
    decoder = InstanceDecoder(embed_dim=8, image_size=128, initial_features=2, full_resolution=False).eval()
    features = torch.randn(1, 8, 8, 8)  # 16 canvas pixels a token
    input_size, original_size = (72, 128), (36, 64)  # 4.5 token rows cover the image: 5 are read
    with torch.no_grad():
        maps = decoder(features, input_size, original_size)
        padded = features.clone()
        padded[..., 5:, :] = 100.0  # the padding's tokens
        assert torch.equal(decoder(padded, input_size, original_size), maps)
        changed = features.clone()
        changed[..., 4, :] += 1.0  # a token that covers the image does count
        assert not torch.equal(decoder(changed, input_size, original_size), maps)
    assert maps.shape == (1, 3, 36, 64)
    # micro-sam's layout keeps reading the whole canvas (its instance norms see the padding)
    full = InstanceDecoder(embed_dim=8, image_size=128, initial_features=2).eval()
    with torch.no_grad():
        assert not torch.equal(
            full(padded, input_size, original_size), full(features, input_size, original_size)
        )
