"""Prompt-quality evaluation on labelled images: box, single point, and correction clicks.

The protocol used for every quality figure of this project:

- box: the object's bounding box (half-open, from its labels), one mask;
- 1 point: the object's most interior pixel (maximum of the distance transform), best of 3 masks;
- clicks: starting from the 1-point result, each correction click goes to the most interior pixel of
  the largest error region (positive if the object was missed there, negative otherwise), with all
  clicks so far and the previous low-resolution logits as prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...model import Sam
from ..decode.coords import mask_to_box
from ..decode.predict import predict
from ..embed.embeddings import compute_embeddings
from ..types import Embeddings, TiledEmbeddings


def masks_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` bool × 2 → ``(N,)`` IoU."""
    inter = np.logical_and(pred, truth).sum(axis=(1, 2))
    union = np.logical_or(pred, truth).sum(axis=(1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def interior_point(mask: np.ndarray) -> np.ndarray:
    """``(row, col)`` of the pixel farthest from the mask's border."""
    from scipy import ndimage

    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.array(np.unravel_index(np.argmax(distance), mask.shape), dtype=np.float64)


def correction_click(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Click on the largest error region's most interior pixel; label 1 if the object was missed."""
    from scipy import ndimage

    error = pred != truth
    if not error.any():
        return interior_point(truth), 1
    regions, count = ndimage.label(error)
    sizes = ndimage.sum_labels(error, regions, index=np.arange(1, count + 1))
    largest = regions == (int(np.argmax(sizes)) + 1)
    point = interior_point(largest)
    return point, int(truth[int(point[0]), int(point[1])])


def evaluate_prompts(
    model: Sam,
    samples: Iterable[tuple[np.ndarray, np.ndarray]],
    *,
    clicks: int = 3,
    max_objects: int = 40,
    min_pixels: int = 9,
    seed: int = 0,
    embed_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Mean IoU of box, 1-point and point + ``clicks`` corrections over all objects of ``samples``.

    Parameters
    ----------
    model
        The model to evaluate.
    samples
        ``(image, labels)`` pairs: ``(Y, X)`` images, ``(Y, X)`` integer labels.
    clicks
        Correction clicks after the first point.
    max_objects
        Objects evaluated per image (a seeded random subset beyond that).
    min_pixels
        Smaller objects are skipped.
    seed
        Seeds the subset of objects.
    embed_options
        Keyword arguments of :func:`compute_embeddings` (the geometry, say); ``None``: its defaults.

    Returns
    -------
    dict
        ``box``, ``point``, ``clicks_<n>`` for n = 1..clicks (mean IoU), ``objects`` (count).
    """
    scores: dict[str, list[np.ndarray]] = {"box": [], "point": []}
    for n in range(1, clicks + 1):
        scores[f"clicks_{n}"] = []
    protocol = ObjectProtocol(clicks, max_objects, min_pixels, seed, embed_options)
    for scored in protocol.run(model, samples):
        for key, (iou, _) in scored.scores.items():
            scores[key].append(iou)
    result: dict[str, Any] = {
        k: float(np.mean(np.concatenate(v))) if v else float("nan") for k, v in scores.items()
    }
    result["objects"] = int(sum(len(v) for v in scores["box"]))
    return result


@dataclass(frozen=True)
class ScoredImage:
    """One image's evaluated objects and their scores (:meth:`ObjectProtocol.run`).

    Attributes
    ----------
    index
        The sample's position.
    image
        The sample's image, as given.
    ids, areas
        ``(K,)`` label ids (ascending) and int64 pixel counts of the evaluated objects.
    truth
        ``(K, Y, X)`` bool true masks.
    scores
        :func:`step_scores`' dict: step name → ``(IoU, predicted pixel count)``, each ``(K,)``.
    """

    index: int
    image: Any
    ids: np.ndarray
    areas: np.ndarray
    truth: np.ndarray
    scores: dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class ObjectProtocol:
    """The evaluation protocol's choices: correction ``clicks``, at most ``max_objects`` per image (a
    subset drawn with ``seed``), objects of at least ``min_pixels``, and ``compute_embeddings``'
    ``embed_options``."""

    clicks: int = 3
    max_objects: int = 40
    min_pixels: int = 9
    seed: int = 0
    embed_options: dict[str, Any] | None = None

    def run(self, model: Sam, samples: Iterable[tuple[np.ndarray, np.ndarray]]) -> Iterator[ScoredImage]:
        """Each sample with objects to evaluate, embedded once and scored (:func:`step_scores`).

        Raises
        ------
        ValueError
            Labels of another shape than the image's plane, or a sample that is not one 2D image.
        """
        rng = np.random.default_rng(self.seed)
        for index, (image, labels) in enumerate(samples):
            labels = np.asarray(labels)
            if labels.shape != np.shape(image)[:2]:
                raise ValueError(
                    f"samples[{index}]: labels must have the image's (Y, X) shape {np.shape(image)[:2]}, "
                    f"got {labels.shape}"
                )
            ids, areas = select_objects(labels, rng, max_objects=self.max_objects, min_pixels=self.min_pixels)
            if ids.size == 0:
                continue
            truth = np.stack([labels == i for i in ids])
            emb = compute_embeddings(image, model, **(self.embed_options or {}))
            if not isinstance(emb, (Embeddings, TiledEmbeddings)):
                shape = np.shape(image)
                raise ValueError(f"samples[{index}]: the image must be one 2D image, got shape {shape}")
            yield ScoredImage(index, image, ids, areas, truth, step_scores(emb, truth, self.clicks))


def select_objects(
    labels: np.ndarray, rng: np.random.Generator, *, max_objects: int, min_pixels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The objects of one label image that the protocol evaluates, and their areas.

    Parameters
    ----------
    labels
        ``(Y, X)`` integer labels, 0 background.
    rng
        Draws the subset when more than ``max_objects`` objects are large enough (the only draw).
    max_objects
        At most this many objects (a random subset, sorted by id, beyond that).
    min_pixels
        Objects with fewer pixels are skipped.

    Returns
    -------
    tuple of numpy.ndarray
        ``(K,)`` label ids (ascending) and ``(K,)`` int64 pixel counts.
    """
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    keep = counts >= min_pixels
    ids, counts = ids[keep], counts[keep].astype(np.int64)
    if ids.size > max_objects:
        chosen = np.sort(rng.choice(ids.size, size=max_objects, replace=False))
        ids, counts = ids[chosen], counts[chosen]
    return ids, counts


def step_scores(
    embeddings: Embeddings | TiledEmbeddings, truth: np.ndarray, clicks: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """IoU and predicted area of every protocol step for the objects of one embedded image.

    Parameters
    ----------
    embeddings
        The image's embeddings (from :func:`compute_embeddings`).
    truth
        ``(N, Y, X)`` bool, one true mask per object (none empty), of the image's shape.
    clicks
        Correction clicks after the first point; each click's prediction also gets the previous one's
        low-resolution logits (on tiled embeddings, which take no logits, its binary masks).

    Returns
    -------
    dict
        ``box``, ``point``, ``clicks_<n>`` (n = 1..clicks) → ``((N,) float64 IoU, (N,) int64 predicted
        pixel count)``.
    """
    scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    boxes = np.stack([mask_to_box(m) for m in truth])
    pred = predict(embeddings, box=boxes, multimask=False)
    scores["box"] = _score(pred.masks[:, 0], truth)

    points = np.stack([interior_point(m) for m in truth])[:, None, :]
    point_labels = np.ones(points.shape[:2], dtype=np.int64)
    pred = predict(embeddings, points=points, point_labels=point_labels, multimask=True)
    rows = np.arange(len(truth))
    current = pred.masks[rows, pred.best_index]
    logits = pred.low_res_logits[rows, pred.best_index]
    scores["point"] = _score(current, truth)
    for n in range(1, clicks + 1):
        new = [correction_click(p, t) for p, t in zip(current, truth, strict=True)]
        points = np.concatenate([points, np.stack([c[0] for c in new])[:, None, :]], axis=1)
        point_labels = np.concatenate([point_labels, np.array([[c[1]] for c in new])], axis=1)
        previous = current if isinstance(embeddings, TiledEmbeddings) else logits  # tiles take masks
        pred = predict(
            embeddings, points=points, point_labels=point_labels, mask_input=previous, multimask=False
        )
        current, logits = pred.masks[:, 0], pred.low_res_logits[:, 0]
        scores[f"clicks_{n}"] = _score(current, truth)
    return scores


def _score(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return masks_iou(pred, truth), pred.sum(axis=(1, 2), dtype=np.int64)
