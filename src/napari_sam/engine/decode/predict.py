"""``predict``: the public prompt decoder. Checks its arguments once, then decodes on plain embeddings
(:func:`~napari_sam.engine.decode.plain.predict_plain`) or tiled ones
(:func:`~napari_sam.engine.decode.tiled.predict_tiled`).

Coordinates are napari's: points ``(row, col)``, boxes ``(min_row, min_col, max_row, max_col)``
half-open, all in pixels of the original image. :mod:`napari_sam.engine.decode.coords` converts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...model import Sam
from ..types import Embeddings, TiledEmbeddings
from .plain import DecodeOptions, Prediction, decoding_model, predict_plain
from .prompts import normalize_prompts
from .tiled import predict_tiled

__all__ = ["Prediction", "predict"]


def predict(
    embeddings: Embeddings | TiledEmbeddings,
    *,
    points: Any = None,
    point_labels: Any = None,
    box: Any = None,
    mask_input: Any = None,
    multimask: bool = True,
    best_only: bool = False,
    return_logits: bool = False,
    model: Sam | None = None,
) -> Prediction:
    """Predict masks for prompts on precomputed embeddings.

    Parameters
    ----------
    embeddings
        From :func:`napari_sam.compute_embeddings`.
    points
        ``(P, 2)`` ``(row, col)`` points describing one object, or ``(N, P, 2)`` for N objects.
    point_labels
        ``(P,)`` / ``(N, P)``: 1 foreground, 0 background. Default: all foreground.
    box
        ``(4,)`` or ``(N, 4)`` half-open ``(min_row, min_col, max_row, max_col)``. With points, each box
        is combined with the points of the same object.
    mask_input
        Logits from a previous :class:`Prediction` (``low_res_logits[i, k]``, shape ``(4h, 4w)``), or a
        binary mask of the image's shape (bool, integer — nonzero is the object — or float holding only
        0 and 1, e.g. ``labels == k``; tiled embeddings take only the mask); one for all objects or
        ``(N, ...)``.
    multimask
        True: 3 candidate masks per object (good for a single ambiguous point); False: one.
    best_only
        With ``multimask``: keep only the best-scoring candidate per object (K = 1); only that one is
        upsampled to full resolution.
    return_logits
        Return float32 logits instead of boolean masks.
    model
        The model to decode with; defaults to the one that computed ``embeddings``.

    Returns
    -------
    Prediction
        ``masks`` ``(N, K, H, W)`` at the image's size, ``iou_scores`` ``(N, K)`` and
        ``low_res_logits`` ``(N, K, 256, 256)``; K = 3 with ``multimask`` (1 with ``best_only``), else 1.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> emb = ns.compute_embeddings(image)  # once per image; then each prompt takes milliseconds
    >>> pred = ns.predict(emb, points=[[14, 75]])  # one click at row 14, column 75
    >>> pred.masks.shape, pred.masks.dtype, pred.iou_scores.shape
    ((1, 3, 128, 128), dtype('bool'), (1, 3))

    Refine the best candidate with a second click, feeding its logits back:

    >>> best = pred.low_res_logits[0, pred.best_index[0]]
    >>> better = ns.predict(emb, points=[[14, 75], [20, 90]], point_labels=[1, 0], mask_input=best,
    ...                     multimask=False)
    >>> better.masks.shape
    (1, 1, 128, 128)

    Two objects from two boxes in one call:

    >>> ns.predict(emb, box=[[0, 55, 29, 95], [54, 1, 96, 32]], multimask=False).masks.shape
    (2, 1, 128, 128)
    """
    options = DecodeOptions(multimask, best_only, return_logits)  # checked first
    if not isinstance(embeddings, (Embeddings, TiledEmbeddings)):
        is_stack = hasattr(embeddings, "shape")
        hint = "; index a stack's VolumeEmbeddings by slice: embeddings[z]" if is_stack else ""
        raise TypeError(
            f"embeddings must be an Embeddings object from compute_embeddings(), got "
            f"{type(embeddings).__name__}{hint}"
        )
    tiled = isinstance(embeddings, TiledEmbeddings)
    if not tiled and points is None and point_labels is None and box is None and mask_input is None:
        raise ValueError("predict needs at least one prompt: points, box or mask_input")
    prompts = normalize_prompts(
        points=points,
        point_labels=point_labels,
        boxes=box,
        masks=mask_input,
        spatial_shape=embeddings.original_size,
        per_object=True,
    )
    if isinstance(embeddings, TiledEmbeddings):
        return predict_tiled(embeddings, prompts, options, model)
    if box is not None and not (prompts.has_boxes or prompts.has_points) and prompts.masks is None:
        return _no_objects(embeddings, options, model)  # an empty list of boxes: no object to decode
    return predict_plain(embeddings, prompts, options, model)


def _no_objects(embeddings: Embeddings, options: DecodeOptions, model: Sam | None) -> Prediction:
    """The prediction for no object: ``masks`` ``(0, K, H, W)``, ``iou_scores`` ``(0, K)``,
    ``low_res_logits`` ``(0, K, 4h, 4w)`` (the model is still checked against the embeddings)."""
    sam = decoding_model(embeddings, model)
    k = options.candidates
    return Prediction(
        masks=np.zeros((0, k, *embeddings.original_size), np.float32 if options.return_logits else bool),
        iou_scores=np.zeros((0, k), np.float32),
        low_res_logits=np.zeros((0, k, *sam.prompt_encoder.mask_input_size), np.float32),
    )
