"""Generate the instance-decoder parity fixtures from torch_em's ``UNETR`` (micro-sam's AIS decoder).

Run it in the reference environment (``.venv-ref``, with ``pip install torch-em``), never from the library:

    .venv-ref/bin/python scripts/make_instance_decoder_fixtures.py

micro-sam builds its instance decoder in ``micro_sam.instance_segmentation.get_unetr``:
``UNETR(backbone="sam", encoder=<SAM image encoder>, out_channels=3, use_sam_stats=True,
final_activation="Sigmoid", use_skip_connection=False, resize_input=True, use_conv_transpose=...)`` with the
default ``initial_features=64``; its ``decoder_state`` is that model's state dict without the ``encoder*``
keys, and ``DecoderAdapter`` runs the decoder part on precomputed embeddings with the predictor's
``input_size`` and ``original_size``. This script builds the same ``UNETR`` on the small official SAM
encoders of ``make_golden.py`` (so ``embed_dim`` is their neck width) with ``initial_features=2`` to keep the
fixtures small, overwrites every decoder parameter and batch-norm statistic with seeded values, feeds the
official encoder's features of a seeded image, and stores per case in ``tests/fixtures/instance_decoder``:

- ``<case>_decoder_state.pt``: the ``decoder_state`` (micro-sam's format: UNETR keys without ``encoder.``);
- ``<case>.npz``: ``features`` ``(1, E, h, w)``, ``input_size``, ``original_size``, ``image_size``,
  ``initial_features``, ``conv_transpose`` and the output ``maps`` ``(1, 3, H, W)``.

It also records, in ``vit_b_decoder_keys.json``, the key names and shapes of the full-size decoder
(``embed_dim=256``, ``initial_features=64``, both up-sampling variants), for the layout test.

For the slow full-size test (not committed: ~450 MB of weights), ``--vit-b DIR`` writes a seeded random
vit_b with a seeded micro-sam-size decoder in micro-sam's checkpoint format (``vit_b_micro_sam.pt``:
``{"model_state": {"sam.<key>": …}, "decoder_state": …}``), a 512² image, micro-sam's features and maps (from
its own ``get_decoder``, as micro-sam runs it: not in eval mode), and
the labels of micro-sam's AIS post-processing (``InstanceSegmentationWithDecoder.generate``) on those maps
with its defaults and with thresholds at the maps' quantiles (random weights give maps with little
structure; the quantiles make the watershed do real work):

    .venv-ref/bin/python scripts/make_instance_decoder_fixtures.py --vit-b DIR
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT
from torch_em.model.unetr import UNETR

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "instance_decoder"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_golden import SMALL_CONFIGS, build_official, randomize  # noqa: E402

CASES = {  # case name: (small SAM config, up-sampling with transposed convolutions)
    "small_a": ("small_a", False),
    "small_b": ("small_b", False),
    "small_a_transpose": ("small_a", True),
}
INITIAL_FEATURES = 2


def build_unetr(encoder: torch.nn.Module, *, initial_features: int, conv_transpose: bool) -> UNETR:
    """torch_em's UNETR with micro-sam's ``get_unetr`` arguments."""
    return UNETR(
        backbone="sam",
        encoder=encoder,
        out_channels=3,
        use_sam_stats=True,
        final_activation="Sigmoid",
        use_skip_connection=False,
        resize_input=True,
        use_conv_transpose=conv_transpose,
        initial_features=initial_features,
    )


def decoder_state(unetr: UNETR) -> dict[str, torch.Tensor]:
    """micro-sam's ``decoder_state``: the UNETR state dict without the encoder keys."""
    return {k: v.clone() for k, v in unetr.state_dict().items() if not k.startswith("encoder")}


@torch.no_grad()
def randomize_decoder(unetr: UNETR, seed: int) -> None:
    """Seeded decoder parameters (make_golden's scales) and batch-norm running statistics."""
    gen = torch.Generator().manual_seed(seed)
    for name, param in sorted(unetr.named_parameters()):
        if name.startswith("encoder"):
            continue
        noise = torch.randn(param.shape, generator=gen)
        if param.ndim == 1 and name.endswith("weight"):
            param.copy_(1.0 + 0.1 * noise)
        elif param.ndim == 1:
            param.copy_(0.05 * noise)
        else:
            fan_in = math.prod(param.shape[1:])
            param.copy_(noise / math.sqrt(fan_in))
    for name, buf in sorted(unetr.named_buffers()):
        if name.endswith("running_mean"):
            buf.copy_(0.1 * torch.randn(buf.shape, generator=gen))
        elif name.endswith("running_var"):
            buf.copy_(1.0 + 0.3 * torch.rand(buf.shape, generator=gen))


def make_case(name: str, config_name: str, conv_transpose: bool, seed: int) -> None:
    cfg = SMALL_CONFIGS[config_name]
    sam = build_official(cfg)
    randomize(sam, seed=seed)
    sam.eval()
    h, w = cfg["original_size"]
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    features = predictor.get_image_embedding()
    input_size = tuple(predictor.input_size)
    original_size = tuple(predictor.original_size)

    unetr = build_unetr(sam.image_encoder, initial_features=INITIAL_FEATURES, conv_transpose=conv_transpose)
    randomize_decoder(unetr, seed=seed + 1)
    unetr.eval()
    with torch.no_grad():  # DecoderAdapter.forward: the no-skip decode, then postprocess_masks
        maps = unetr.decode((features, None, None), input_size, original_size)
    assert maps.shape == (1, 3, h, w), maps.shape

    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(decoder_state(unetr), OUT / f"{name}_decoder_state.pt")
    np.savez_compressed(
        OUT / f"{name}.npz",
        features=features.numpy().astype(np.float32),
        input_size=np.array(input_size),
        original_size=np.array(original_size),
        image_size=np.array(cfg["image_size"]),
        initial_features=np.array(INITIAL_FEATURES),
        conv_transpose=np.array(conv_transpose),
        maps=maps.numpy().astype(np.float32),
    )
    print(f"{name}: features {tuple(features.shape)} → maps {tuple(maps.shape)}")


def full_size_keys() -> dict[str, dict[str, list[int]]]:
    """Key names and shapes of micro-sam's full-size decoder (E = 256, initial_features = 64)."""
    encoder = ImageEncoderViT(depth=1, embed_dim=32, img_size=64, num_heads=1, patch_size=16, out_chans=256)
    found = {}
    for label, transpose in (("interpolate", False), ("conv_transpose", True)):
        unetr = build_unetr(encoder, initial_features=64, conv_transpose=transpose)
        found[label] = {k: list(v.shape) for k, v in decoder_state(unetr).items()}
    return found


#: Quantiles of the foreground, centre and boundary maps used as thresholds in the full-size case.
QUANTILE_THRESHOLDS = {
    "foreground_threshold": 0.3,
    "center_distance_threshold": 0.35,
    "boundary_distance_threshold": 0.35,
}


def make_vit_b(out_dir: Path, seed: int = 7) -> None:
    """Full-size vit_b + decoder in micro-sam's format, its maps and AIS labels on a 512² image."""
    from micro_sam.instance_segmentation import InstanceSegmentationWithDecoder, get_decoder
    from segment_anything import sam_model_registry

    sam = sam_model_registry["vit_b"]().eval()
    randomize(sam, seed=seed)
    unetr = build_unetr(sam.image_encoder, initial_features=64, conv_transpose=False)
    randomize_decoder(unetr, seed=seed + 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_state = {f"sam.{k}": v for k, v in sam.state_dict().items()}
    torch.save(
        {"model_state": model_state, "decoder_state": decoder_state(unetr)}, out_dir / "vit_b_micro_sam.pt"
    )

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(64, 64, 3)).astype(np.float32)
    image = np.kron(base, np.ones((8, 8, 1), np.float32)).astype(np.uint8)  # blocky: structure at 8 px
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    features = predictor.get_image_embedding()
    # micro-sam's own path (get_decoder → DecoderAdapter), which never puts the decoder in eval mode: its
    # batch norms normalise with each image's statistics
    decoder = get_decoder(sam.image_encoder, decoder_state(unetr), device="cpu")
    with torch.no_grad():
        maps = decoder(features, tuple(predictor.input_size), tuple(predictor.original_size))
    maps_np = maps[0].numpy().astype(np.float32)
    segmenter = InstanceSegmentationWithDecoder(predictor=None, decoder=None)
    segmenter.set_state(
        {"foreground": maps_np[0], "center_distances": maps_np[1], "boundary_distances": maps_np[2]}
    )
    default_labels = segmenter.generate()
    thresholds = {
        name: float(np.quantile(maps_np[i], q)) for i, (name, q) in enumerate(QUANTILE_THRESHOLDS.items())
    }
    quantile_labels = segmenter.generate(**thresholds)
    np.savez_compressed(
        out_dir / "vit_b_ais.npz",
        image=image,
        features=features.numpy().astype(np.float32),
        maps=maps_np,
        default_labels=np.asarray(default_labels, dtype=np.uint32),
        quantile_labels=np.asarray(quantile_labels, dtype=np.uint32),
        thresholds=np.array([thresholds[k] for k in QUANTILE_THRESHOLDS], dtype=np.float64),
    )
    print(
        f"vit_b: maps {maps_np.shape}, {int(np.max(default_labels))} objects (defaults), "
        f"{int(np.max(quantile_labels))} (quantile thresholds {thresholds})"
    )


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--vit-b":
        make_vit_b(Path(sys.argv[2]))
        return
    for i, (name, (config_name, transpose)) in enumerate(CASES.items()):
        make_case(name, config_name, transpose, seed=100 + 10 * i)
    keys = full_size_keys()
    (OUT / "vit_b_decoder_keys.json").write_text(json.dumps(keys, indent=1) + "\n", encoding="utf-8")
    print({label: len(k) for label, k in keys.items()}, "full-size keys")


if __name__ == "__main__":
    main()
