"""The instance decoder's maps (engine.automatic.maps): one image, tiled images stitched from tile cores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sam.engine.automatic.ais import ais_labels
from napari_sam.engine.automatic.maps import predict_maps
from napari_sam.engine.embed.tiling import tile_windows
from napari_sam.engine.types import Embeddings, PreprocessParams, TiledEmbeddings, TileSpec
from napari_sam.model import InstanceDecoder

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "instance_decoder"
GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
PREPROCESSING = PreprocessParams(normalize="none", percentiles=None, contrast_limits=None, channel=None)


def embeddings(
    features: torch.Tensor, input_size: tuple[int, int], original_size: tuple[int, int]
) -> Embeddings:
    return Embeddings(
        features=features,
        input_size=input_size,
        original_size=original_size,
        image_size=16 * int(features.shape[-1]),
        model_name="test",
        weights_sha256="0" * 64,
        preprocessing=PREPROCESSING,
    )


@pytest.fixture(scope="module")
def small_b():
    """``(sam, decoder with micro-sam's seeded-random weights, Embeddings, micro-sam's maps (3, H, W))``."""
    from napari_sam.model import SamConfig, build_sam

    config = SamConfig.from_dict(json.loads((GOLDEN / "small_b" / "config.json").read_text()))
    sam = build_sam(config, checkpoint=GOLDEN / "small_b" / "weights.pth")
    with np.load(FIXTURES / "small_b.npz") as data:
        arrays = {key: data[key] for key in data.files}
    decoder = InstanceDecoder(
        embed_dim=int(arrays["features"].shape[1]),
        image_size=int(arrays["image_size"]),
        initial_features=int(arrays["initial_features"]),
    )
    state = torch.load(FIXTURES / "small_b_decoder_state.pt", map_location="cpu", weights_only=True)
    decoder.load_state_dict(state, strict=True)
    decoder.eval()
    emb = embeddings(
        torch.from_numpy(arrays["features"]),
        tuple(int(v) for v in arrays["input_size"]),
        tuple(int(v) for v in arrays["original_size"]),
    )
    return sam, decoder, emb, arrays["maps"][0]


def test_maps_of_one_image_are_micro_sams(small_b) -> None:
    sam, decoder, emb, theirs = small_b
    ours = predict_maps(sam, emb, decoder=decoder)
    assert ours.shape == (3, *emb.original_size) and ours.dtype == np.float32
    assert isinstance(ours, np.ndarray)
    assert float(np.abs(ours - theirs).max()) <= 1e-4
    assert ours.min() >= 0.0 and ours.max() <= 1.0


def test_float16_features_are_decoded_in_float32(small_b) -> None:
    sam, decoder, emb, theirs = small_b
    half = embeddings(emb.features.half(), emb.input_size, emb.original_size)
    ours = predict_maps(sam, half, decoder=decoder)
    assert ours.dtype == np.float32
    assert float(np.abs(ours - theirs).max()) < 5e-3  # only the features' rounding differs
    assert next(decoder.parameters()).dtype == torch.float32


def test_the_models_own_decoder_is_used(small_b) -> None:
    sam, decoder, emb, theirs = small_b
    with pytest.raises(ValueError, match="has no instance decoder; use mode='amg' or a model with one"):
        predict_maps(sam, emb)
    sam.instance_decoder = decoder
    try:
        assert float(np.abs(predict_maps(sam, emb) - theirs).max()) <= 1e-4
    finally:
        del sam.instance_decoder


def test_bad_arguments(small_b) -> None:
    sam, decoder, emb, _ = small_b
    with pytest.raises(TypeError, match="embeddings"):
        predict_maps(sam, emb.features, decoder=decoder)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decoder"):
        predict_maps(sam, emb, decoder=torch.nn.Conv2d(3, 3, 1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="sam"):
        predict_maps(decoder, emb, decoder=decoder)  # type: ignore[arg-type]
    wide = embeddings(torch.zeros(1, 32, 10, 10), emb.input_size, emb.original_size)
    with pytest.raises(ValueError, match=r"\(1, 64, h, w\)"):
        predict_maps(sam, wide, decoder=decoder)


# ----------------------------------------------------------------------------------------------- tiles
# A 128 x 224 image at 2x on a 512 canvas (32 x 32 tokens of 8 image pixels), and its tiles of 128 pixels
# (halo 48: 4 tiles, core borders >= 48 pixels = 6 tokens from a tile's edge). Each tile's features are
# the whole image's tokens under it, top-left on the tile's canvas, as an encoder with a small receptive
# field would give them; what differs between the two is only what the decoder sees beyond a tile's edge.
SHAPE = (128, 224)
SPEC = TileSpec(tile_size=128, halo=48)
SCALE = 2  # canvas pixels per image pixel
TOKEN = 16 // SCALE  # image pixels per token


def tiled_from_whole(tokens: torch.Tensor) -> tuple[Embeddings, TiledEmbeddings]:
    """Whole-image embeddings of ``(1, C, 16, 28)`` tokens and the tiled embeddings made of them."""
    grid = 32
    canvas = torch.zeros(1, tokens.shape[1], grid, grid)
    canvas[..., : tokens.shape[2], : tokens.shape[3]] = tokens
    whole = embeddings(canvas, (SHAPE[0] * SCALE, SHAPE[1] * SCALE), SHAPE)
    windows = tile_windows(SHAPE, SPEC)
    tiles = []
    for window in windows:
        r0, c0, r1, c1 = window.bounds
        crop = tokens[..., r0 // TOKEN : r1 // TOKEN, c0 // TOKEN : c1 // TOKEN]
        tile_canvas = torch.zeros_like(canvas)
        tile_canvas[..., : crop.shape[2], : crop.shape[3]] = crop
        tiles.append(embeddings(tile_canvas, ((r1 - r0) * SCALE, (c1 - c0) * SCALE), (r1 - r0, c1 - c0)))
    return whole, TiledEmbeddings(tiles=tiles, windows=windows, spec=SPEC, original_size=SHAPE)


def distance_to_tile_edge(tiled: TiledEmbeddings) -> np.ndarray:
    """Per pixel: how far (pixels) it lies from the inner edges of the tile whose core holds it."""
    rows, cols = np.indices(SHAPE)
    out = np.full(SHAPE, np.inf)
    for window in tiled.windows:
        r0, c0, r1, c1 = window.bounds
        cr0, cc0, cr1, cc1 = window.core
        core = (slice(cr0, cr1), slice(cc0, cc1))
        edges = [np.full(SHAPE, np.inf)]
        if r0 > 0:
            edges.append(rows - r0)
        if c0 > 0:
            edges.append(cols - c0)
        if r1 < SHAPE[0]:
            edges.append(r1 - 1 - rows)
        if c1 < SHAPE[1]:
            edges.append(c1 - 1 - cols)
        out[core] = np.minimum.reduce(edges)[core]
    return out


@pytest.fixture(scope="module")
def random_decoder() -> InstanceDecoder:
    torch.manual_seed(3)
    decoder = InstanceDecoder(embed_dim=16, image_size=512, initial_features=2, full_resolution=False)
    for module in decoder.modules():  # batch-norm statistics away from the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    return decoder.eval()


def test_tiled_maps_are_the_tiles_cores(small_b, random_decoder) -> None:
    sam = small_b[0]
    tokens = torch.randn(
        1, 16, SHAPE[0] // TOKEN, SHAPE[1] // TOKEN, generator=torch.Generator().manual_seed(1)
    )
    _, tiled = tiled_from_whole(tokens)
    assert len(tiled.windows) == 4
    stitched = predict_maps(sam, tiled, decoder=random_decoder)
    assert stitched.shape == (3, *SHAPE) and stitched.dtype == np.float32
    covered = np.zeros(SHAPE, dtype=int)
    for window, tile in zip(tiled.windows, tiled.tiles, strict=True):
        # the tile decoded alone, as an image of its own (predict_maps decoded the four together)
        own = predict_maps(sam, tile, decoder=random_decoder)
        r0, c0, _, _ = window.bounds
        cr0, cc0, cr1, cc1 = window.core
        np.testing.assert_allclose(
            stitched[:, cr0:cr1, cc0:cc1], own[:, cr0 - r0 : cr1 - r0, cc0 - c0 : cc1 - c0], atol=1e-5
        )
        covered[cr0:cr1, cc0:cc1] += 1
    assert (covered == 1).all()  # the cores tile the image
    # micro-sam's decoder normalises each canvas as a whole (instance norm), so a tile's maps are not the
    # whole image's even far from its edges: here (random tokens, random decoder) up to ~0.3
    whole, _ = tiled_from_whole(tokens)
    untiled = predict_maps(sam, whole, decoder=random_decoder)
    assert distance_to_tile_edge(tiled).min() >= 48
    assert np.abs(stitched - untiled).max() > 1e-2


class TokenMaps(InstanceDecoder):
    """An instance decoder whose maps are the sigmoid of the first three feature channels (token resolution):
    objects drawn in the features come out in the maps, through the decoder's real resizing and cropping."""

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(features[:, :3])


def object_tokens() -> tuple[torch.Tensor, np.ndarray]:
    """Logits of discs' foreground, centre and boundary distance on the tokens; the discs' pixel centres."""
    centres = np.array([[8.0, 14.0], [4.0, 5.0], [11.0, 22.0], [9.0, 4.0], [4.5, 19.5]])  # (row, col) tokens
    radius = 2.6
    rows, cols = np.indices((SHAPE[0] // TOKEN, SHAPE[1] // TOKEN), dtype=np.float64) + 0.5
    dist = np.min([np.hypot(rows - r, cols - c) for r, c in centres], axis=0) / radius  # 0 centre, 1 edge
    inside = dist < 1
    fg = np.where(inside, 6.0, -6.0)
    centre_logit = np.where(inside, 8 * (dist - 0.5), 6.0)
    boundary_logit = np.where(inside, 8 * (dist - 0.5), 6.0)
    tokens = torch.from_numpy(np.stack([fg, centre_logit, boundary_logit])[None].astype(np.float32))
    return tokens, centres * TOKEN


def test_object_across_a_tile_border_is_one_label(small_b) -> None:
    sam = small_b[0]
    decoder = TokenMaps(embed_dim=3, image_size=512, initial_features=2).eval()
    tokens, centres = object_tokens()
    whole, tiled = tiled_from_whole(tokens)
    untiled_maps = predict_maps(sam, whole, decoder=decoder)
    stitched_maps = predict_maps(sam, tiled, decoder=decoder)
    assert np.abs(stitched_maps - untiled_maps).max() < 1e-5
    untiled, stitched = ais_labels(untiled_maps), ais_labels(stitched_maps)
    assert stitched.max() == untiled.max() == len(centres)
    assert np.array_equal(stitched, untiled)
    # the first disc spans the core border between two tiles: one label on both sides
    core_borders = {w.core[3] for w in tiled.windows if w.core[3] < SHAPE[1]}
    row, col = centres[0].astype(int)
    crossing = [b for b in core_borders if abs(b - col) < 2.6 * TOKEN]
    assert crossing, (core_borders, col)
    border = crossing[0]
    assert stitched[row, border - 5] == stitched[row, border + 5] == stitched[row, col] > 0
