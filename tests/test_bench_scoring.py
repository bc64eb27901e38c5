"""The benchmarks' F1 scoring (benchmarks/_scoring.py): matches by IoU, 2D and 3D, empty cases."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from _scoring import IOU_THRESHOLDS, f1_at_iou, f1_scores, iou_matrix


def _two_squares() -> tuple[np.ndarray, np.ndarray]:
    truth = np.zeros((20, 40), dtype=np.uint32)
    truth[0:10, 0:10] = 1  # 100 px
    truth[0:10, 20:30] = 2
    pred = np.zeros_like(truth)
    pred[0:10, 0:10] = 7  # exact: IoU 1
    pred[0:10, 22:32] = 3  # shifted by 2 columns: 80 / 120 = 2/3
    pred[15:18, 35:38] = 9  # spurious
    return pred, truth


def test_iou_matrix_renumbers_and_measures_overlap() -> None:
    pred, truth = _two_squares()
    iou = iou_matrix(pred, truth)
    # predicted labels 3, 7, 9 in sorted order; true 1, 2
    np.testing.assert_allclose(iou, [[0.0, 80 / 120], [1.0, 0.0], [0.0, 0.0]])


def test_f1_counts_a_match_only_above_the_threshold() -> None:
    pred, truth = _two_squares()
    scores = f1_scores(pred, truth)
    assert len(scores) == len(IOU_THRESHOLDS) == 10
    # IoU 2/3 matches at 0.5, 0.55, 0.6, 0.65, not at 0.7 and above; the exact square always matches
    expected = [2 * 2 / 5] * 4 + [2 * 1 / 5] * 6
    np.testing.assert_allclose(scores, expected)
    assert f1_at_iou(pred, truth) == (pytest.approx(0.8), 2, 3, 2)


def test_f1_in_3d_uses_voxel_iou() -> None:
    truth = np.zeros((4, 8, 8), dtype=np.uint16)
    truth[0:4, 0:4, 0:4] = 1  # 64 voxels
    pred = np.zeros_like(truth)
    pred[0:2, 0:4, 0:4] = 1  # half of it in z: IoU 0.5, not above 0.5
    assert f1_scores(pred, truth, [0.49, 0.5]) == [1.0, 0.0]


def test_empty_images() -> None:
    empty = np.zeros((5, 5), dtype=np.uint8)
    one = empty.copy()
    one[1:3, 1:3] = 4
    assert f1_scores(empty, empty, [0.5]) == [1.0]
    assert f1_scores(one, empty, [0.5]) == [0.0]
    assert f1_at_iou(empty, one) == (0.0, 0, 0, 1)
    with pytest.raises(ValueError, match="same shape"):
        iou_matrix(one, one[:4])
