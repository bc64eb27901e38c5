"""Bad inputs to the public Python API, each answered by a clear error that names the argument.

Table-driven: every row of ``CASES`` is one bad call, the exception type the documentation promises
(ValueError / TypeError / FileNotFoundError, or one of :mod:`napari_sam.errors`, all of them
``NapariSamError`` subclasses of those) and a regular expression the message must match — the name of
the argument and what was expected. Inputs that are *not* errors by contract (NaN pixels, empty point
lists, boxes reaching past the border) are checked for a sane result in ``test_accepted_*``.

Cases per entry point (``CASES``; counted by ``test_case_count``):

==========================  =====
segment                        61
compute_embeddings             29
predict                        30
automatic                      43
propagate                      27
train                          12
load_model                     13
open_embeddings                10
==========================  =====
total                         225
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.errors import CacheMismatchError, CheckpointError, CorruptSliceError, NapariSamError

from .conftest import Env

Call = Callable[[Env], Any]


def bad(entry: str, what: str, call: Call, error: type[BaseException] | tuple, match: str) -> Any:
    """One row: ``entry`` is the public function, ``what`` a readable id of the bad input."""
    return pytest.param(entry, call, error, match, id=f"{entry}-{what}")


def seg(e: Env, image: Any = ..., **kw: Any) -> Any:
    kw.setdefault("model", e.model)
    if "points" not in kw and "boxes" not in kw:
        kw["boxes"] = [[5, 5, 30, 40]]
    return ns.segment(e.image if image is ... else image, **kw)


def emb(e: Env, image: Any = ..., **kw: Any) -> Any:
    kw.setdefault("model", e.model)
    return ns.compute_embeddings(e.image if image is ... else image, **kw)


def pred(e: Env, **kw: Any) -> Any:
    return ns.predict(kw.pop("embeddings", e.emb), **kw)


def auto(e: Env, image: Any = ..., **kw: Any) -> Any:
    kw.setdefault("model", e.model)
    return ns.automatic(e.image if image is ... else image, **kw)


def prop(e: Env, seeds: Any = None, **kw: Any) -> Any:
    if seeds is None and "points" not in kw and "boxes" not in kw:
        kw["boxes"] = [[1, 4, 4, 2, 20, 20]]
    kw.setdefault("model", e.model)
    return ns.propagate(kw.pop("volume", e.vol), seeds, **kw)


def seed2d(e: Env) -> np.ndarray:
    labels = np.zeros(e.stack.shape[1:], dtype=np.uint16)
    labels[5:15, 5:15] = 1
    return labels


def trn(e: Env, tmp: Any = None, **kw: Any) -> Any:
    kw.setdefault("model", e.model)
    kw.setdefault("out", e.files / "train_out")
    kw.setdefault("steps", 1)
    kw.setdefault("progress", False)
    kw.setdefault("device", "cpu")
    return ns.train(kw.pop("data", e.files / "pairs"), **kw)


NAN_POINT = [[np.nan, 3.0]]
BIG = 1e12
IMG_MSG = r"image must be 2D"
DTYPE_MSG = r"image has unsupported dtype"

SEGMENT = [
    # the automatic mode
    bad(
        "segment",
        "mode-grid",
        lambda e: ns.segment(e.image, model=e.model, mode="grid"),
        ValueError,
        r"mode must be 'auto', 'ais', 'apg' or 'amg'",
    ),
    bad(
        "segment",
        "mode-with-prompts",
        lambda e: seg(e, mode="amg"),
        ValueError,
        r"mode='amg' applies to automatic segmentation \(no points or boxes\)",
    ),
    bad(
        "segment",
        "mode-ais-without-decoder",
        lambda e: ns.segment(e.image, model=e.model, mode="ais"),
        ValueError,
        r"needs a model with an instance decoder",
    ),
    # wrong types
    bad("segment", "image-None", lambda e: seg(e, None), ValueError, IMG_MSG),
    bad("segment", "image-dict", lambda e: seg(e, {"a": 1}), ValueError, IMG_MSG),
    bad("segment", "image-str-list", lambda e: seg(e, [["a", "b"], ["c", "d"]]), ValueError, DTYPE_MSG),
    bad("segment", "image-bool", lambda e: seg(e, e.image > 1), ValueError, DTYPE_MSG),
    bad("segment", "image-complex", lambda e: seg(e, e.image.astype(complex)), ValueError, DTYPE_MSG),
    bad("segment", "image-object", lambda e: seg(e, e.image.astype(object)), ValueError, DTYPE_MSG),
    # shapes
    bad("segment", "image-1d", lambda e: seg(e, np.zeros(50)), ValueError, IMG_MSG),
    bad("segment", "image-5d", lambda e: seg(e, np.zeros((2, 2, 8, 8, 1))), ValueError, IMG_MSG),
    bad("segment", "image-empty", lambda e: seg(e, np.zeros((0, 64))), ValueError, r"image is empty"),
    bad("segment", "image-1x1", lambda e: seg(e, np.zeros((1, 1)), points=[[0, 0]]), ValueError, r"2×2"),
    bad("segment", "image-all-nan", lambda e: seg(e, np.full((16, 16), np.nan)), ValueError, r"no finite"),
    bad(
        "segment",
        "image-4-float-channels",
        lambda e: seg(e, np.zeros((16, 16, 4))),
        ValueError,
        r"4 channels; pass channel=",
    ),
    bad("segment", "channel_axis-9", lambda e: seg(e, channel_axis=9), ValueError, r"channel_axis=9"),
    bad("segment", "channel_axis-str", lambda e: seg(e, channel_axis="last"), TypeError, r"channel_axis"),
    bad("segment", "channel-7", lambda e: seg(e, channel=7), ValueError, r"channel \[7\] out of range"),
    # points
    bad("segment", "points-3d-on-2d", lambda e: seg(e, points=[[1, 2, 3]]), ValueError, r"points must have"),
    bad("segment", "points-1d", lambda e: seg(e, points=[3, 4]), ValueError, r"points must have shape"),
    bad("segment", "points-str", lambda e: seg(e, points="here"), ValueError, r"points must be numeric"),
    bad("segment", "points-dict", lambda e: seg(e, points={"y": 1}), ValueError, r"points must be numeric"),
    bad("segment", "points-nan", lambda e: seg(e, points=NAN_POINT), ValueError, r"points contains NaN"),
    bad("segment", "points-inf", lambda e: seg(e, points=[[np.inf, 1]]), ValueError, r"points contains NaN"),
    bad("segment", "points-1e12", lambda e: seg(e, points=[[BIG, 1]]), ValueError, r"points outside"),
    bad("segment", "points-negative", lambda e: seg(e, points=[[-3, 1]]), ValueError, r"points outside"),
    bad("segment", "points-row-eq-height", lambda e: seg(e, points=[[48, 1]]), ValueError, r"points outside"),
    bad(
        "segment",
        "point_labels-length",
        lambda e: seg(e, points=[[3, 4], [5, 6]], point_labels=[1]),
        ValueError,
        r"point_labels must have one label per point",
    ),
    bad(
        "segment",
        "point_labels-2",
        lambda e: seg(e, points=[[3, 4]], point_labels=[2]),
        ValueError,
        r"point_labels must be 1 \(foreground\) or 0",
    ),
    bad(
        "segment",
        "point_labels-str",
        lambda e: seg(e, points=[[3, 4]], point_labels=["yes"]),
        ValueError,
        r"point_labels must be 1",
    ),
    bad(
        "segment",
        "point_labels-without-points",
        lambda e: seg(e, point_labels=[1]),
        ValueError,
        r"point_labels given without points",
    ),
    # boxes
    bad(
        "segment", "boxes-M5", lambda e: seg(e, boxes=[[1, 2, 3, 4, 5]]), ValueError, r"boxes must have shape"
    ),
    bad("segment", "boxes-1d", lambda e: seg(e, boxes=[1, 2, 30, 40]), ValueError, r"boxes must have shape"),
    bad("segment", "boxes-str", lambda e: seg(e, boxes="box"), ValueError, r"boxes must be numeric"),
    bad("segment", "boxes-min>max", lambda e: seg(e, boxes=[[30, 5, 10, 40]]), ValueError, r"min < max"),
    bad("segment", "boxes-zero-area", lambda e: seg(e, boxes=[[5, 5, 5, 40]]), ValueError, r"min < max"),
    bad(
        "segment", "boxes-nan", lambda e: seg(e, boxes=[[np.nan, 1, 5, 5]]), ValueError, r"boxes contains NaN"
    ),
    bad("segment", "boxes-outside", lambda e: seg(e, boxes=[[BIG, 1, 2 * BIG, 5]]), ValueError, r"outside"),
    bad("segment", "boxes-negative", lambda e: seg(e, boxes=[[-20, -20, -5, -5]]), ValueError, r"outside"),
    # stacks
    bad("segment", "stack-points-2d", lambda e: seg(e, e.stack, points=[[1, 2]]), ValueError, r"\(N, 3\)"),
    bad("segment", "stack-boxes-4", lambda e: seg(e, e.stack, boxes=[[1, 2, 9, 9]]), ValueError, r"\(M, 6\)"),
    bad(
        "segment",
        "stack-z-out-of-range",
        lambda e: seg(e, e.stack, points=[[7, 2, 2]], propagate=False),
        ValueError,
        r"points z \[7\] out of range",
    ),
    bad(
        "segment",
        "stack-z-fraction",
        lambda e: seg(e, e.stack, points=[[0.5, 2, 2]], propagate=False),
        ValueError,
        r"points z must name whole slice",
    ),
    bad(
        "segment",
        "stack-box-spans-slices",
        lambda e: seg(e, e.stack, boxes=[[0, 2, 2, 3, 9, 9]], propagate=False),
        ValueError,
        r"max_z == min_z \+ 1",
    ),
    # options
    bad("segment", "model-bad-name", lambda e: seg(e, model="vit_z"), ValueError, r"vit_z"),
    bad("segment", "model-None", lambda e: seg(e, model=None), TypeError, r"model must be"),
    bad("segment", "device-cuda7", lambda e: seg(e, device="cuda:7"), ValueError, r"device='cuda:7' is not"),
    bad("segment", "device-tpu", lambda e: seg(e, device="tpu"), ValueError, r"device must be .* got 'tpu'"),
    bad("segment", "multimask-str", lambda e: seg(e, multimask="yes"), ValueError, r"multimask must be"),
    bad("segment", "batch_size-negative", lambda e: seg(e, batch_size=-1), ValueError, r"batch_size must be"),
    bad("segment", "batch_size-float", lambda e: seg(e, batch_size=2.5), ValueError, r"batch_size must be"),
    bad("segment", "percentiles-reversed", lambda e: seg(e, percentiles=(99, 1)), ValueError, r"percentiles"),
    bad("segment", "percentiles-200", lambda e: seg(e, percentiles=(1, 200)), ValueError, r"percentiles"),
    bad(
        "segment", "normalize-zscore", lambda e: seg(e, normalize="zscore"), ValueError, r"normalize must be"
    ),
    bad(
        "segment",
        "contrast_limits-inverted",
        lambda e: seg(e, contrast_limits=(5, 1)),
        ValueError,
        r"contrast_limits must be finite",
    ),
    bad("segment", "precision-fp8", lambda e: seg(e, precision="fp8"), ValueError, r"precision must be"),
    bad("segment", "tile_threshold-0", lambda e: seg(e, tile_threshold=0), ValueError, r"tile_threshold"),
    bad("segment", "embeddings-str", lambda e: seg(e, embeddings="cache.zarr"), TypeError, r"embeddings"),
    bad(
        "segment",
        "embeddings-other-image",
        lambda e: seg(e, e.image[:40], embeddings=e.emb),
        ValueError,
        r"embeddings are of an image of shape \(48, 64\)",
    ),
    bad(
        "segment",
        "cache-of-other-model",
        lambda e: seg(e, cache=e.files / "other_model.zarr"),
        CacheMismatchError,
        r"embedding cache .* another image, model",
    ),
    bad(
        "segment",
        "cache-non-cache-folder",
        lambda e: seg(e, cache=e.files / "folder"),
        FileExistsError,
        r"not a napari-sam embedding cache",
    ),
]

COMPUTE = [
    bad("compute_embeddings", "image-None", lambda e: emb(e, None), ValueError, IMG_MSG),
    bad("compute_embeddings", "image-1d", lambda e: emb(e, np.arange(9.0)), ValueError, IMG_MSG),
    bad("compute_embeddings", "image-5d", lambda e: emb(e, np.zeros((2, 2, 4, 4, 4))), ValueError, IMG_MSG),
    bad("compute_embeddings", "image-bool", lambda e: emb(e, e.image > 0), ValueError, DTYPE_MSG),
    bad("compute_embeddings", "image-complex", lambda e: emb(e, e.image * 1j), ValueError, DTYPE_MSG),
    bad("compute_embeddings", "image-str", lambda e: emb(e, np.full((4, 4), "a")), ValueError, DTYPE_MSG),
    bad(
        "compute_embeddings", "image-empty", lambda e: emb(e, np.zeros((0, 0))), ValueError, r"image is empty"
    ),
    bad(
        "compute_embeddings",
        "image-inf-only",
        lambda e: emb(e, np.full((8, 8), np.inf)),
        ValueError,
        "finite",
    ),
    bad("compute_embeddings", "stack-empty", lambda e: emb(e, np.zeros((0, 8, 8))), ValueError, r"empty"),
    bad("compute_embeddings", "batch_size-0", lambda e: emb(e, batch_size=0), ValueError, r"batch_size must"),
    bad("compute_embeddings", "batch_size-neg", lambda e: emb(e, batch_size=-4), ValueError, r"batch_size"),
    bad("compute_embeddings", "batch_size-str", lambda e: emb(e, batch_size="4"), ValueError, r"batch_size"),
    bad(
        "compute_embeddings",
        "cache_dtype-int8",
        lambda e: emb(e, cache_dtype="int8"),
        ValueError,
        "cache_dtype",
    ),
    bad(
        "compute_embeddings",
        "percentile_scope-global",
        lambda e: emb(e, percentile_scope="global"),
        ValueError,
        r"percentile_scope must be",
    ),
    bad("compute_embeddings", "slices-on-2d", lambda e: emb(e, slices=[0]), ValueError, r"slices= applies"),
    bad("compute_embeddings", "slices-9", lambda e: emb(e, e.stack, slices=[9]), ValueError, r"slices \[9\]"),
    bad("compute_embeddings", "slices-float", lambda e: emb(e, e.stack, slices=[0.5]), ValueError, r"slices"),
    bad("compute_embeddings", "precision-fp8", lambda e: emb(e, precision="fp8"), ValueError, r"precision"),
    bad("compute_embeddings", "precision-None", lambda e: emb(e, precision=None), ValueError, r"precision"),
    bad(
        "compute_embeddings",
        "normalize-bad",
        lambda e: emb(e, normalize="max"),
        ValueError,
        r"normalize must",
    ),
    bad("compute_embeddings", "device-tpu", lambda e: emb(e, device="tpu"), ValueError, r"'tpu'"),
    bad("compute_embeddings", "device-cuda7", lambda e: emb(e, device="cuda:7"), ValueError, r"cuda:7"),
    bad(
        "compute_embeddings", "progress-str", lambda e: emb(e, progress="yes"), TypeError, r"progress must be"
    ),
    bad("compute_embeddings", "cancel-int", lambda e: emb(e, cancel=3), TypeError, r"cancel must be"),
    bad("compute_embeddings", "tile-negative", lambda e: emb(e, tile=-16), ValueError, r"tile"),
    bad(
        "compute_embeddings",
        "cache-of-other-model",
        lambda e: emb(e, cache=e.files / "other_model.zarr"),
        CacheMismatchError,
        r"weights",
    ),
    bad(
        "compute_embeddings",
        "cache-of-other-image",
        lambda e: emb(e, e.image[:, :60], cache=e.files / "image.zarr"),
        CacheMismatchError,
        r"image",
    ),
    bad(
        "compute_embeddings",
        "cache-of-a-future-format",
        lambda e: emb(e, cache=e.files / "future_format.zarr"),
        CacheMismatchError,
        r"format version: cache has 99",
    ),
    bad(
        "compute_embeddings",
        "cache-is-a-file",
        lambda e: emb(e, cache=e.files / "notes.txt"),
        FileExistsError,
        r"not a napari-sam embedding cache",
    ),
]

PREDICT = [
    bad(
        "predict",
        "embeddings-None",
        lambda e: pred(e, embeddings=None, points=[[1, 1]]),
        TypeError,
        "embeddings",
    ),
    bad(
        "predict",
        "embeddings-array",
        lambda e: pred(e, embeddings=e.image, points=[[1, 1]]),
        TypeError,
        "Embed",
    ),
    bad(
        "predict",
        "embeddings-volume",
        lambda e: pred(e, embeddings=e.vol, points=[[1, 1]]),
        TypeError,
        r"\[z\]",
    ),
    bad("predict", "no-prompt", lambda e: pred(e), ValueError, r"at least one prompt"),
    bad("predict", "points-N3", lambda e: pred(e, points=[[1, 2, 3]]), ValueError, r"points must have shape"),
    bad(
        "predict", "points-empty", lambda e: pred(e, points=np.zeros((0, 2))), ValueError, r"points must have"
    ),
    bad("predict", "points-4d", lambda e: pred(e, points=np.zeros((1, 1, 1, 2))), ValueError, r"points must"),
    bad(
        "predict", "points-str", lambda e: pred(e, points=[["a", "b"]]), ValueError, r"points must be numeric"
    ),
    bad("predict", "points-None-list", lambda e: pred(e, points=[None, None]), ValueError, r"points"),
    bad("predict", "points-nan", lambda e: pred(e, points=NAN_POINT), ValueError, r"points contains NaN"),
    bad(
        "predict",
        "points-1e12",
        lambda e: pred(e, points=[[1, BIG]]),
        ValueError,
        r"points outside the image",
    ),
    bad("predict", "points-col-outside", lambda e: pred(e, points=[[1, 64]]), ValueError, r"points outside"),
    bad(
        "predict",
        "point_labels-length",
        lambda e: pred(e, points=[[1, 1]], point_labels=[1, 0]),
        ValueError,
        r"point_labels must have one label per point",
    ),
    bad(
        "predict",
        "point_labels-minus1",
        lambda e: pred(e, points=[[1, 1]], point_labels=[-1]),
        ValueError,
        r"point_labels must be 1",
    ),
    bad(
        "predict",
        "point_labels-float",
        lambda e: pred(e, points=[[1, 1]], point_labels=[0.5]),
        ValueError,
        r"point_labels must be 1",
    ),
    bad("predict", "point_labels-alone", lambda e: pred(e, point_labels=[1]), ValueError, r"without points"),
    bad("predict", "box-5", lambda e: pred(e, box=[1, 2, 3, 4, 5]), ValueError, r"box must have shape"),
    bad("predict", "box-3d", lambda e: pred(e, box=np.zeros((1, 1, 4))), ValueError, r"box must have shape"),
    bad("predict", "box-min>max", lambda e: pred(e, box=[20, 20, 10, 30]), ValueError, r"min < max"),
    bad("predict", "box-inf", lambda e: pred(e, box=[0, 0, np.inf, 9]), ValueError, r"box contains NaN"),
    bad(
        "predict",
        "box-outside",
        lambda e: pred(e, box=[100, 100, 120, 130]),
        ValueError,
        r"outside the image",
    ),
    bad("predict", "box-dict", lambda e: pred(e, box={"r": 1}), ValueError, r"box must be numeric"),
    bad(
        "predict",
        "points-boxes-count",
        lambda e: pred(e, points=np.ones((2, 1, 2)), box=[[1, 1, 9, 9]] * 3),
        ValueError,
        r"points describe 2 objects but box describes 3",
    ),
    bad(
        "predict",
        "mask_input-shape",
        lambda e: pred(e, mask_input=np.zeros((10, 10), np.float32)),
        ValueError,
        r"mask_input must be",
    ),
    bad(
        "predict",
        "mask_input-count",
        lambda e: pred(e, box=[[1, 1, 9, 9]] * 2, mask_input=np.zeros((3, 48, 64), bool)),
        ValueError,
        r"mask_input holds 3 masks for 2 objects",
    ),
    bad(
        "predict",
        "mask_input-complex",
        lambda e: pred(e, mask_input=np.zeros((48, 64), complex)),
        ValueError,
        r"mask_input must be",
    ),
    bad(
        "predict",
        "model-other-weights",
        lambda e: pred(e, points=[[1, 1]], model=e.other_model),
        ValueError,
        r"not the model these embeddings were computed with",
    ),
    bad(
        "predict",
        "multimask-str",
        lambda e: pred(e, points=[[1, 1]], multimask="no"),
        TypeError,
        r"multimask",
    ),
    bad(
        "predict",
        "best_only-str",
        lambda e: pred(e, points=[[1, 1]], best_only="no"),
        TypeError,
        r"best_only",
    ),
    bad(
        "predict",
        "return_logits-None",
        lambda e: pred(e, box=[1, 1, 9, 9], return_logits=None),
        TypeError,
        "logits",
    ),
]

AUTOMATIC = [
    bad(
        "automatic", "image-None", lambda e: ns.automatic(None, model=e.model), ValueError, r"needs an image"
    ),
    bad("automatic", "image-1d", lambda e: auto(e, np.zeros(30)), ValueError, IMG_MSG),
    bad("automatic", "image-stack", lambda e: auto(e, e.stack), ValueError, IMG_MSG),
    bad("automatic", "image-bool", lambda e: auto(e, e.image > 0), ValueError, DTYPE_MSG),
    bad("automatic", "image-empty", lambda e: auto(e, np.zeros((5, 0))), ValueError, r"image is empty"),
    bad("automatic", "image-all-nan", lambda e: auto(e, np.full((9, 9), np.nan)), ValueError, r"no finite"),
    bad("automatic", "embeddings-str", lambda e: auto(e, embeddings="x.zarr"), TypeError, r"embeddings must"),
    bad(
        "automatic",
        "embeddings-other-image",
        lambda e: auto(e, e.image[:20], embeddings=e.emb),
        ValueError,
        r"embeddings are of an image of shape",
    ),
    bad(
        "automatic", "points_per_side-0", lambda e: auto(e, points_per_side=0), ValueError, r"points_per_side"
    ),
    bad(
        "automatic",
        "points_per_side-1.5",
        lambda e: auto(e, points_per_side=1.5),
        ValueError,
        "points_per_side",
    ),
    bad(
        "automatic",
        "points_per_side-10**6",
        lambda e: auto(e, points_per_side=10**6),
        ValueError,
        r"points_per_side must be .*<= ",
    ),
    bad(
        "automatic",
        "points_per_batch-0",
        lambda e: auto(e, points_per_batch=0),
        ValueError,
        "points_per_batch",
    ),
    bad(
        "automatic", "pred_iou_thresh-1.5", lambda e: auto(e, pred_iou_thresh=1.5), ValueError, r"pred_iou_th"
    ),
    bad(
        "automatic", "pred_iou_thresh-nan", lambda e: auto(e, pred_iou_thresh=np.nan), ValueError, r"pred_iou"
    ),
    bad(
        "automatic",
        "stability_score_thresh--0.1",
        lambda e: auto(e, stability_score_thresh=-0.1),
        ValueError,
        r"stability_score_thresh must be a number in \[0.0, 1.0\]",
    ),
    bad(
        "automatic", "box_nms_thresh-str", lambda e: auto(e, box_nms_thresh="0.5"), ValueError, r"box_nms_thr"
    ),
    bad("automatic", "crop_n_layers--1", lambda e: auto(e, crop_n_layers=-1), ValueError, r"crop_n_layers"),
    bad(
        "automatic",
        "crop_overlap_ratio-1",
        lambda e: auto(e, crop_overlap_ratio=1.0),
        ValueError,
        r"crop_overlap_ratio",
    ),
    bad(
        "automatic",
        "max_area_fraction-0",
        lambda e: auto(e, max_area_fraction=0),
        ValueError,
        r"max_area_frac",
    ),
    bad("automatic", "min_area--5", lambda e: auto(e, min_area=-5), ValueError, r"min_area must be"),
    bad("automatic", "overlap-max", lambda e: auto(e, overlap="max"), ValueError, r"overlap must be"),
    bad("automatic", "preset-cells", lambda e: auto(e, preset="cells"), ValueError, r"preset must be"),
    bad(
        "automatic", "point_in_mask-str", lambda e: auto(e, point_in_mask="yes"), ValueError, r"point_in_mask"
    ),
    bad("automatic", "device-tpu", lambda e: auto(e, device="tpu", model="nano"), ValueError, r"'tpu'"),
    # the mode and the instance decoder's options (AIS / APG)
    bad("automatic", "mode-sam2", lambda e: auto(e, mode="sam2"), ValueError, r"mode must be 'auto', 'ais'"),
    bad("automatic", "mode-None", lambda e: auto(e, mode=None), ValueError, r"mode must be"),
    bad(
        "automatic",
        "mode-ais-without-decoder",
        lambda e: auto(e, mode="ais"),
        ValueError,
        r"mode='ais' needs a model with an instance decoder.*has none",
    ),
    bad(
        "automatic",
        "mode-apg-without-decoder",
        lambda e: auto(e, mode="apg"),
        ValueError,
        r"mode='apg' needs a model with an instance decoder",
    ),
    bad(
        "automatic",
        "decoder-option-without-decoder",
        lambda e: auto(e, min_size=10),
        ValueError,
        r"mode='ais' needs a model with an instance decoder",
    ),
    bad(
        "automatic",
        "points_per_side-with-ais",
        lambda e: auto(e, mode="ais", points_per_side=8),
        ValueError,
        r"points_per_side=8 does not apply to mode='ais'",
    ),
    bad(
        "automatic",
        "min_size-with-amg",
        lambda e: auto(e, mode="amg", min_size=8),
        ValueError,
        r"min_size=8 does not apply to mode='amg'",
    ),
    bad(
        "automatic",
        "preset-with-apg",
        lambda e: auto(e, mode="apg", preset="nuclei"),
        ValueError,
        r"preset='nuclei' applies to mode='amg'",
    ),
    bad(
        "automatic",
        "both-families-with-auto",
        lambda e: auto(e, points_per_side=8, min_size=8),
        ValueError,
        r"both prompt-grid options \(points_per_side=8\) and instance decoder options \(min_size=8\)",
    ),
    bad(
        "automatic",
        "foreground_threshold-1.5",
        lambda e: auto(e, mode="ais", foreground_threshold=1.5),
        ValueError,
        r"foreground_threshold must be a number in \[0.0, 1.0\]",
    ),
    bad(
        "automatic",
        "center_distance_threshold-nan",
        lambda e: auto(e, mode="ais", center_distance_threshold=np.nan),
        ValueError,
        r"center_distance_threshold must be",
    ),
    bad(
        "automatic",
        "boundary_distance_threshold-str",
        lambda e: auto(e, mode="ais", boundary_distance_threshold="0.5"),
        ValueError,
        r"boundary_distance_threshold must be",
    ),
    bad(
        "automatic",
        "distance_smoothing--1",
        lambda e: auto(e, mode="ais", distance_smoothing=-1),
        ValueError,
        r"distance_smoothing must be",
    ),
    bad(
        "automatic",
        "min_size--1",
        lambda e: auto(e, mode="ais", min_size=-1),
        ValueError,
        r"min_size must be",
    ),
    bad(
        "automatic",
        "min_size-2.5",
        lambda e: auto(e, mode="ais", min_size=2.5),
        ValueError,
        r"min_size must be an integer",
    ),
    bad(
        "automatic",
        "nms_threshold-2",
        lambda e: auto(e, mode="apg", nms_threshold=2),
        ValueError,
        r"nms_threshold must be",
    ),
    bad(
        "automatic",
        "multimask-str",
        lambda e: auto(e, mode="apg", multimask="yes"),
        ValueError,
        r"multimask must be True or False",
    ),
    bad(
        "automatic",
        "embeddings-other-image-ais",
        lambda e: auto(e, e.image[:20], embeddings=ns.compute_embeddings(e.image, "nano"), mode="ais"),
        ValueError,
        r"embeddings are of an image of shape",
    ),
    bad(
        "automatic",
        "batch_size-0",
        lambda e: auto(e, mode="apg", batch_size=0),
        ValueError,
        r"batch_size must be an integer >= 1",
    ),
]

PROPAGATE = [
    bad("propagate", "volume-2d", lambda e: prop(e, volume=e.image), ValueError, r"needs a 3D stack"),
    bad(
        "propagate", "volume-embeddings-2d", lambda e: prop(e, volume=e.emb), ValueError, r"needs a 3D stack"
    ),
    bad("propagate", "volume-None", lambda e: prop(e, volume=None), ValueError, r"3D stack"),
    bad(
        "propagate",
        "no-seeds",
        lambda e: ns.propagate(e.vol, model=e.model),
        ValueError,
        r"needs seed labels",
    ),
    bad(
        "propagate",
        "labels-float",
        lambda e: prop(e, seed2d(e) * 0.5, z=1),
        TypeError,
        r"labels must be an int",
    ),
    bad(
        "propagate",
        "labels-negative",
        lambda e: prop(e, -seed2d(e).astype(int), z=1),
        ValueError,
        r"negative",
    ),
    bad("propagate", "labels-2d-no-z", lambda e: prop(e, seed2d(e)), ValueError, r"need z="),
    bad(
        "propagate", "labels-wrong-shape", lambda e: prop(e, seed2d(e)[:9], z=1), ValueError, r"labels of one"
    ),
    bad("propagate", "labels-4d", lambda e: prop(e, seed2d(e)[None, None]), ValueError, r"labels must have"),
    bad("propagate", "labels-empty", lambda e: prop(e, 0 * seed2d(e), z=1), ValueError, r"no objects to"),
    bad("propagate", "z-out-of-range", lambda e: prop(e, seed2d(e), z=5), ValueError, r"z=5 is out of range"),
    bad("propagate", "z-float", lambda e: prop(e, seed2d(e), z=1.5), ValueError, r"z must be a slice number"),
    bad(
        "propagate",
        "objects-missing",
        lambda e: prop(e, seed2d(e), z=1, objects=[7]),
        ValueError,
        r"object 7",
    ),
    bad(
        "propagate",
        "objects-empty",
        lambda e: prop(e, seed2d(e), z=1, objects=[]),
        ValueError,
        r"objects must",
    ),
    bad("propagate", "z_range-reversed", lambda e: prop(e, z_range=(3, 1)), ValueError, r"z_range must be"),
    bad("propagate", "z_range-str", lambda e: prop(e, z_range="all"), ValueError, r"z_range must be"),
    bad("propagate", "iou_threshold-2", lambda e: prop(e, iou_threshold=2), ValueError, r"iou_threshold"),
    bad(
        "propagate",
        "min_intensity-1",
        lambda e: prop(e, min_intensity=1),
        ValueError,
        r"min_intensity must be a number in \[0\.0, 1\.0\)",
    ),
    bad(
        "propagate",
        "min_intensity-str",
        lambda e: prop(e, min_intensity="half"),
        ValueError,
        r"min_intensity must be a number",
    ),
    bad("propagate", "prompt-circle", lambda e: prop(e, prompt="circle"), ValueError, r"prompt must be"),
    bad("propagate", "n_points-0", lambda e: prop(e, n_points=0), ValueError, r"n_points must be"),
    bad(
        "propagate", "min_area-nan", lambda e: prop(e, max_area_change=np.nan), ValueError, r"max_area_change"
    ),
    bad("propagate", "points-2d", lambda e: prop(e, points=[[3, 3]]), ValueError, r"points"),
    bad("propagate", "points-z-9", lambda e: prop(e, points=[[9, 3, 3]]), ValueError, r"9"),
    bad("propagate", "boxes-4", lambda e: prop(e, boxes=[[1, 1, 9, 9]]), ValueError, r"boxes"),
    bad(
        "propagate",
        "labels-and-prompts",
        lambda e: prop(e, seed2d(e), points=[[1, 3, 3]]),
        ValueError,
        r"not both",
    ),
    bad("propagate", "cancel-str", lambda e: prop(e, cancel="stop"), TypeError, r"cancel must be"),
]

TRAIN = [
    bad(
        "train",
        "data-missing",
        lambda e: trn(e, data=e.files / "nope"),
        FileNotFoundError,
        r"training folder",
    ),
    bad(
        "train",
        "data-no-pairs",
        lambda e: trn(e, data=e.files / "folder"),
        ValueError,
        r"no image/label pairs",
    ),
    bad("train", "data-a-file", lambda e: trn(e, data=e.files / "notes.txt"), FileNotFoundError, r"folder"),
    bad("train", "data-None", lambda e: trn(e, data=None), TypeError, r"data must be"),
    bad("train", "steps--1", lambda e: trn(e, steps=-1), ValueError, r"steps must be"),
    bad("train", "steps-str", lambda e: trn(e, steps="10"), ValueError, r"steps must be"),
    bad("train", "batch_images-0", lambda e: trn(e, batch_images=0), ValueError, r"batch_images"),
    bad(
        "train",
        "objects_per_image-0",
        lambda e: trn(e, objects_per_image=0),
        ValueError,
        r"objects_per_image",
    ),
    bad("train", "lr-negative", lambda e: trn(e, lr=-1e-3), ValueError, r"lr must be"),
    bad("train", "lr-nan", lambda e: trn(e, lr=float("nan")), ValueError, r"lr must be"),
    bad("train", "model-bad-name", lambda e: trn(e, model="vit_q"), ValueError, r"vit_q"),
    bad("train", "device-tpu", lambda e: trn(e, device="tpu"), ValueError, r"'tpu'"),
]

LOAD = [
    bad("load_model", "name-vit_z", lambda e: ns.load_model("vit_z"), ValueError, r"vit_z"),
    bad("load_model", "None", lambda e: ns.load_model(None), TypeError, r"model must be"),
    bad("load_model", "int", lambda e: ns.load_model(3), TypeError, r"model must be"),
    bad("load_model", "dict", lambda e: ns.load_model({"name": "vit_b"}), TypeError, r"model must be"),
    bad(
        "load_model", "missing-file", lambda e: ns.load_model(e.files / "nope.pth"), FileNotFoundError, "nope"
    ),
    bad(
        "load_model",
        "text-as-pth",
        lambda e: ns.load_model(e.files / "text.pth"),
        CheckpointError,
        r"text.pth",
    ),
    bad(
        "load_model",
        "corrupt-safetensors",
        lambda e: ns.load_model(e.files / "text.safetensors"),
        CheckpointError,
        r"text.safetensors",
    ),
    bad(
        "load_model",
        "directory",
        lambda e: ns.load_model(e.files / "folder"),
        FileNotFoundError,
        r"is a folder",
    ),
    bad(
        "load_model",
        "image-as-weights",
        lambda e: ns.load_model(e.files / "good.tif"),
        CheckpointError,
        "tif",
    ),
    bad("load_model", "device-tpu", lambda e: ns.load_model(e.model, "tpu"), ValueError, r"'tpu'"),
    bad("load_model", "device-cuda7", lambda e: ns.load_model(e.model, "cuda:7"), ValueError, r"cuda:7"),
    bad("load_model", "device-float", lambda e: ns.load_model(e.model, 1.5), ValueError, r"device must be"),
    bad("load_model", "device-mps", lambda e: ns.load_model(e.model, "mps"), ValueError, r"mps"),
]

OPEN = [
    bad(
        "open_embeddings",
        "missing",
        lambda e: ns.open_embeddings(e.files / "no.zarr"),
        FileNotFoundError,
        "no",
    ),
    bad(
        "open_embeddings",
        "non-cache-folder",
        lambda e: ns.open_embeddings(e.files / "folder"),
        ValueError,
        r"not a napari-sam embedding cache",
    ),
    bad(
        "open_embeddings",
        "empty-zarr-folder",
        lambda e: ns.open_embeddings(e.files / "empty.zarr"),
        ValueError,
        r"not a napari-sam embedding cache",
    ),
    bad(
        "open_embeddings",
        "a-file",
        lambda e: ns.open_embeddings(e.files / "notes.txt"),
        (ValueError, FileNotFoundError),
        r"notes.txt",
    ),
    bad(
        "open_embeddings",
        "unfinished-stack-slice",
        lambda e: ns.open_embeddings(e.files / "empty_stack.zarr", e.model)[0],
        LookupError,
        r"slice 0",
    ),
    bad(
        "open_embeddings",
        "model-of-other-weights",
        lambda e: ns.predict(ns.open_embeddings(e.files / "image.zarr", e.other_model), points=[[1, 1]]),
        ValueError,
        r"not the model these embeddings",
    ),
    bad(
        "open_embeddings",
        "unreadable-metadata",
        lambda e: ns.open_embeddings(e.files / "garbage_meta.zarr"),
        ValueError,
        r"garbage_meta.zarr is not a napari-sam embedding cache",
    ),
    bad(
        "open_embeddings",
        "damaged-chunk",
        lambda e: ns.predict(ns.open_embeddings(e.files / "damaged_chunk.zarr", e.model), points=[[1, 1]]),
        CorruptSliceError,
        r"slice 0 of the embedding cache .*damaged_chunk.zarr is damaged",
    ),
    bad("open_embeddings", "path-None", lambda e: ns.open_embeddings(None), TypeError, r"path must be"),
    bad(
        "open_embeddings",
        "cache-of-a-future-format",
        lambda e: ns.open_embeddings(e.files / "future_format.zarr"),
        CacheMismatchError,
        r"format version: cache has 99",
    ),
]

CASES = [*SEGMENT, *COMPUTE, *PREDICT, *AUTOMATIC, *PROPAGATE, *TRAIN, *LOAD, *OPEN]


@pytest.fixture(scope="module")
def pairs(env: Env) -> None:
    """A training folder of one image/label pair (for the train rows that get past the folder)."""
    import tifffile

    folder = env.files / "pairs"
    if not folder.exists():
        folder.mkdir()
        labels = np.zeros(env.image.shape, dtype=np.uint16)
        labels[10:30, 20:40] = 1
        tifffile.imwrite(folder / "a.tif", env.image)
        tifffile.imwrite(folder / "a_labels.tif", labels)


@pytest.mark.parametrize(("entry", "call", "error", "match"), CASES)
def test_bad_input_raises_a_clear_error(env, pairs, entry, call, error, match):
    with pytest.raises(error, match=match) as info:
        call(env)
    # our errors are ValueError / TypeError / FileNotFoundError / LookupError (a damaged cache: the
    # store's CorruptSliceError), never a deep library error
    allowed = (ValueError, TypeError, OSError, LookupError, CorruptSliceError)
    assert isinstance(info.value, allowed), type(info.value)
    if isinstance(info.value, (CacheMismatchError, CheckpointError)):
        assert isinstance(info.value, NapariSamError)


def test_case_count():
    """The table in the module docstring is the real count."""
    counts = Counter(p.values[0] for p in CASES)
    rows = [re.fullmatch(r"(\w+) +(\d+)", line.strip()) for line in (__doc__ or "").splitlines()]
    table = {m[1]: int(m[2]) for m in rows if m}
    assert table.pop("total") == len(CASES)
    assert table == dict(counts)
    ids = [p.id for p in CASES]
    assert len(set(ids)) == len(ids)


# ---------------------------------------------------------------------------------- accepted, sane inputs


def test_accepted_nan_and_inf_pixels_give_finite_embeddings_and_labels(env):
    image = env.image.copy()
    image[::7, ::5] = np.nan
    image[3, 3] = np.inf
    image[4, 4] = -np.inf
    emb = ns.compute_embeddings(image, env.model)
    assert np.isfinite(emb.features.numpy()).all()
    labels = ns.segment(image, boxes=[[10, 20, 30, 40]], model=env.model, embeddings=emb)
    assert labels.shape == image.shape and labels.dtype == np.uint32
    assert set(np.unique(labels)) <= {0, 1}


def test_accepted_empty_prompt_arrays_mean_no_objects(env):
    labels = ns.segment(env.image, points=np.zeros((0, 2)), model=env.model, embeddings=env.emb)
    assert labels.shape == env.image.shape and not labels.any()
    labels = ns.segment(env.image, boxes=np.zeros((0, 4)), model=env.model, embeddings=env.emb)
    assert not labels.any()


def test_accepted_boxes_past_the_border_are_clipped(env):
    huge = ns.segment(env.image, boxes=[[-5, -5, 1e12, 1e12]], model=env.model, embeddings=env.emb)
    whole = ns.segment(env.image, boxes=[[0, 0, 48, 64]], model=env.model, embeddings=env.emb)
    np.testing.assert_array_equal(huge, whole)


def test_accepted_very_elongated_image_is_embedded_with_at_least_one_row(env):
    image = np.random.default_rng(3).random((3, 2000), dtype=np.float32)  # rows round to 0 on the canvas
    emb = ns.compute_embeddings(image, env.model, tile=False)
    assert min(emb.input_size) >= 1
    labels = ns.segment(image, boxes=[[0, 10, 3, 400]], model=env.model, embeddings=emb)
    assert labels.shape == image.shape and set(np.unique(labels)) <= {0, 1}
