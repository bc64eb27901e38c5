"""segment(): the headless contract for 2D images."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.engine.decode.objects import plan_objects
from napari_sam.engine.decode.prompts import normalize_prompts
from napari_sam.engine.types import TiledEmbeddings


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = rng.normal(800, 50, (120, 160))
    img[20:60, 30:80] += 20000
    img[70:110, 100:150] += 15000
    return np.clip(img, 0, 65535).astype(np.uint16)


def test_import_does_not_load_torch_napari_or_qt():
    code = (
        "import sys, napari_sam; "
        "heavy = [m for m in ('torch', 'napari', 'qtpy', 'PyQt6', 'PySide6') if m in sys.modules]; "
        "assert not heavy, heavy; print(napari_sam.__version__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ns.__version__


def test_public_names_resolve_lazily():
    assert callable(ns.segment) and callable(ns.predict) and callable(ns.load_model)
    assert callable(ns.compute_embeddings)
    with pytest.raises(AttributeError):
        ns.does_not_exist  # noqa: B018


def test_segment_uint16_with_boxes_from_a_weights_path(image, small_weights):
    boxes = [[20, 30, 60, 80], [70, 100, 110, 150]]
    labels = ns.segment(image, boxes=boxes, model=str(small_weights), device="cpu")
    assert labels.dtype == np.uint32
    assert labels.shape == image.shape
    assert set(np.unique(labels)) <= {0, 1, 2}


def test_one_box_equals_the_best_prediction(image, small_model):
    emb = ns.compute_embeddings(image, small_model)
    box = [20, 30, 60, 80]
    labels = ns.segment(image, boxes=[box], embeddings=emb)
    pred = ns.predict(emb, box=box, multimask=False)
    np.testing.assert_array_equal(labels == 1, pred.masks[0, 0])


def test_lone_point_uses_the_best_of_three(image, small_model):
    emb = ns.compute_embeddings(image, small_model)
    labels = ns.segment(image, points=[[40, 50]], embeddings=emb)
    pred = ns.predict(emb, points=[[40, 50]], multimask=True)
    np.testing.assert_array_equal(labels == 1, pred.best_masks()[0])


def test_overlaps_go_to_the_higher_predicted_iou(image, small_model):
    emb = ns.compute_embeddings(image, small_model)
    boxes = np.array([[10, 10, 100, 140], [30, 40, 90, 120], [0, 0, 120, 160]])
    labels = ns.segment(image, boxes=boxes, embeddings=emb)
    pred = ns.predict(emb, box=boxes, multimask=False)
    masks, scores = pred.masks[:, 0], pred.iou_scores[:, 0]
    expected = np.zeros(image.shape, np.uint32)
    for k in np.argsort(scores):  # paint low to high: the best wins
        expected[masks[k]] = k + 1
    np.testing.assert_array_equal(labels, expected)


def test_plan_objects_follows_the_contract():
    boxes = np.array([[0, 0, 50, 50], [10, 10, 20, 20]], float)
    points = np.array([[15, 15], [30, 30], [80, 80], [90, 90], [5, 70]], float)
    labels = np.array([1, 0, 1, 1, 0])
    objects = plan_objects(
        normalize_prompts(points=points, point_labels=labels, boxes=boxes, spatial_shape=(100, 100))
    )
    assert len(objects) == 4
    # point (15, 15) is in both boxes: it goes to the smaller one
    assert objects[1].box is not None and len(objects[1].points) == 1
    # the negative point (30, 30) refines the big box
    assert objects[0].labels == [0]
    # free foreground points are objects of their own, with the free negative point added
    assert [o.labels for o in objects[2:]] == [[1, 0], [1, 0]]
    np.testing.assert_array_equal(objects[2].points[0], [80, 80])
    np.testing.assert_array_equal(objects[3].points[1], [5, 70])


def test_half_open_boxes_do_not_own_points_on_their_far_edge():
    prompts = normalize_prompts(
        points=[[50.0, 20.0]], point_labels=[1], boxes=[[0, 0, 50, 50.0]], spatial_shape=(99, 99)
    )
    objects = plan_objects(prompts)
    assert len(objects) == 2 and not objects[0].points


def test_background_only_points_make_no_object(image, small_model):
    emb = ns.compute_embeddings(image, small_model)
    labels = ns.segment(image, points=[[5, 5]], point_labels=[0], embeddings=emb)
    assert labels.max() == 0


def test_a_box_spanning_several_slices_says_to_draw_it_on_one(small_model):
    with pytest.raises(ValueError, match="propagation"):
        ns.segment(np.zeros((4, 32, 32), np.uint16), boxes=[[1, 5, 5, 3, 9, 9]], model=small_model)


def test_default_model_is_the_shipped_nano(image):
    labels = ns.segment(image, boxes=[[20, 30, 60, 80]], device="cpu")
    assert labels.dtype == np.uint32 and labels.shape == image.shape
    assert ns.load_model(device="cpu").name == "nano"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"points": [[1, 2, 3]]}, ValueError, "points must have shape \\(N, 2\\)"),
        ({"boxes": [[1, 2, 3]]}, ValueError, "boxes must have shape \\(M, 4\\)"),
        ({"boxes": [[30, 10, 20, 40]]}, ValueError, "min < max"),
        ({"points": [[500, 5]]}, ValueError, "outside the image"),
        ({"points": [[5, 5]], "point_labels": [1, 0]}, ValueError, "one label per point"),
        ({"points": [[5, 5]], "multimask": "yes"}, ValueError, "multimask"),
        ({"points": [[5, 5]], "device": "cuda:7"}, ValueError, "not available"),
        ({"points": [[5, 5]], "model": "vit_q"}, ValueError, "unknown model"),
        ({"points": [[5, 5]], "model": "/no/such/file.pth"}, FileNotFoundError, "not found"),
    ],
)
def test_segment_bad_arguments(image, small_weights, kwargs, error, message):
    kwargs.setdefault("model", str(small_weights))
    if kwargs.get("device") is None:
        kwargs["device"] = "cpu"
    with pytest.raises(error, match=message):
        ns.segment(image, **kwargs)


def test_load_model_reuses_a_loaded_model(small_weights):
    a = ns.load_model(str(small_weights), device="cpu")
    b = ns.load_model(small_weights, device="cpu")
    assert a is b


def test_train_returns_new_weights_and_leaves_the_given_model_alone(tmp_path):
    import torch

    from napari_sam.data.basic import basic_nuclei_2d
    from napari_sam.model import build_sam

    model = build_sam("nano")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = ns.train(
        lambda rng: basic_nuclei_2d((128, 128), n_objects=4, seed=int(rng.integers(100))),
        model,
        out=tmp_path,
        steps=1,
        batch_images=1,
        crop_size=128,
        device="cpu",
        progress=False,
    )
    assert result.step == 1 and result.weights.is_file()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    trained = build_sam(result.weights)
    assert trained.config == model.config


def _pairs_folder(folder, count):
    import tifffile

    from napari_sam.data.synthetic import nuclei_2d

    folder.mkdir()
    for i in range(count):
        image, labels = nuclei_2d((48, 64), n_objects=3, seed=i)
        tifffile.imwrite(folder / f"cell{i}.tif", image)
        tifffile.imwrite(folder / f"cell{i}_labels.tif", labels.astype(np.uint16))
    return folder


def test_train_instance_decoder_makes_a_model_whose_decoder_automatic_uses(
    small_model, tmp_path, one_torch_thread
):
    import copy

    import torch

    from napari_sam.data.synthetic import nuclei_2d
    from napari_sam.engine.automatic.ais import ais_labels
    from napari_sam.engine.automatic.maps import predict_maps
    from napari_sam.model import InstanceDecoder

    model = copy.deepcopy(small_model)
    torch.manual_seed(0)
    model.instance_decoder = InstanceDecoder(embed_dim=32, image_size=256, initial_features=4).eval()
    start = copy.deepcopy(model.instance_decoder)
    data = _pairs_folder(tmp_path / "data", 5)  # 4 train, 1 held out
    result = ns.train(
        data, model, out=tmp_path / "out", steps=4, instance_decoder=True, device="cpu", progress=False
    )
    assert result.step == 4 and result.weights.is_file() and result.decoder.is_file()
    assert [sorted(e) for e in result.history] == [["loss", "lr", "seconds", "step", "val_loss"]] * 4
    assert result.history[0]["lr"] == 1e-4  # fine-tuning the model's decoder; no warm-up in 4 steps
    # the given model is left alone
    for key, value in model.instance_decoder.state_dict().items():
        assert torch.equal(value, start.state_dict()[key])

    image, _ = nuclei_2d((48, 64), n_objects=3, seed=9)
    best = copy.deepcopy(start)
    best.load_state_dict(torch.load(tmp_path / "out" / "best.pt", weights_only=True))
    best.half().float()  # the safetensors holds float16
    embeddings = ns.compute_embeddings(image, small_model, device="cpu")
    maps = predict_maps(small_model, embeddings, decoder=best)
    assert not np.allclose(maps, predict_maps(small_model, embeddings, decoder=start), atol=1e-3)
    auto = ns.automatic(image, mode="ais", model=result.weights, device="cpu")
    np.testing.assert_array_equal(auto.labels, ais_labels(maps))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"objects_per_image": 3, "crop_size": 128},
            ValueError,
            r"objects_per_image=3, crop_size=128 do not apply to instance_decoder=True",
        ),
        ({"freeze_encoder": True}, ValueError, r"freeze_encoder=True does not apply .*leave it out"),
        ({"steps": 0}, ValueError, r"steps must be an integer >= 1"),
        ({"seed": -1}, ValueError, r"seed must be an integer >= 0"),
        ({"lr": 0.0}, ValueError, r"lr must be a positive finite number"),
        ({"instance_decoder": "yes"}, TypeError, r"instance_decoder must be True or False"),
        ({"out": 3}, TypeError, r"out must be a folder path"),
        ({"out": "{file}"}, ValueError, r"out must be a folder, but .* is a file"),
        ({"out": "{sam_run}"}, ValueError, r"holds a checkpoint of SAM .interactive. training run"),
        ({"data": "{missing}"}, FileNotFoundError, r"training folder not found"),
    ],
)
def test_train_instance_decoder_refusals_come_before_any_model_loads(tmp_path, kwargs, error, message):
    import torch

    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "sam_run").mkdir()
    torch.save({"model": {}, "optimizer": {}}, tmp_path / "sam_run" / "checkpoint.pt")
    names = {"file": tmp_path / "file.txt", "sam_run": tmp_path / "sam_run", "missing": tmp_path / "nope"}
    kwargs = {k: names[v[1:-1]] if isinstance(v, str) and v.startswith("{") else v for k, v in kwargs.items()}
    args = {"out": tmp_path / "out", "instance_decoder": True, "progress": False, **kwargs}
    data = args.pop("data", _pairs_folder(tmp_path / "data", 2))
    # a model that does not exist: loading it would raise FileNotFoundError naming it
    with pytest.raises(error, match=message):
        ns.train(data, tmp_path / "no_model.pth", **args)


@pytest.fixture(scope="module")
def stack(image):
    """(3, 120, 160) uint16: the 2D test image, shifted a little on each slice."""
    return np.stack([np.roll(image, 4 * z, axis=1) for z in range(3)])


def test_segment_stack_with_prompts_on_their_slices(stack, small_model, tmp_path):
    from napari_sam.engine.embed.store import open_store

    boxes = [[2, 70, 108, 3, 110, 158], [0, 20, 30, 1, 60, 80]]
    points = [[2, 40, 60], [0, 90, 120], [2, 100, 130]]  # the last one refines box 0 (slice 2)
    labels = ns.segment(
        stack, points=points, boxes=boxes, model=small_model, cache=tmp_path / "c.zarr", propagate=False
    )
    assert labels.shape == stack.shape and labels.dtype == np.uint32
    # only the prompted slices were embedded
    np.testing.assert_array_equal(open_store(tmp_path / "c.zarr").done_mask(), [True, False, True])
    assert labels[1].max() == 0
    # each slice equals the 2D result with that slice's prompts and the global numbering
    emb2 = ns.compute_embeddings(stack[2], small_model, cache=tmp_path / "two.zarr")
    slice2 = ns.segment(stack[2], points=[[40, 60], [100, 130]], boxes=[[70, 108, 110, 158]], embeddings=emb2)
    np.testing.assert_array_equal(labels[2], np.select([slice2 == 1, slice2 == 2], [1, 3], 0))
    emb0 = ns.compute_embeddings(stack[0], small_model, cache=tmp_path / "zero.zarr")
    slice0 = ns.segment(stack[0], points=[[90, 120]], boxes=[[20, 30, 60, 80]], embeddings=emb0)
    np.testing.assert_array_equal(labels[0], np.select([slice0 == 1, slice0 == 2], [2, 4], 0))
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"points": [[5, 5]]}, "\\(N, 3\\)"),
        ({"points": [[0.5, 5, 5]]}, "whole slice"),
        ({"points": [[3, 5, 5]]}, "out of range"),
        ({"boxes": [[0, 5, 5, 8, 8]]}, "\\(M, 6\\)"),
        ({"boxes": [[0, 5, 5, 2, 9, 9]]}, "propagation"),
        ({"boxes": [[0, 5, 5, 1, 500, 500]], "points": [[0, 500, 5]]}, "outside"),
    ],
)
def test_segment_stack_bad_prompts(stack, small_model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ns.segment(stack, model=small_model, propagate=False, **kwargs)


def test_segment_with_a_cache_embeds_once(image, small_model, tmp_path, monkeypatch):
    import napari_sam.engine.embed.pipeline as emb_mod

    calls = []
    real = emb_mod.encode_images
    monkeypatch.setattr(emb_mod, "encode_images", lambda *a, **k: calls.append(1) or real(*a, **k))
    results = [
        ns.segment(
            image, boxes=[[20, 30, 60, 80]], points=[[90, 120]], model=small_model, cache=tmp_path / "c"
        )
        for _ in range(3)
    ]
    assert len(calls) == 1
    np.testing.assert_array_equal(results[0], results[2])
    assert (results[0] == 1).sum() > 0


def test_a_2d_segment_loads_checks_lays_out_and_embeds_once(image, small_weights, monkeypatch):
    """model load → one prompt check → one layout → one embedding → decode → labels."""
    import napari_sam.api as api
    import napari_sam.engine.embed.embeddings as embeddings_mod

    calls: dict[str, int] = {}

    def counted(module, name):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    for name in ("load_model", "normalize_prompts", "image_layout", "embed_image"):
        counted(api, name)
    counted(embeddings_mod, "image_layout")  # the layout segment() read is handed on
    counted(embeddings_mod, "compute_embeddings")  # not called: segment() has its options checked
    labels = ns.segment(image, boxes=[[20, 30, 60, 80]], model=small_weights)
    assert calls == {"load_model": 1, "normalize_prompts": 1, "image_layout": 1, "embed_image": 1}
    assert labels.shape == image.shape and labels.dtype == np.uint32


def test_segment_tiled_image_with_a_box_spanning_tiles(image, small_model):
    big = np.tile(image, (2, 2))  # (240, 320)
    box = [100, 130, 160, 200]  # across the middle of the image, wider than a tile holds
    tiled = ns.compute_embeddings(big, small_model, tile=(96, 8))
    assert isinstance(tiled, TiledEmbeddings) and len(tiled) == 12
    assert tiled.route(box) is None
    labels = ns.segment(big, boxes=[box, [20, 30, 60, 80]], model=small_model, tile=(96, 8))
    pred = ns.predict(tiled, box=[box, [20, 30, 60, 80]], multimask=False)
    expected = np.zeros(big.shape, np.uint32)
    best = np.full(big.shape, -np.inf)
    for k in range(2):
        win = pred.masks[k, 0] & (pred.iou_scores[k, 0] > best)
        expected[win], best[win] = k + 1, pred.iou_scores[k, 0]
    np.testing.assert_array_equal(labels, expected)
    assert (labels == 1).any() and (labels == 2).any()
