"""APG: seeds from the instance decoder's maps → point prompts → masks → suppression → labels."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

import napari_sam as ns
from napari_sam.data.synthetic import nuclei_2d
from napari_sam.engine.automatic.ais import check_maps
from napari_sam.engine.automatic.apg import (
    SeedMasks,
    apg_segment,
    core_tiles,
    decode_seeds,
    paint_masks,
    suppress_masks,
)
from napari_sam.engine.automatic.apg_seeds import seed_points
from napari_sam.engine.types import Embeddings, InstanceOptions


def maps_from_labels(labels: np.ndarray) -> np.ndarray:
    """What a perfect instance decoder predicts: foreground, centre distance and boundary distance, each
    normalised per object (0 at the centroid / deepest pixel, 1 at its farthest pixel / the boundary)."""
    fg = (labels > 0).astype(np.float32)
    centre = np.ones(labels.shape, np.float32)
    boundary = np.ones(labels.shape, np.float32)
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        mine = labels[box] == i
        rows, cols = np.nonzero(mine)
        yy, xx = np.indices(mine.shape)
        d = np.hypot(yy - rows.mean(), xx - cols.mean())
        centre[box][mine] = (d / max(d[mine].max(), 1e-6))[mine]
        depth = ndimage.distance_transform_edt(np.pad(mine, 1))[1:-1, 1:-1]
        boundary[box][mine] = (1 - depth / depth[mine].max())[mine]
    return np.stack([fg, centre, boundary])


def f1_at_half(pred: np.ndarray, truth: np.ndarray) -> float:
    """F1 of instance matching at IoU > 0.5 (a match at that level is unique)."""
    p = [pred == i for i in range(1, int(pred.max()) + 1)]
    t = [truth == i for i in np.unique(truth) if i]
    tp = sum(1 for a in p for b in t if (a & b).sum() / (a | b).sum() > 0.5)
    return 2 * tp / (len(p) + len(t))


def seed_maps(shape: tuple[int, int], regions: list[tuple[slice, slice]]) -> np.ndarray:
    """Maps whose seed pixels are exactly ``regions`` (all foreground)."""
    maps = np.ones((3, *shape), np.float32)
    for region in regions:
        maps[1][region] = 0.2
        maps[2][region] = 0.2
    return maps


@pytest.fixture(scope="module")
def sam():
    return ns.load_model("nano")


@pytest.fixture(scope="module")
def scene(sam):
    image, labels = nuclei_2d((256, 256), n_objects=12, seed=0)
    return image, labels, ns.compute_embeddings(image, sam), maps_from_labels(labels)


@pytest.fixture(scope="module")
def tiled(sam, scene):
    return ns.compute_embeddings(scene[0], sam, tile=(160, 24))  # 4 tiles of the 256² image


# ------------------------------------------------------------------------------------------ seeds


def test_seed_points_are_the_deepest_pixels_of_4_connected_components():
    regions = [
        (slice(10, 17), slice(20, 27)),  # 7×7 square: its centre
        (slice(30, 33), slice(0, 12)),  # on the left border, which counts as outside: 2 from it
        (slice(40, 42), slice(40, 42)),  # two squares touching at a corner: two components; the
        (slice(42, 44), slice(42, 44)),  # touching pixel is a boundary (0) of the second one
        (slice(50, 60), slice(50, 60)),  # in the corner: 5 from the border and from its top/left ring
    ]
    points = seed_points(check_maps(seed_maps((60, 60), regions)), InstanceOptions())
    # micro-sam 1.8.14's _derive_point_prompts gives the same points on these maps (checked by hand)
    assert points.tolist() == [[13, 23], [31, 2], [40, 40], [42, 43], [54, 54]]


def test_seed_thresholds_strict_below_for_distances_and_at_least_for_foreground():
    maps = seed_maps((20, 20), [(slice(5, 10), slice(5, 10))])
    maps[0] = 0.5  # foreground exactly at the threshold: still a seed
    assert len(seed_points(maps, InstanceOptions())) == 1
    assert len(seed_points(maps, InstanceOptions(foreground_threshold=0.51))) == 0
    assert len(seed_points(maps, InstanceOptions(center_distance_threshold=0.2))) == 0
    assert len(seed_points(maps, InstanceOptions(boundary_distance_threshold=0.21))) == 1


def test_no_seed_no_object(sam, scene):
    _, _, emb, maps = scene
    empty = maps.copy()
    empty[0] = 0.0  # no foreground anywhere
    labels, scores = apg_segment(sam, emb, empty, InstanceOptions())
    assert labels.shape == (256, 256) and labels.dtype == np.uint32 and not labels.any()
    assert scores.shape == (0,) and scores.dtype == np.float32


# ------------------------------------------------------------------------------------ end to end


def test_apg_recovers_synthetic_nuclei(sam, scene):
    _, truth, emb, maps = scene
    labels, scores = apg_segment(sam, emb, maps, InstanceOptions(), image_shape=(256, 256))
    assert labels.dtype == np.uint32 and scores.dtype == np.float32
    assert np.array_equal(np.unique(labels), np.arange(len(scores) + 1))  # 0, 1..N, no gap
    assert ((scores > 0) & (scores < 1.5)).all()
    # measured: 1.0 on this scene (nano's mask decoder; 0.98 on a 512² image of 30 nuclei)
    assert f1_at_half(labels, truth) >= 0.9
    # every object is at least min_size (25) pixels
    assert np.bincount(labels.ravel())[1:].min() >= 25


def _few_objects(maps: np.ndarray, truth: np.ndarray, keep: int) -> np.ndarray:
    """``maps`` with the foreground of all but the first ``keep`` objects of ``truth`` off (fewer seeds)."""
    out = maps.copy()
    out[0][truth > keep] = 0.0
    return out


def test_batch_size_changes_nothing(sam, scene):
    _, truth, emb, maps = scene
    maps = _few_objects(maps, truth, 4)
    ref_labels, ref_scores = apg_segment(sam, emb, maps, InstanceOptions(batch_size=32))
    assert len(ref_scores) >= 4
    for batch_size in (1, 3):
        labels, scores = apg_segment(sam, emb, maps, InstanceOptions(batch_size=batch_size))
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_multimask_decodes_the_best_of_three(sam, scene):
    _, _, emb, maps = scene
    points = seed_points(maps, InstanceOptions())[:3]
    decoded = {}
    for multimask in (False, True):
        masks = decoded[multimask] = decode_seeds(sam, emb, points, InstanceOptions(multimask=multimask))
        pred = ns.predict(emb, points=points[:, None, :], multimask=multimask)  # one object per point
        expected = pred.best_masks()
        assert masks.seeds.tolist() == list(range(len(points)))
        for k in range(len(points)):
            full = np.zeros(emb.original_size, bool)
            r0, c0, r1, c1 = masks.boxes[k]
            full[r0:r1, c0:c1] = masks.windows[k]
            np.testing.assert_array_equal(full, expected[k])
            assert masks.areas[k] == expected[k].sum()
        np.testing.assert_allclose(masks.iou, pred.iou_scores.max(axis=1), atol=1e-6)
    assert not np.array_equal(decoded[False].areas, decoded[True].areas)  # the three-mask head differs


def test_tiled_embeddings(sam, scene, tiled):
    _, truth, _, maps = scene
    assert isinstance(tiled, ns.TiledEmbeddings) and len(tiled.tiles) == 4
    labels, scores = apg_segment(sam, tiled, maps, InstanceOptions())
    assert len(scores) == labels.max()
    assert f1_at_half(labels, truth) >= 0.9  # measured 1.0


def test_tiled_seeds_go_to_the_tile_whose_core_holds_them(tiled):
    points = np.array([[0, 0], [127, 127], [128, 128], [255, 0], [100, 200]])
    tiles = core_tiles(tiled, points)
    for (r, c), t in zip(points, tiles, strict=True):
        r0, c0, r1, c1 = tiled.windows[t].core
        assert r0 <= r < r1 and c0 <= c < c1
    assert len(set(tiles.tolist())) == 4


# ----------------------------------------------------------------------- suppression and painting


def _masks(shape: tuple[int, int], regions: list[tuple[slice, slice]], iou: list[float]) -> SeedMasks:
    windows, boxes = [], []
    for region in regions:
        full = np.zeros(shape, bool)
        full[region] = True
        rows, cols = np.nonzero(full)
        box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        windows.append(full[box[0] : box[2], box[1] : box[3]].copy())
        boxes.append(box)
    n = len(regions)
    return SeedMasks(
        windows=windows,
        boxes=np.array(boxes, dtype=np.int64),
        areas=np.array([w.sum() for w in windows], dtype=np.int64),
        iou=np.array(iou, dtype=np.float32),
        stability=np.ones(n, dtype=np.float32),
        seeds=np.arange(n),
    )


def test_intersection_over_min_suppresses_a_mask_inside_a_better_one():
    big, small, apart = (
        (slice(0, 20), slice(0, 20)),
        (slice(5, 15), slice(5, 15)),
        (slice(30, 35), slice(0, 5)),
    )
    masks = _masks((40, 40), [small, big, apart], iou=[0.5, 0.9, 0.7])
    # IoU of small and big is 100 / 400: below 0.9, both kept (by score)
    assert suppress_masks(masks, 0.9).tolist() == [1, 2, 0]
    # intersection over the smaller mask is 1: the worse one goes, whichever is smaller
    assert suppress_masks(masks, 0.9, intersection_over_min=True).tolist() == [1, 2]
    masks.iou[:] = [0.9, 0.5, 0.7]
    assert suppress_masks(masks, 0.9, intersection_over_min=True).tolist() == [0, 2]
    assert suppress_masks(masks, 0.2).tolist() == [0, 2]  # IoU 0.25 > 0.2


def test_suppression_is_greedy_and_ranks_by_iou_times_stability():
    rng = np.random.default_rng(0)
    regions = []
    for _ in range(40):
        r, c = rng.integers(0, 50, 2)
        h, w = rng.integers(4, 15, 2)
        regions.append((slice(r, r + h), slice(c, c + w)))
    masks = _masks((70, 70), regions, iou=rng.uniform(0.5, 1.0, 40).tolist())
    masks.stability = rng.uniform(0.5, 1.0, 40).astype(np.float32)
    full = np.zeros((40, 70, 70), bool)
    for k, region in enumerate(regions):
        full[k][region] = True
    for threshold in (0.1, 0.3, 0.6):
        kept: list[int] = []
        for i in np.argsort(-(masks.iou * masks.stability), kind="stable"):
            ious = [(full[i] & full[j]).sum() / (full[i] | full[j]).sum() for j in kept]
            if all(v <= threshold for v in ious):
                kept.append(int(i))
        assert suppress_masks(masks, threshold).tolist() == kept


def test_paint_larger_mask_wins_and_pieces_are_split_and_filtered():
    # mask 0 (small, best score) overlaps mask 1 (large) on its right half; mask 2 is cut in two by mask 1
    masks = _masks(
        (30, 30),
        [(slice(2, 8), slice(0, 10)), (slice(0, 20), slice(5, 15)), (slice(10, 14), slice(0, 30))],
        iou=[0.9, 0.8, 0.7],
    )
    labels, scores = paint_masks(masks, (30, 30), min_size=10)
    # mask 1 (200 px) keeps the contested pixels; mask 0 keeps its left 6×5 = 30 px; mask 2 keeps a 4×5 piece
    # (20 px) on the left and a 4×15 piece (60 px) on the right; raster order of first pixels
    assert labels.max() == 4
    assert labels[0, 5] == 1 and labels[2, 0] == 2 and labels[10, 0] == 3 and labels[10, 15] == 4
    assert (labels[0:20, 5:15] == 1).all()
    np.testing.assert_allclose(scores, [0.8, 0.9, 0.7, 0.7])
    assert np.bincount(labels.ravel()).tolist() == [900 - 200 - 30 - 20 - 60, 200, 30, 20, 60]
    labels, scores = paint_masks(masks, (30, 30), min_size=25)  # the 20-pixel piece goes
    assert labels.max() == 3 and not labels[10, 0] and len(scores) == 3


# ---------------------------------------------------------------------------------------- checks


def test_bad_input_is_refused_by_name(sam, scene):
    _, _, emb, maps = scene
    opts = InstanceOptions()
    with pytest.raises(ValueError, match="maps"):
        apg_segment(sam, emb, maps[:2], opts)
    with pytest.raises(ValueError, match="maps"):
        apg_segment(sam, emb, maps[0], opts)
    with pytest.raises(ValueError, match="maps"):
        apg_segment(sam, emb, maps[:, :128], opts)  # not the embeddings' image size
    with pytest.raises(ValueError, match="maps"):
        apg_segment(sam, emb, np.where(maps > 0.5, np.nan, maps), opts)
    with pytest.raises(ValueError, match="maps"):
        apg_segment(sam, emb, maps.astype(str), opts)
    with pytest.raises(ValueError, match="image_shape"):
        apg_segment(sam, emb, maps, opts, image_shape=(256, 255))
    with pytest.raises(TypeError, match="opts"):
        apg_segment(sam, emb, maps, {"batch_size": 4})
    with pytest.raises(TypeError, match="sam"):
        apg_segment(None, emb, maps, opts)
    with pytest.raises(TypeError, match="embeddings"):
        apg_segment(sam, emb.features, maps, opts)


# ------------------------------------------------------------------------------- micro-sam parity

REF_PYTHON = Path(__file__).resolve().parents[3] / ".venv-ref" / "bin" / "python"

# micro-sam's APG pieces (prompt derivation, batched_inference, apply_nms) on a seeded random SAM whose
# input is 1024 (micro-sam's batched_inference scales prompts for 1024) with a small encoder
_REFERENCE_APG = """
import json, sys
from functools import partial
import numpy as np, torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from micro_sam.inference import batched_inference
from micro_sam.instance_segmentation import _derive_point_prompts
from micro_sam.util import apply_nms

c = json.loads(open("config.json").read())
data = np.load("inputs.npz")
torch.manual_seed(7)  # a seed whose masks leave labels in all three variants (58, 3 and 102)
side = c["image_size"] // c["patch_size"]
encoder = ImageEncoderViT(
    img_size=c["image_size"], patch_size=c["patch_size"], embed_dim=c["encoder_embed_dim"],
    depth=c["encoder_depth"], num_heads=c["encoder_num_heads"], mlp_ratio=c["mlp_ratio"],
    out_chans=c["prompt_embed_dim"], qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
    use_rel_pos=True, window_size=c["window_size"], global_attn_indexes=c["encoder_global_attn_indexes"],
)
prompt_encoder = PromptEncoder(
    embed_dim=c["prompt_embed_dim"], image_embedding_size=(side, side),
    input_image_size=(c["image_size"], c["image_size"]), mask_in_chans=c["mask_in_chans"],
)
transformer = TwoWayTransformer(
    depth=c["decoder_depth"], embedding_dim=c["prompt_embed_dim"], mlp_dim=c["decoder_mlp_dim"],
    num_heads=c["decoder_num_heads"], attention_downsample_rate=c["decoder_attention_downsample_rate"],
)
decoder = MaskDecoder(
    transformer_dim=c["prompt_embed_dim"], transformer=transformer, num_multimask_outputs=3,
    iou_head_depth=c["iou_head_depth"], iou_head_hidden_dim=c["iou_head_hidden_dim"],
)
sam = Sam(image_encoder=encoder, prompt_encoder=prompt_encoder, mask_decoder=decoder).eval()
torch.save(sam.state_dict(), "weights.pth")
predictor = SamPredictor(sam)
predictor.set_image(data["rgb"])
maps = data["maps"]
prompts = _derive_point_prompts(maps[0], maps[1], maps[2])
out = {"features": predictor.features.numpy(), "input_size": np.array(predictor.input_size)}
for name, multimask, iomin in (("plain", False, False), ("multimask", True, False), ("iomin", False, True)):
    masks = batched_inference(
        predictor, image=None, batch_size=32, return_instance_segmentation=False,
        multimasking=multimask, **prompts,
    )
    out[name] = apply_nms(masks, min_size=25, nms_thresh=0.9, intersection_over_min=iomin)
np.savez("reference.npz", **out)
"""

_PARITY_CONFIG = {
    "encoder_embed_dim": 64,
    "encoder_depth": 2,
    "encoder_num_heads": 4,
    "encoder_global_attn_indexes": [1],
    "image_size": 1024,
    "patch_size": 16,
    "window_size": 8,
    "mlp_ratio": 4.0,
    "prompt_embed_dim": 64,
    "mask_in_chans": 16,
    "decoder_depth": 2,
    "decoder_num_heads": 4,
    "decoder_mlp_dim": 128,
    "decoder_attention_downsample_rate": 2,
    "iou_head_depth": 3,
    "iou_head_hidden_dim": 64,
}


@pytest.mark.slow
@pytest.mark.skipif(not REF_PYTHON.is_file(), reason="needs the reference environment (.venv-ref)")
def test_labels_equal_micro_sams_apg(tmp_path, scene):
    from napari_sam.engine.loading import model_weights_id
    from napari_sam.engine.types.values import PreprocessParams
    from napari_sam.model import SamConfig, build_sam

    image, _, _, maps = scene
    scaled = (image - np.percentile(image, 1)) / (np.percentile(image, 99.8) - np.percentile(image, 1))
    gray = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    np.savez(tmp_path / "inputs.npz", rgb=np.repeat(gray[..., None], 3, axis=2), maps=maps)
    (tmp_path / "config.json").write_text(json.dumps(_PARITY_CONFIG))
    (tmp_path / "reference.py").write_text(_REFERENCE_APG)
    subprocess.run(
        [str(REF_PYTHON), "reference.py"],
        check=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": "", "OMP_NUM_THREADS": "2"},
        timeout=900,
    )
    reference = np.load(tmp_path / "reference.npz")
    config = SamConfig.from_dict({**_PARITY_CONFIG, "encoder_global_attn_indexes": (1,)})
    model = build_sam(config, checkpoint=tmp_path / "weights.pth")
    # the reference's own features: this compares decoding, suppression and painting, not the encoder
    emb = Embeddings(
        features=torch.from_numpy(reference["features"]),
        input_size=tuple(reference["input_size"].tolist()),
        original_size=(256, 256),
        image_size=1024,
        model_name="parity",
        weights_sha256=model_weights_id(model),
        preprocessing=PreprocessParams("none", None, None, None),
        model=model,
    )
    # measured: identical labels, numbering included, in all three variants (micro-sam 1.8.14)
    for name, opts in (
        ("plain", InstanceOptions()),
        ("multimask", InstanceOptions(multimask=True)),
        ("iomin", InstanceOptions(intersection_over_min=True)),
    ):
        labels, scores = apg_segment(model, emb, maps, opts)
        assert reference[name].max() > 0, name
        np.testing.assert_array_equal(labels, reference[name], err_msg=name)
        assert len(scores) == labels.max()
