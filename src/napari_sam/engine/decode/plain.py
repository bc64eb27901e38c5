"""Prompts → masks on the embeddings of one image (or one tile): :func:`predict_plain`.

Stateless: every call gets checked :class:`~napari_sam.engine.types.Prompts` (napari coordinates,
points ``(row, col)``, boxes ``(min_row, min_col, max_row, max_col)`` half-open, in pixels of the
original image) and everything else it needs. :mod:`napari_sam.engine.decode.coords` converts them.
:func:`napari_sam.predict` (:mod:`napari_sam.engine.decode.predict`) checks the user's arguments and
calls this or :func:`~napari_sam.engine.decode.tiled.predict_tiled`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from ...model import Sam
from ...model.transformer import ImageTokens
from ..loading import load_model, model_weights_id
from ..lru import LRU
from ..preprocess import mask_to_prompt_logits, upscale_logits
from ..types import Embeddings, Prompts
from .coords import boxes_rc_to_xyxy, points_rc_to_xy, scale_xy


@dataclass(frozen=True)
class Prediction:
    """Masks predicted for ``N`` objects, ``K`` candidates each (K = 3 multimask, else 1).

    Attributes
    ----------
    masks
        ``(N, K, H, W)`` bool at the original image size (float32 logits if ``return_logits``).
    iou_scores
        ``(N, K)`` float32 predicted IoU of each mask.
    low_res_logits
        ``(N, K, 4h, 4w)`` float32 logits at the decoder's resolution (``(256, 256)`` for the
        official models); pass one as ``mask_input`` to refine the object.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> pred = ns.predict(ns.compute_embeddings(image), points=[[[14, 75]], [[74, 15]]])  # 2 objects
    >>> pred.masks.shape, pred.best_index.shape, pred.best_masks().shape
    ((2, 3, 128, 128), (2,), (2, 128, 128))
    """

    masks: np.ndarray
    iou_scores: np.ndarray
    low_res_logits: np.ndarray

    @property
    def best_index(self) -> np.ndarray:
        """``(N,)`` index of the highest-scoring candidate of each object."""
        return np.argmax(self.iou_scores, axis=1)

    def best_masks(self) -> np.ndarray:
        """``(N, H, W)`` the highest-scoring mask of each object."""
        return self.masks[np.arange(self.masks.shape[0]), self.best_index]


@dataclass(frozen=True)
class DecodeOptions:
    """What the decoder returns for each object; checked when made.

    Attributes
    ----------
    multimask
        True: 3 candidate masks per object (good for a single ambiguous point); False: one.
    best_only
        With ``multimask``: keep only the best-scoring candidate per object (only that one is upsampled
        to full resolution).
    return_logits
        float32 logits instead of boolean masks.

    Raises
    ------
    TypeError
        A value that is not True or False.
    """

    multimask: bool = True
    best_only: bool = False
    return_logits: bool = False

    def __post_init__(self) -> None:
        for option in fields(self):
            flag = getattr(self, option.name)
            if not isinstance(flag, (bool, np.bool_)):
                raise TypeError(f"{option.name} must be True or False, got {flag!r}")

    @property
    def candidates(self) -> int:
        """Masks returned per object: 3 with ``multimask`` unless ``best_only``, else 1."""
        return 3 if self.multimask and not self.best_only else 1


def _mask_prompt(
    mask_input: np.ndarray, n_objects: int, embeddings: Embeddings, mask_input_size: tuple[int, int]
) -> torch.Tensor:
    """``mask_input`` as ``(1 or N, 1, 4h, 4w)`` mask-prompt logits.

    Accepted forms: float low-resolution logits of shape ``(..., 4h, 4w)`` (a previous
    :attr:`Prediction.low_res_logits`), or a binary mask of the image's shape ``(..., H, W)``: bool,
    integer (nonzero is the object) or float holding only 0 and 1 (``(labels == k).astype(float)``).
    A float array of the image's shape that is also the logits' shape is read as logits.
    """
    arr = np.asarray(mask_input)
    image_shape = tuple(embeddings.original_size)
    is_float = np.issubdtype(arr.dtype, np.floating)
    is_logits = is_float and arr.shape[-2:] == tuple(mask_input_size)
    is_binary = (
        arr.dtype == bool or np.issubdtype(arr.dtype, np.integer) or (is_float and zeros_and_ones(arr))
    )
    if arr.ndim >= 2 and arr.shape[-2:] == image_shape and is_binary and not is_logits:
        stack = arr.reshape(-1, *arr.shape[-2:])
        logits = torch.cat(
            [
                mask_to_prompt_logits(
                    m > 0,
                    image_size=embeddings.image_size,
                    mask_input_size=mask_input_size,
                    input_size=embeddings.input_size,
                )
                for m in stack
            ]
        )
    elif arr.ndim >= 2 and is_logits:
        logits = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(
            -1, 1, *mask_input_size
        )
    else:
        raise ValueError(
            f"mask_input must be low-resolution logits of shape {tuple(mask_input_size)} (float, "
            f"e.g. Prediction.low_res_logits[i, k]) or a binary mask of the image's shape "
            f"{image_shape} (bool, integer, or float of 0 and 1, e.g. labels == k); got shape "
            f"{arr.shape}, dtype {arr.dtype}"
        )
    if logits.shape[0] == 1 and n_objects > 1:
        logits = logits.expand(n_objects, -1, -1, -1)
    if logits.shape[0] != n_objects:
        raise ValueError(
            f"mask_input holds {logits.shape[0]} masks for {n_objects} objects; give one or one per object"
        )
    return logits


def zeros_and_ones(arr: np.ndarray) -> bool:
    """Whether a float array holds only 0 and 1 (a binary mask stored as floats)."""
    return bool(np.all((arr == 0) | (arr == 1)))


#: Images whose prompt-independent decoder inputs are kept at once (a few slices of a stack).
PREPARED_KEPT = 4
# embeddings → (model id, weights id, device, decoder inputs): derived data, never state; held weakly
_PREPARED: LRU[Embeddings, tuple[int, str, str, ImageTokens]] = LRU(PREPARED_KEPT, weak_keys=True)


def prepared_image(embeddings: Embeddings, sam: Sam) -> ImageTokens:
    """The decoder's image-side inputs for ``embeddings`` without a mask prompt, computed once.

    Kept while ``embeddings`` is alive, for the last few images used (about 15 MB each for a 64×64
    embedding), so repeated prompts on one image skip the image-only part of the decoder's first block.
    """
    key = (id(sam), model_weights_id(sam, check_content=False), str(sam.device))
    cached = _PREPARED.get(embeddings)
    if cached is not None and cached[:3] == key:
        return cached[3]
    pe = sam.prompt_encoder
    with torch.inference_mode():
        _, no_mask = pe(None, None, None)  # the dense "no mask" embedding every such prompt gets
        prepared = sam.mask_decoder.prepare_image(
            embeddings.features.to(sam.device), pe.get_dense_pe(), no_mask
        )
    _PREPARED.put(embeddings, (*key, prepared))
    return prepared


def decoding_model(embeddings: Embeddings, model: Sam | None) -> Sam:
    """``model``, else the model that computed ``embeddings`` (loaded by name when it is not at hand);
    a ValueError when its weights are not the ones ``embeddings`` were computed with."""
    sam = model or embeddings.model
    if sam is None:
        sam = load_model(embeddings.model_name)
    if model_weights_id(sam, check_content=False) != embeddings.weights_sha256:
        raise ValueError(
            f"model {sam.name!r} is not the model these embeddings were computed with "
            f"({embeddings.model_name!r}, weights {embeddings.weights_sha256[:12]}…)"
        )
    return sam


def predict_plain(
    embeddings: Embeddings, prompts: Prompts, options: DecodeOptions, model: Sam | None = None
) -> Prediction:
    """:func:`napari_sam.predict` on one :class:`Embeddings`, for prompts grouped by object.

    Parameters
    ----------
    embeddings
        Of the image (or window) the prompts are in.
    prompts
        Checked prompts with ``per_object`` grouping (``(K, P, 2)`` points, ``(K, 4)`` boxes, masks);
        at least one of them.
    options
        What to return: candidates, logits.
    model
        As in :func:`napari_sam.predict`.

    Returns
    -------
    Prediction
        ``masks`` ``(K, C, H, W)`` at the image's size, ``C = options.candidates`` per object.
    """
    sam = decoding_model(embeddings, model)
    point_arg, box_arg = _point_and_box_tensors(embeddings, prompts, sam.device)
    mask_arg = None
    if prompts.masks is not None:
        mask_arg = _mask_prompt(
            prompts.masks, prompts.n_objects, embeddings, sam.prompt_encoder.mask_input_size
        ).to(sam.device)
    with torch.inference_mode():
        sparse, dense = sam.prompt_encoder(point_arg, box_arg, mask_arg)
        if mask_arg is None:
            image: torch.Tensor | ImageTokens = prepared_image(embeddings, sam)
            image_pe = None
        else:
            image, image_pe = embeddings.features.to(sam.device), sam.prompt_encoder.get_dense_pe()
        low_res, iou = sam.mask_decoder(image, image_pe, sparse, dense, multimask_output=options.multimask)
        if options.best_only and low_res.shape[1] > 1:
            best = iou.argmax(dim=1)
            rows = torch.arange(low_res.shape[0], device=sam.device)
            low_res, iou = low_res[rows, best][:, None], iou[rows, best][:, None]
        full = upscale_logits(
            low_res,
            input_size=embeddings.input_size,
            original_size=embeddings.original_size,
            image_size=embeddings.image_size,
        )
        masks = full if options.return_logits else full > sam.mask_threshold
    return Prediction(
        masks=masks.cpu().numpy(),
        iou_scores=iou.float().cpu().numpy(),
        low_res_logits=low_res.float().cpu().numpy(),
    )


def _point_and_box_tensors(
    embeddings: Embeddings, prompts: Prompts, device: torch.device
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None]:
    """The prompt encoder's point ``((K, P, 2) xy, (K, P) labels)`` and box ``(K, 4)`` xyxy inputs, in
    the model input's frame; one set of points is repeated for every object."""
    shape, n = embeddings.original_size, prompts.n_objects
    point_arg = box_arg = None
    if prompts.has_points:
        xy = scale_xy(points_rc_to_xy(prompts.points), shape, embeddings.input_size)
        coords = torch.as_tensor(xy, dtype=torch.float32, device=device)
        label_t = torch.as_tensor(prompts.point_labels, dtype=torch.int64, device=device)
        if coords.shape[0] != n:
            coords, label_t = coords.expand(n, -1, -1), label_t.expand(n, -1)
        point_arg = (coords, label_t)
    if prompts.has_boxes:
        xyxy = boxes_rc_to_xyxy(prompts.boxes)
        xyxy = scale_xy(xyxy.reshape(-1, 2, 2), shape, embeddings.input_size).reshape(-1, 4)
        box_arg = torch.as_tensor(xyxy, dtype=torch.float32, device=device)
    return point_arg, box_arg
