"""Prompt quality object by object, and its summary by object size, beside a trivial baseline.

:func:`evaluate_objects` runs the protocol of :mod:`.evaluate` (box; 1 point, best of 3; correction
clicks) on every evaluated object and keeps one :class:`ObjectRecord` per object: its size, and for
each prompt kind the IoU and the predicted area, plus those of the Otsu-in-box baseline
(:func:`.box_baseline.otsu_in_box` on the same box). :func:`summarize_by_size` groups the records by the
object's equivalent diameter (:data:`SIZE_BANDS`) into :class:`BandSummary` rows: count, mean IoU and
area ratio (predicted / true) quartiles per kind.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...model import Sam
from ..decode.coords import mask_to_box
from ..types.checks import check_int
from .box_baseline import otsu_in_boxes
from .evaluate import ObjectProtocol, masks_iou

#: Bands of equivalent diameter (pixels across), ``low <= d < high``; together they cover ``[0, inf)``.
SIZE_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 8.0),
    (8.0, 15.0),
    (15.0, 30.0),
    (30.0, 60.0),
    (60.0, 120.0),
    (120.0, math.inf),
)

#: The key of the Otsu-in-box baseline in :attr:`ObjectRecord.iou` and :attr:`ObjectRecord.predicted_area`.
BASELINE = "otsu_box"


@dataclass(frozen=True)
class ObjectRecord:
    """The evaluation of one object.

    Attributes
    ----------
    image
        Index of the object's sample in the evaluated sequence.
    label
        The object's id in that sample's labels.
    area
        True area, pixels.
    diameter
        Equivalent diameter ``2 * sqrt(area / pi)``, pixels.
    iou
        Prompt kind → IoU with the true mask: ``box``, ``point``, ``clicks_<n>`` (n = 1..clicks) and
        :data:`BASELINE`.
    predicted_area
        The same kinds → predicted mask area, pixels.
    """

    image: int
    label: int
    area: int
    diameter: float
    iou: dict[str, float]
    predicted_area: dict[str, int]

    def area_ratio(self, kind: str) -> float:
        """Predicted / true area of prompt ``kind`` (a key of :attr:`iou`)."""
        return self.predicted_area[kind] / self.area


@dataclass(frozen=True)
class BandSummary:
    """The records of one size band, summarised.

    Attributes
    ----------
    low, high
        The band: equivalent diameters ``low <= d < high``, pixels.
    count
        Objects in the band.
    mean_iou
        Prompt kind → mean IoU (NaN when the band is empty).
    area_ratio
        Prompt kind → ``(q25, median, q75)`` of predicted / true area (NaN when empty).
    """

    low: float
    high: float
    count: int
    mean_iou: dict[str, float]
    area_ratio: dict[str, tuple[float, float, float]]


def equivalent_diameter(area: Any) -> np.ndarray:
    """Diameter of the disc of the same area: ``2 * sqrt(area / pi)``.

    Parameters
    ----------
    area
        Scalar or array of areas in pixels (``>= 0``).

    Returns
    -------
    numpy.ndarray
        float64, ``area``'s shape (0-d for a scalar).
    """
    values = np.asarray(area, dtype=np.float64)
    if (values < 0).any() or not np.isfinite(values).all():
        raise ValueError(f"area must be finite and >= 0, got {area!r}")
    return 2.0 * np.sqrt(values / np.pi)


def evaluate_objects(
    model: Sam,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    clicks: int = 3,
    max_objects: int = 40,
    min_pixels: int = 9,
    seed: int = 0,
    embed_options: dict[str, Any] | None = None,
) -> list[ObjectRecord]:
    """One record per evaluated object: the model's box, 1-point and click results and the baseline's.

    The objects are those :func:`.evaluate.evaluate_prompts` evaluates with the same arguments (the same
    seeded subset), and its mean IoUs are the means of these records'. Each image is embedded once.

    Parameters
    ----------
    model
        The model to evaluate.
    samples
        ``(image, labels)`` pairs: ``(Y, X)`` or ``(Y, X, C)`` (channels last) images, ``(Y, X)`` integer
        labels (0 background).
    clicks
        Correction clicks after the first point (``>= 0``).
    max_objects
        Objects evaluated per image (a seeded random subset beyond that).
    min_pixels
        Smaller objects are skipped.
    seed
        Seeds the subset of objects.
    embed_options
        Keyword arguments of :func:`compute_embeddings` (``image`` and ``model`` aside), e.g. the
        geometry; ``None``: its defaults.

    Returns
    -------
    list of ObjectRecord
        In sample order, by ascending label within a sample.

    Raises
    ------
    ValueError
        Bad counts, labels of another shape than the image's plane, or a sample that is not one 2D image.
    """
    clicks = check_int(clicks, "clicks", 0)
    max_objects = check_int(max_objects, "max_objects")
    min_pixels = check_int(min_pixels, "min_pixels")
    records: list[ObjectRecord] = []
    protocol = ObjectProtocol(clicks, max_objects, min_pixels, seed, embed_options)
    for scored in protocol.run(model, samples):
        scores = dict(scored.scores)
        baseline = otsu_in_boxes(scored.image, np.stack([mask_to_box(m) for m in scored.truth]))
        scores[BASELINE] = (masks_iou(baseline, scored.truth), baseline.sum(axis=(1, 2), dtype=np.int64))
        diameters = equivalent_diameter(scored.areas)
        for k, (label, area) in enumerate(zip(scored.ids.tolist(), scored.areas.tolist(), strict=True)):
            records.append(
                ObjectRecord(
                    image=scored.index,
                    label=int(label),
                    area=int(area),
                    diameter=float(diameters[k]),
                    iou={kind: float(iou[k]) for kind, (iou, _) in scores.items()},
                    predicted_area={kind: int(pred[k]) for kind, (_, pred) in scores.items()},
                )
            )
    return records


def summarize(
    records: Sequence[ObjectRecord],
    low: float = 0.0,
    high: float = math.inf,
    *,
    kinds: Sequence[str] | None = None,
) -> BandSummary:
    """The records whose equivalent diameter is in ``[low, high)``, summarised.

    Parameters
    ----------
    records
        From :func:`evaluate_objects`.
    low, high
        The band, pixels across; the defaults take every record.
    kinds
        Prompt kinds to summarise; ``None``: every kind found in ``records``, in first-seen order.

    Returns
    -------
    BandSummary
    """
    kinds = list(kinds) if kinds is not None else _kinds(records)
    chosen = [r for r in records if low <= r.diameter < high]
    mean_iou: dict[str, float] = {}
    area_ratio: dict[str, tuple[float, float, float]] = {}
    for kind in kinds:
        if not chosen:
            mean_iou[kind], area_ratio[kind] = math.nan, (math.nan, math.nan, math.nan)
            continue
        mean_iou[kind] = float(np.mean([r.iou[kind] for r in chosen]))
        q25, median, q75 = np.percentile([r.area_ratio(kind) for r in chosen], [25, 50, 75])
        area_ratio[kind] = (float(q25), float(median), float(q75))
    return BandSummary(float(low), float(high), len(chosen), mean_iou, area_ratio)


def summarize_by_size(
    records: Sequence[ObjectRecord], bands: Sequence[tuple[float, float]] = SIZE_BANDS
) -> list[BandSummary]:
    """One :class:`BandSummary` per size band (empty bands included, with count 0).

    Parameters
    ----------
    records
        From :func:`evaluate_objects`.
    bands
        ``(low, high)`` equivalent-diameter bands in pixels, ascending and not overlapping
        (``low < high``, each ``low`` at or above the previous ``high``).

    Returns
    -------
    list of BandSummary
        In the order of ``bands``; every kind found in ``records`` in each.
    """
    checked = _check_bands(bands)
    kinds = _kinds(records)
    return [summarize(records, low, high, kinds=kinds) for low, high in checked]


def _kinds(records: Sequence[ObjectRecord]) -> list[str]:
    kinds: dict[str, None] = {}
    for record in records:
        kinds.update(dict.fromkeys(record.iou))
    return list(kinds)


def _check_bands(bands: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    try:
        pairs = [(float(low), float(high)) for low, high in bands]
    except (TypeError, ValueError):
        raise ValueError(f"bands must be (low, high) pairs of numbers, got {bands!r}") from None
    previous = -math.inf
    for low, high in pairs:
        if not (low < high and low >= previous and low >= 0 and not math.isnan(high)):
            raise ValueError(
                "bands must be ascending, non-overlapping (low, high) pairs with 0 <= low < high, "
                f"got {bands!r}"
            )
        previous = high
    return pairs
