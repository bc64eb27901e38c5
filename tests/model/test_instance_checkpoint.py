"""Loading a model's instance decoder: micro-sam's checkpoint format, a decoder file beside the SAM file,
our safetensors, and the errors for weights that do not fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_sam.errors import CheckpointError
from napari_sam.model import InstanceDecoder, SamConfig, build_sam, save_safetensors
from napari_sam.model.checkpoint import sha256_file

TINY = SamConfig(
    encoder_embed_dim=32,
    encoder_depth=2,
    encoder_num_heads=2,
    encoder_global_attn_indexes=(1,),
    image_size=128,
    window_size=4,
    prompt_embed_dim=32,
    decoder_mlp_dim=64,
    iou_head_hidden_dim=32,
)


def _tiny_pair(seed: int = 0, **decoder_args) -> tuple[dict, dict]:
    torch.manual_seed(seed)
    sam = build_sam(TINY)
    args = {"embed_dim": 32, "image_size": 128, "initial_features": 2, **decoder_args}
    decoder = InstanceDecoder(**args)
    for p in decoder.parameters():  # away from the default init, so that a mix-up shows
        p.data.normal_(0, 0.2)
    return sam.state_dict(), decoder.state_dict()


def _maps(decoder: InstanceDecoder, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    features = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        return decoder.eval()(features, (128, 96), (64, 48))


def _reference_decoder(state: dict, *, micro_sam: bool = True, **decoder_args) -> InstanceDecoder:
    """The decoder as micro-sam runs it (never in eval mode: batch norms on each image's statistics), or
    as we run our own (``micro_sam=False``)."""
    decoder = InstanceDecoder(embed_dim=32, image_size=128, initial_features=2, **decoder_args)
    decoder.load_state_dict(state)
    if micro_sam:
        decoder.train()
    return decoder


def _micro_sam_maps(decoder: InstanceDecoder, seed: int = 1) -> torch.Tensor:
    """What micro-sam's DecoderAdapter gives: the decoder in training mode, without autograd."""
    torch.manual_seed(seed)
    features = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        return decoder.train()(features, (128, 96), (64, 48))


def test_micro_sam_checkpoint_with_decoder_state(tmp_path: Path) -> None:
    sam_state, decoder_state = _tiny_pair()
    path = tmp_path / "finetuned.pt"
    torch.save(
        {"model_state": {f"sam.{k}": v for k, v in sam_state.items()}, "decoder_state": decoder_state}, path
    )
    sam = build_sam(path)
    assert sam.has_instance_decoder
    assert all(torch.equal(sam.state_dict()[k], v) for k, v in sam_state.items())
    assert torch.allclose(
        _maps(sam.instance_decoder), _micro_sam_maps(_reference_decoder(decoder_state)), atol=1e-5
    )
    assert sam.instance_decoder.config.batch_statistics  # as micro-sam runs it
    assert sam.weights_sha256 == sha256_file(path)
    assert not build_sam(path, instance_decoder=False).has_instance_decoder


def test_decoder_file_beside_the_sam_file(tmp_path: Path) -> None:
    sam_state, decoder_state = _tiny_pair(conv_transpose=True)
    torch.save(sam_state, tmp_path / "vit_tiny.pt")
    torch.save(decoder_state, tmp_path / "vit_tiny_decoder.pt")
    sam = build_sam(tmp_path / "vit_tiny.pt")
    assert sam.instance_decoder is not None and sam.instance_decoder.config.conv_transpose
    expected = _micro_sam_maps(_reference_decoder(decoder_state, conv_transpose=True))
    assert torch.allclose(_maps(sam.instance_decoder), expected, atol=1e-5)
    # the SAM file's id: the decoder leaves embeddings unchanged
    assert sam.weights_sha256 == sha256_file(tmp_path / "vit_tiny.pt")


def test_explicit_decoder_file_and_required_decoder(tmp_path: Path) -> None:
    sam_state, decoder_state = _tiny_pair()
    torch.save(sam_state, tmp_path / "model.pt")
    assert not build_sam(tmp_path / "model.pt").has_instance_decoder
    with pytest.raises(CheckpointError, match="holds no instance decoder and none lies beside it"):
        build_sam(tmp_path / "model.pt", instance_decoder=True)
    torch.save(decoder_state, tmp_path / "elsewhere.pth")
    sam = build_sam(tmp_path / "model.pt", instance_decoder=tmp_path / "elsewhere.pth")
    expected = _micro_sam_maps(_reference_decoder(decoder_state))
    assert torch.allclose(_maps(sam.instance_decoder), expected, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="instance decoder file not found"):
        build_sam(tmp_path / "model.pt", instance_decoder=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="needs weights"):
        build_sam(TINY, instance_decoder=tmp_path / "elsewhere.pth")


def test_our_safetensors_keep_the_decoder_and_its_architecture(tmp_path: Path) -> None:
    sam_state, decoder_state = _tiny_pair(full_resolution=False)
    sam = build_sam(TINY)
    sam.load_state_dict(sam_state)
    sam.instance_decoder = _reference_decoder(decoder_state, micro_sam=False, full_resolution=False).eval()
    path = save_safetensors(sam, tmp_path / "model.safetensors", config=TINY)
    loaded = build_sam(path)
    assert loaded.instance_decoder is not None
    assert not loaded.instance_decoder.config.full_resolution
    assert not loaded.instance_decoder.config.batch_statistics  # ours: running statistics
    assert torch.equal(_maps(loaded.instance_decoder), _maps(sam.instance_decoder))
    assert sorted(loaded.state_dict()) == sorted(sam.state_dict())


def test_a_decoder_for_other_embeddings_is_refused(tmp_path: Path) -> None:
    sam_state, _ = _tiny_pair()
    wrong = InstanceDecoder(embed_dim=16, image_size=128, initial_features=2).state_dict()
    torch.save(sam_state, tmp_path / "model.pt")
    torch.save(wrong, tmp_path / "model_decoder.pt")
    with pytest.raises(CheckpointError, match=r"16-channel embeddings.*32-channel"):
        build_sam(tmp_path / "model.pt")


def test_a_file_without_decoder_keys_is_refused(tmp_path: Path) -> None:
    sam_state, decoder_state = _tiny_pair()
    torch.save(sam_state, tmp_path / "model.pt")
    torch.save({"something.weight": torch.zeros(3)}, tmp_path / "model_decoder.pt")
    with pytest.raises(CheckpointError, match="holds no instance decoder"):
        build_sam(tmp_path / "model.pt")
    broken = dict(decoder_state)
    broken.pop("decoder.blocks.0.block.1.weight")
    torch.save(broken, tmp_path / "model_decoder.pt")
    with pytest.raises(CheckpointError, match=r"missing keys.*decoder\.blocks\.0\.block\.1\.weight"):
        build_sam(tmp_path / "model.pt")


def test_batch_statistics_decode_each_image_alone_and_leave_the_running_statistics() -> None:
    _, decoder_state = _tiny_pair()
    ours = InstanceDecoder(embed_dim=32, image_size=128, initial_features=2, batch_statistics=True)
    ours.load_state_dict(decoder_state)
    ours.eval()
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    torch.manual_seed(5)
    features = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        both = ours(features, (128, 96), (64, 48))
        alone = [ours(features[i : i + 1], (128, 96), (64, 48)) for i in range(2)]
    assert torch.allclose(both, torch.cat(alone), atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in ours.state_dict().items())
    with torch.no_grad():  # micro-sam: the decoder in training mode
        theirs = _reference_decoder(decoder_state).train()(features[:1], (128, 96), (64, 48))
    assert torch.allclose(alone[0], theirs, atol=1e-5)
    eval_mode = _reference_decoder(decoder_state, micro_sam=False).eval()
    with torch.no_grad():
        assert not torch.allclose(eval_mode(features[:1], (128, 96), (64, 48)), alone[0], atol=1e-3)


def test_the_shipped_nano_decoder_is_checked_before_it_is_attached(monkeypatch, tmp_path: Path) -> None:
    from napari_sam.engine import loading
    from napari_sam.errors import WeightsHashError, WeightsUnavailableError
    from napari_sam.model import registry

    assert loading.open_model("nano").instance_decoder is not None
    monkeypatch.setattr(registry, "shipped_nano_decoder_path", lambda: tmp_path / "nano_decoder.safetensors")
    with pytest.raises(WeightsUnavailableError, match="nano instance decoder file is missing"):
        loading.open_model("nano")
    (tmp_path / "nano_decoder.safetensors").write_bytes(b"not the shipped decoder")
    with pytest.raises(WeightsHashError, match=r"nano_decoder\.safetensors has sha256"):
        loading.open_model("nano")
