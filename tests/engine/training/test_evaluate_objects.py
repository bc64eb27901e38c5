"""Per-object evaluation records and their summary by object size."""

from __future__ import annotations

import math

import numpy as np
import pytest

import napari_sam as ns
from napari_sam.engine.decode.coords import mask_to_box
from napari_sam.engine.training.box_baseline import otsu_in_box
from napari_sam.engine.training.evaluate import evaluate_prompts, masks_iou
from napari_sam.engine.training.evaluate_objects import (
    BASELINE,
    SIZE_BANDS,
    ObjectRecord,
    equivalent_diameter,
    evaluate_objects,
    summarize,
    summarize_by_size,
)

#: Disc radii of the hand-made image: equivalent diameters ~6, ~12, ~23, ~47 px, one per band below 60.
RADII = (3, 6, 11, 23, 2)


def _sample(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 160² uint16 image of bright discs on a noisy background, and its labels (the 2-px disc: 13 px)."""
    shape = (160, 160)
    centres = ((20, 20), (25, 70), (30, 130), (100, 50), (140, 140))
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for label, ((r, c), radius) in enumerate(zip(centres, RADII, strict=True), start=1):
        labels[(rows - r) ** 2 + (cols - c) ** 2 <= radius**2] = label
    rng = np.random.default_rng(seed)
    image = 200.0 + 800.0 * (labels > 0) + rng.normal(0.0, 40.0, shape)
    return np.clip(image, 0, None).astype(np.uint16), labels


@pytest.fixture(scope="module")
def nano():
    return ns.load_model("nano", device="cpu")


@pytest.fixture(scope="module")
def evaluated(nano):
    samples = [_sample()]
    return samples, evaluate_objects(nano, samples, clicks=1, min_pixels=20)


def test_records_cover_the_large_enough_objects_with_true_sizes(evaluated):
    [(image, labels)], records = evaluated
    areas = np.bincount(labels.ravel())
    expected = [int(i) for i in np.flatnonzero(areas >= 20) if i > 0]
    assert [r.label for r in records] == expected == [1, 2, 3, 4]  # the 13-px disc is below min_pixels
    for record in records:
        assert record.image == 0
        assert record.area == areas[record.label]
        assert record.diameter == pytest.approx(2 * math.sqrt(record.area / math.pi))
        assert list(record.iou) == ["box", "point", "clicks_1", BASELINE] == list(record.predicted_area)
        assert all(0.0 <= v <= 1.0 for v in record.iou.values())
        assert all(0 <= v <= image.size for v in record.predicted_area.values())


def test_the_baseline_record_is_otsu_in_the_objects_box(evaluated):
    [(image, labels)], records = evaluated
    for record in records:
        truth = labels == record.label
        mask = otsu_in_box(image, mask_to_box(truth))
        assert record.iou[BASELINE] == pytest.approx(masks_iou(mask[None], truth[None])[0])
        assert record.predicted_area[BASELINE] == int(mask.sum())
    assert min(r.iou[BASELINE] for r in records) > 0.5  # clear discs: Otsu finds them


def test_records_agree_with_evaluate_prompts(nano, evaluated):
    samples, records = evaluated
    summary = evaluate_prompts(nano, samples, clicks=0, min_pixels=20)
    assert summary["objects"] == len(records)
    assert summary["box"] == pytest.approx(np.mean([r.iou["box"] for r in records]))
    assert summary["point"] == pytest.approx(np.mean([r.iou["point"] for r in records]))


def test_size_bands_partition_the_records(evaluated):
    _, records = evaluated
    bands = summarize_by_size(records)
    assert [(b.low, b.high) for b in bands] == list(SIZE_BANDS)
    assert sum(b.count for b in bands) == len(records)
    assert [b.count for b in bands] == [1, 1, 1, 1, 0, 0]  # one disc per band below 60 px
    overall = summarize(records)
    for kind, mean in overall.mean_iou.items():
        weighted = sum(b.count * b.mean_iou[kind] for b in bands if b.count)
        assert weighted / len(records) == pytest.approx(mean)
    assert math.isnan(bands[-1].mean_iou["box"]) and math.isnan(bands[-1].area_ratio["box"][1])


def _record(area: int, predicted: int, diameter: float | None = None) -> ObjectRecord:
    d = float(equivalent_diameter(area)) if diameter is None else diameter
    return ObjectRecord(0, 1, area, d, {"box": area / predicted}, {"box": predicted})  # truth inside


def test_area_ratio_quartiles_on_hand_made_records():
    records = [_record(100, p) for p in (100, 200, 300, 400, 500)]  # ratios 1..5
    assert records[1].area_ratio("box") == 2.0
    summary = summarize(records)
    assert summary.count == 5
    assert summary.area_ratio["box"] == (2.0, 3.0, 4.0)
    assert summary.mean_iou["box"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5) / 5)
    assert records[0].diameter == pytest.approx(11.284, abs=1e-3)  # 2 sqrt(100 / pi)
    assert summarize(records, 11.0, 11.3).count == 5 and summarize(records, 11.3).count == 0


def test_equivalent_diameter_and_bad_arguments(nano):
    assert float(equivalent_diameter(math.pi * 25)) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="area"):
        equivalent_diameter(-1)
    with pytest.raises(ValueError, match="bands"):
        summarize_by_size([], bands=[(0, 10), (5, 20)])
    with pytest.raises(ValueError, match="clicks"):
        evaluate_objects(nano, [_sample()], clicks=-1)
    image, labels = _sample()
    with pytest.raises(ValueError, match="labels must have the image's"):
        evaluate_objects(nano, [(image, labels[:100])])


def test_embed_options_reach_compute_embeddings(nano):
    with pytest.raises(TypeError, match="no_such_option"):
        evaluate_objects(nano, [_sample()], embed_options={"no_such_option": 1})


def test_tiled_embeddings_take_the_click_protocol(nano):
    """Tiled embeddings accept no logits as mask prompt: the clicks go on with the previous masks."""
    records = evaluate_objects(nano, [_sample()], clicks=1, min_pixels=20, embed_options={"tile": (128, 16)})
    assert len(records) == 4
    assert np.mean([r.iou["box"] for r in records]) > 0.7  # bright discs: tiling must not lose them
    assert all(0.0 <= r.iou["clicks_1"] <= 1.0 for r in records)
