"""Headless entry points: ``segment()`` turns an image and prompts into a labels array; ``train()``.

:func:`segment` checks its arguments once, before any model is loaded, then runs one of three modes:
prompts on an image (:func:`segment_image`), prompts on a stack (slice by slice, or propagated), or
automatic segmentation when there are no prompts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .engine.automatic.plan import AutomaticPlan
from .engine.decode.objects import decode_into, is_blank, plan_objects, segment_stack
from .engine.decode.prompts import normalize_prompts
from .engine.device import DeviceLike
from .engine.embed.embeddings import VolumeEmbeddings, embed_image
from .engine.embed.layout import image_layout, layout_warnings_once
from .engine.loading import ModelLike, is_sam2, load_model
from .engine.object_scale import object_size_of_boxes
from .engine.preprocess import DEFAULT_PERCENTILES, NormalizeMode
from .engine.preprocess import _check_dtype as check_dtype
from .engine.types import (
    DEFAULT_TILE_THRESHOLD,
    Embeddings,
    EmbedOptions,
    ImageLayout,
    Prompts,
    TiledEmbeddings,
)
from .engine.volume.memory_segment import is_plane_stack, segment_planes

__all__ = ["TrainResult", "segment", "segment_image", "train"]


def segment(
    image: Any,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    *,
    multimask: bool | str = "auto",
    embeddings: Embeddings | TiledEmbeddings | VolumeEmbeddings | None = None,
    normalize: NormalizeMode = "auto",
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    contrast_limits: tuple[float, float] | None = None,
    channel: int | Sequence[int] | None = None,
    channel_axis: int | None = None,
    batch_size: int = 32,
    cache: Any = None,
    overwrite: bool = False,
    tile: Any = None,
    tile_threshold: int = DEFAULT_TILE_THRESHOLD,
    precision: str = "auto",
    propagate: bool = True,
    propagate_options: dict[str, Any] | None = None,
    mode: str = "auto",
    object_size: float | str | None = None,
    masks: Any = None,
    point_objects: Any = None,
) -> np.ndarray:
    """Segment objects given by points and boxes, or refine given labels; return a labels image.

    Parameters
    ----------
    image
        ``(Y, X[, C])`` image or ``(Z, Y, X[, C])`` stack (a SAM 2 model: also ``(A0, A1, Y, X[, C])``, see
        ``propagate_memory``'s ``axis``): numpy, dask or zarr array, any integer or float dtype.
    points
        ``(N, 2)`` ``(row, col)`` napari coordinates; for a stack ``(N, 3)`` ``(z, row, col)``, each
        point on its slice.
    point_labels
        ``(N,)``: 1 foreground, 0 background (default all 1).
    boxes
        ``(M, 4)`` ``(min_row, min_col, max_row, max_col)``, half-open like ``regionprops().bbox``; for
        a stack ``(M, 6)`` ``(min_z, min_row, min_col, max_z, max_row, max_col)`` with
        ``max_z = min_z + 1`` (a box drawn on one slice). Prompts only act on their own slice; only
        slices with prompts are embedded.
    model
        ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, a weights path or a loaded model.
    device
        ``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"``.
    multimask
        ``"auto"``: a lone foreground point picks the best of 3 candidate masks; boxes and several
        points give one mask. True / False force either.
    embeddings
        Precomputed embeddings of ``image`` to reuse (skips the encoder): :class:`Embeddings` or
        :class:`~napari_sam.engine.embed.tiling.TiledEmbeddings` for an image, :class:`VolumeEmbeddings`
        for a stack.
    normalize, percentiles, contrast_limits, channel, channel_axis
        Preprocessing, see :func:`napari_sam.engine.preprocess.prepare_image`. Channels are last
        when the last axis has at most 4 values; with ``channel=`` given, a last axis of 5 to 16
        (shorter than the one before it) holds channels too, e.g. ``channel=2`` of a
        ``(Y, X, 6)`` image. Otherwise a 3D array is a ``(Z, Y, X)`` stack (a
        :class:`~napari_sam.errors.LayoutWarning` says so when it could be channels); pass
        ``channel_axis=`` to say where channels are.
    batch_size
        Objects decoded per call.
    cache, overwrite, tile, tile_threshold, precision
        Embedding options, see :func:`napari_sam.compute_embeddings`. With ``cache=`` a folder, the
        image is embedded once and later calls read the embeddings back (features stored as float16).
    propagate
        Stacks only. With prompts: True (default) propagates each prompted object up and down through
        the stack from its slice (:func:`napari_sam.propagate`; prompts are decoded with ``"auto"``
        multimask); False segments only the prompted slices. Without prompts: True links the
        per-slice automatic objects across slices into 3D objects
        (:func:`napari_sam.engine.volume.linking.link_slices`); False keeps one label per slice object.
    propagate_options
        Keywords for :func:`napari_sam.propagate` (``z_range``, ``iou_threshold``, ``prompt`` …; ``axis``).
    mode
        Without prompts only: ``"auto"`` (the instance decoder's AIS when the model carries one, else
        the prompt grid, AMG, with the model's preset), ``"ais"``, ``"apg"`` or ``"amg"`` — see
        :func:`napari_sam.automatic`.
    object_size
        The objects' typical diameter in pixels, or ``"auto"``: the image is scaled onto the model's
        canvas (and tiled) so that objects have the size the model segments best (see
        ``compute_embeddings(object_size=)``). ``"auto"`` takes the median size of the given boxes, or
        estimates it from the image without boxes or with ``cache=`` (so that a cache made by
        ``compute_embeddings(object_size="auto")`` or ``napari-sam embed`` is reused); ``"fixed"``: the
        fixed rule; None (default): the model's choice (nano estimates from the image, the official
        models use the fixed rule).
    masks
        Labels to refine (from Cellpose, StarDist, a threshold …): ``(Y, X)`` integer labels of the
        image's spatial shape, or ``(Z, Y, X)`` for a stack (refined slice by slice). Each label is
        prompted with its bounding box and its mask (as SAM's mask prompt) and its refined mask is
        written back under the same id; ``points`` are then correction points (see
        ``point_objects``), ``boxes`` are not taken. Labels too small to refine (fewer than 3 pixels)
        or whose refined mask is empty are kept as given, and one
        :class:`~napari_sam.errors.RefineWarning` names them; ``masks`` itself is not modified.
        See :mod:`napari_sam.engine.refine`.
    point_objects
        With ``masks`` and ``points``: ``(N,)`` the label id each point corrects. Default: the label
        under the point, or for a point on background the label nearest to it (on its slice).

    Returns
    -------
    numpy.ndarray
        ``uint32`` labels with the image's spatial shape. Object ``k`` (boxes first, then foreground
        points, each in given order) gets label ``k + 1``; where masks overlap, the one with the higher
        predicted IoU wins.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, truth = nuclei_2d((128, 128), n_objects=4, seed=0)  # uint16 nuclei + true labels
    >>> labels = ns.segment(image, boxes=[[0, 55, 29, 95]])  # the shipped "nano" model, offline
    >>> labels.shape, labels.dtype, int(labels.max())
    ((128, 128), dtype('uint32'), 1)

    A foreground click (row 14, column 75) and a background click make one object:

    >>> labels = ns.segment(image, points=[[14, 75], [100, 10]], point_labels=[1, 0])
    >>> int(labels.max()), int(labels[14, 75])
    (1, 1)

    Refine labels from another tool (each label keeps its id); a click adds a missed part:

    >>> refined = ns.segment(image, masks=truth, points=[[14, 75]])  # truth: e.g. Cellpose's labels
    >>> refined.shape, refined.dtype, int(refined[14, 75]) == int(truth[14, 75])
    ((128, 128), dtype('uint32'), True)

    With the official weights (downloaded once, or found offline):

    >>> labels = ns.segment(image, boxes=[[0, 55, 29, 95]], model="vit_b")  # doctest: +SKIP
    """
    with layout_warnings_once():  # one LayoutWarning per call, however often the layout is read
        if is_plane_stack(image, channel_axis, channel):  # (A0, A1, Y, X[, C]): SAM 2 follows an axis
            return segment_planes(image, locals())
        layout = image_layout(image, channel_axis, channel=channel)
        embedding: dict[str, Any] = {
            "normalize": normalize,
            "percentiles": percentiles,
            "contrast_limits": contrast_limits,
            "channel": channel,
            "channel_axis": layout.channel_axis,  # given, or inferred from channel= for 5 to 16 channels
            "tile": tile,
            "tile_threshold": tile_threshold,
            "precision": precision,
            "object_size": object_size,
        }
        options = EmbedOptions(**embedding)  # checked now, before any model is loaded
        storage = {"cache": cache, "overwrite": overwrite}
        mode_options = {
            "multimask": multimask,
            "batch_size": batch_size,
            "tile": tile,
            "tile_threshold": tile_threshold,
            "propagate_options": propagate_options,
        }
        if masks is not None or point_objects is not None:
            _refuse_ignored("refining masks", mode_options)
            if mode != "auto" or boxes is not None:
                bad = "boxes" if boxes is not None else f"mode={mode!r}"
                raise ValueError(f"{bad} does not apply when refining masks=; leave it out")
            sam = _model_for(embeddings, model, device)
            embedding.update(storage)
            return _segment_masks(
                image,
                layout,
                masks,
                points,
                point_labels,
                point_objects,
                sam,
                embeddings,
                embedding,
                batch_size,
            )
        if points is None and boxes is None:
            if point_labels is not None:
                raise ValueError("point_labels given without points")
            _refuse_ignored("automatic segmentation (no points or boxes)", mode_options)
            plan = AutomaticPlan.make(mode, "auto", model=model)  # checked before the model loads
            return _segment_automatic(image, layout, options, model, device, embeddings, propagate, plan)
        if mode != "auto":
            raise ValueError(
                f"mode={mode!r} applies to automatic segmentation (no points or boxes); leave it out"
            )
        _check_decoding(multimask, batch_size)
        check_dtype(image if hasattr(image, "dtype") else np.asarray(image))  # before the prompts
        prompts = normalize_prompts(
            points=points, point_labels=point_labels, boxes=boxes, spatial_shape=layout.spatial_shape
        )
        if options.object_size == "auto" and len(prompts.boxes) and cache is None and embeddings is None:
            # the boxes say how big objects are (with a cache: the image's estimate, as `embed` makes it)
            rc = prompts.boxes[:, [1, 2, 4, 5]] if prompts.boxes.shape[1] == 6 else prompts.boxes
            embedding["object_size"] = object_size_of_boxes(rc)
            options = EmbedOptions(**embedding)
        if layout.is_volume and propagate:
            _refuse_ignored("a stack with propagate=True", mode_options)
            sam = _model_for(embeddings, model, device, allow_sam2=True)
            if is_sam2(sam):  # SAM 2: memory propagation (the SAM 1 path is unchanged)
                from .engine.volume.memory_segment import segment_with_memory as memory

                return memory(image, prompts, sam, embeddings, embedding, storage, propagate_options)
            embedding.update(storage)
            return _segment_propagated(image, prompts, sam, embeddings, embedding, propagate_options)
        _refuse_ignored("a stack with propagate=False" if layout.is_volume else "a 2D image", mode_options)
        sam = _model_for(embeddings, model, device)
        if embeddings is None:
            slices = prompts.slices if layout.is_volume else None  # a stack: only the prompted slices
            embeddings = embed_image(image, sam, options, layout=layout, slices=slices, **storage)
        if layout.is_volume:  # each prompted slice on its own
            volume = _stack_embeddings(embeddings, layout)
            return segment_stack(volume, prompts, sam, multimask, batch_size)
        return segment_image(layout, prompts, sam, embeddings, multimask, batch_size)


def segment_image(
    layout: ImageLayout,
    prompts: Prompts,
    sam: Any,
    embeddings: Embeddings | TiledEmbeddings | VolumeEmbeddings,
    multimask: bool | str,
    batch_size: int,
    *,
    stacklevel: int = 2,
) -> np.ndarray:
    """:func:`segment` on a 2D image with checked prompts and its embeddings: plan the objects, decode
    them into labels.

    Parameters
    ----------
    layout
        The layout of the ``(Y, X[, C])`` image.
    prompts
        Checked flat prompts on the image (``(N, 2)`` points, ``(M, 4)`` boxes).
    sam
        The loaded model.
    embeddings
        The image's embeddings (checked here: they may be the user's).
    multimask, batch_size
        As in :func:`segment`.
    stacklevel
        Of the warnings about empty or merged objects, as :func:`warnings.warn`'s counted from the
        caller of this function (2, the default: the caller's caller, such as the user's line calling
        :func:`segment`).

    Returns
    -------
    numpy.ndarray
        ``(Y, X)`` uint32 labels, as :func:`segment` returns them.
    """
    if not isinstance(embeddings, (Embeddings, TiledEmbeddings)):
        raise TypeError(
            "embeddings for a 2D image must be Embeddings or TiledEmbeddings, got "
            f"{type(embeddings).__name__}"
        )
    shape = tuple(embeddings.original_size)
    if layout.plane_shape != shape:
        raise ValueError(f"embeddings are of an image of shape {shape}, but image has shape {layout.shape}")
    objects = plan_objects(prompts)
    labels = np.zeros(shape, dtype=np.uint32)
    if is_blank(embeddings):  # a flat image: nothing to find (NoContrastWarning said so)
        return labels
    ids = list(range(1, len(objects) + 1))
    decode_into(labels, embeddings, objects, ids, sam, multimask, batch_size, stacklevel=stacklevel + 1)
    return labels


def _segment_masks(
    image: Any,
    layout: ImageLayout,
    masks: Any,
    points: Any,
    point_labels: Any,
    point_objects: Any,
    sam: Any,
    embeddings: Any,
    embedding: dict[str, Any],
    batch_size: int,
) -> np.ndarray:
    """:func:`segment` with ``masks=``: :func:`~napari_sam.engine.refine.refine_image`."""
    from .engine.refine import RefineOptions, refine_image

    if masks is None:
        raise ValueError("point_objects applies to refining masks=: give the labels to refine")
    options = RefineOptions(batch_size=batch_size)  # checks batch_size
    prompts = normalize_prompts(points=points, point_labels=point_labels, spatial_shape=layout.spatial_shape)
    if layout.is_volume and embeddings is not None:
        embeddings = _stack_embeddings(embeddings, layout)
    storage = {"cache": embedding.pop("cache"), "overwrite": embedding.pop("overwrite")}
    result = refine_image(
        image,
        layout,
        masks,
        prompts,
        sam,
        EmbedOptions(**embedding),
        embeddings,
        storage,
        point_objects,
        options,
    )
    result.warn(stacklevel=3)
    return result.labels.astype(np.uint32)


def _stack_embeddings(embeddings: Any, layout: ImageLayout) -> VolumeEmbeddings:
    """``embeddings`` (perhaps the user's) checked to be those of the stack of ``layout``."""
    if not isinstance(embeddings, VolumeEmbeddings):
        raise TypeError(
            f"embeddings for a 3D stack must be VolumeEmbeddings, got {type(embeddings).__name__}"
        )
    if tuple(embeddings.shape) != tuple(layout.spatial_shape):
        raise ValueError(
            f"embeddings are of a stack of shape {embeddings.shape}, but image has shape {layout.shape}"
        )
    return embeddings


def _segment_automatic(
    image: Any,
    layout: ImageLayout,
    options: EmbedOptions,
    model: ModelLike,
    device: DeviceLike,
    embeddings: Any,
    link: bool,
    plan: AutomaticPlan,
) -> np.ndarray:
    """:func:`segment` without prompts: automatic segmentation as ``plan`` says (``mode="auto"``: the
    instance decoder's AIS when the model has one, else AMG with the model's preset), slice by slice,
    the objects of a stack linked across slices when ``link``."""
    from .engine.automatic.front import automatic_labels
    from .engine.preprocess import Preprocessor

    labels = automatic_labels(
        image,
        plan,
        Preprocessor.from_options(options, options.channel_axis),  # an axis of the image (or stack)
        stack=layout.is_volume,
        model=model,
        device=device,
        embeddings=embeddings if isinstance(embeddings, (Embeddings, TiledEmbeddings)) else None,
        precision=options.precision,
    )
    if layout.is_volume and link:
        from .engine.volume.linking import link_slices

        return link_slices(labels)
    return labels


def _segment_propagated(
    image: Any,
    prompts: Prompts,
    sam: Any,
    embeddings: Any,
    embedding: dict[str, Any],
    propagate_options: dict[str, Any] | None,
) -> np.ndarray:
    """:func:`segment` on a stack with ``propagate=True``: each prompted object followed through the
    stack from its slice (:func:`napari_sam.propagate`, with ``embedding`` its embedding keywords)."""
    from .engine.volume.propagate import propagate as propagate_stack

    return propagate_stack(
        image,
        prompts,  # checked once, by segment(): propagation takes the Prompts as they are
        model=sam,
        embeddings=embeddings,
        **(propagate_options or {}),
        **embedding,
    ).labels


def _model_for(embeddings: Any, model: ModelLike, device: DeviceLike, *, allow_sam2: bool = False) -> Any:
    """The model of ``embeddings``, else ``model`` loaded on ``device`` (SAM 2 with ``allow_sam2``)."""
    from .engine.loading import SAM2_NOT_YET, load_any_model

    sam = getattr(embeddings, "model", None)
    sam = sam if sam is not None else (load_any_model if allow_sam2 else load_model)(model, device)
    if is_sam2(sam) and not allow_sam2:
        raise NotImplementedError(f"{sam.name!r} {SAM2_NOT_YET}")
    return sam


def _check_decoding(multimask: Any, batch_size: Any) -> None:
    if multimask not in ("auto", True, False):
        raise ValueError(f"multimask must be 'auto', True or False, got {multimask!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


#: The options of :func:`segment` that some modes ignore, with their defaults; a mode refuses those of
#: them it ignores when they are given another value.
_MODE_OPTIONS: dict[str, Any] = {
    "multimask": "auto",
    "batch_size": 32,
    "tile": None,
    "tile_threshold": DEFAULT_TILE_THRESHOLD,
    "propagate_options": None,
}

#: What each mode ignores (the words are those :func:`segment` names the mode with).
_IGNORED: dict[str, tuple[str, ...]] = {
    "automatic segmentation (no points or boxes)": tuple(_MODE_OPTIONS),
    "a stack with propagate=True": ("multimask", "batch_size"),
    "a stack with propagate=False": ("propagate_options",),
    "a 2D image": ("propagate_options",),
    "refining masks": ("multimask", "propagate_options"),
}


def _refuse_ignored(mode: str, options: dict[str, Any]) -> None:
    """A ValueError naming the first option in ``options`` that ``mode`` ignores, when it is not at
    its default."""
    for name in _IGNORED[mode]:
        value, default = options[name], _MODE_OPTIONS[name]
        if not _is_default(value, default):
            raise ValueError(f"{name}={value!r} does not apply to {mode}; leave it out")


def _is_default(value: Any, default: Any) -> bool:
    if value is None or default is None:
        return value is default
    try:
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # an array compared element-wise
        return False


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes
    ----------
    weights
        :class:`pathlib.Path` of the trained model, ``out/model.safetensors`` (float16); pass it as
        ``model=`` anywhere.
    step
        Training steps done in total (a resumed run counts the earlier steps too).
    history
        One dict per logged step: ``step``, ``loss`` (averaged since the previous entry), ``lr``,
        ``seconds``; SAM training adds ``iou`` (IoU of the predicted masks with the labels), instance
        decoder training ``val_loss`` (the loss on the held-out pairs, when there are any). Also in
        ``out/history.json``.
    decoder
        With ``instance_decoder=True``: :class:`pathlib.Path` of ``out/model_decoder.pt``, the trained
        instance decoder alone in micro-sam's format (a bare ``decoder_state`` dict); else None.
    """

    weights: Any  # Path of the trained model (safetensors)
    step: int
    history: list[dict[str, float]]
    decoder: Any = None  # Path of the instance decoder alone (micro-sam's decoder_state), or None


def train(
    data: Any,
    model: ModelLike = "nano",
    *,
    out: Any,
    steps: int | None = None,
    batch_images: int = 4,
    objects_per_image: int = 8,
    crop_size: int = 256,
    lr: float | None = None,
    freeze_encoder: bool = False,
    instance_decoder: bool = False,
    seed: int = 0,
    device: DeviceLike = "auto",
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a model on annotated images: SAM-style interactive training, or its instance decoder.

    Parameters
    ----------
    data
        A folder of image/label pairs (``images/NAME.tif`` + ``labels/NAME.tif``, or ``NAME.tif`` +
        ``NAME_labels.tif``), or a callable ``rng → (image, labels)``.
    model
        Starting point: ``"nano"``, ``"vit_b"`` …, or a weights path. A new copy is trained; models
        already loaded elsewhere are not changed.
    out
        Output folder: ``checkpoint.pt`` (resumed when present), ``history.json``, ``model.safetensors``.
    steps
        Optimiser steps in all; None: 500 (SAM training), 800 (``instance_decoder=True``).
    batch_images
        Images per step (``instance_decoder=True``: embedding windows of that many images per step).
    objects_per_image, seed
        Objects prompted per image and step (SAM training); the random seed (crops, prompts, order;
        with ``instance_decoder=True`` also the held-out pairs and the pairs drawn from a callable).
    lr
        Peak learning rate; None: 1e-4 (SAM training, and fine-tuning an instance decoder the model
        has), 1e-3 (training a new instance decoder).
    crop_size
        Side of the training crops on the 1024 canvas (nano only; ViT models use the whole canvas).
    freeze_encoder
        Train only the prompt encoder and mask decoder.
    instance_decoder
        Train only the instance decoder (automatic segmentation, ``mode="ais"`` / ``"apg"``) on the
        frozen image encoder: the model's own decoder is fine-tuned, or a new one is trained when it has
        none (nano: ``initial_features=16``, maps at 8× the embedding; ViT: micro-sam's layout). A folder
        is read whole, a callable drawn 48 times; 1 pair in 5 is held out (none under 5 pairs, at most
        8) and picks the saved decoder (lowest validation loss). Images over 2048 px are cut into
        1024-px pieces. Writes ``model.safetensors`` (the model with that decoder) and
        ``model_decoder.pt`` (the decoder alone, micro-sam's ``decoder_state``); the embeddings are
        cached in ``out`` (``instance_*.npz``) for a resumed run. ``objects_per_image``, ``crop_size``
        and ``freeze_encoder`` do not apply (an error when set).
    device
        Where to train (``"auto"``: CUDA → MPS → CPU).
    progress
        Show a progress bar.

    Returns
    -------
    TrainResult
        ``weights`` is usable as ``model=`` everywhere.

    Raises
    ------
    TypeError, ValueError
        A bad argument, found before any model is loaded; ``out`` holds another kind of run, or (found
        once the model is loaded, before any embedding) an instance decoder run with other settings.

    Examples
    --------
    One training step on synthetic nuclei (a real run: a folder of images and labels, hundreds of
    steps, ``napari-sam train``):

    >>> import tempfile
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> def pairs(rng):  # rng → (image, labels)
    ...     return nuclei_2d((128, 128), n_objects=4, seed=int(rng.integers(1000)))
    >>> with tempfile.TemporaryDirectory() as out:
    ...     result = ns.train(pairs, "nano", out=out, steps=1, batch_images=1, objects_per_image=1,
    ...                       progress=False)
    ...     print(result.step, result.weights.name, sorted(result.history[-1]))
    1 model.safetensors ['iou', 'loss', 'lr', 'seconds', 'step']

    ``ns.segment(image, boxes=..., model=result.weights)`` then uses the fine-tuned weights; after
    ``instance_decoder=True``, ``ns.automatic(image, mode="ais", model=result.weights)`` uses the
    trained decoder.
    """
    import copy
    from pathlib import Path

    import torch

    from .engine.device import resolve_device
    from .engine.loading import open_model
    from .engine.training.data import folder_source
    from .engine.training.instance_run import (
        INSTANCE_STEPS,
        check_out_folder,
        instance_data,
        train_instance_run,
    )
    from .engine.training.train import TrainConfig, TrainRun, train_model
    from .model import Sam, save_safetensors

    # every argument is checked before any model is loaded
    _check_training(
        data,
        out,
        steps,
        batch_images,
        objects_per_image,
        lr,
        seed,
        instance_decoder,
        {"objects_per_image": objects_per_image, "crop_size": crop_size, "freeze_encoder": freeze_encoder},
    )
    folder = Path(out).expanduser()
    check_out_folder(folder, instance=instance_decoder)
    target = resolve_device(device)
    if instance_decoder:
        pairs = instance_data(data, seed)
        sam = open_model(model) if not isinstance(model, Sam) else copy.deepcopy(model).cpu()
        run = train_instance_run(
            sam,
            pairs,
            folder,
            steps=INSTANCE_STEPS if steps is None else steps,
            batch_images=batch_images,
            lr=lr,
            seed=seed,
            device=target,
            progress=progress,
        )
        return TrainResult(run.weights, run.state.step, run.state.history, decoder=run.decoder)
    source = data if callable(data) else folder_source(data)
    sam = open_model(model) if not isinstance(model, Sam) else copy.deepcopy(model).cpu()
    nano = sam.config.encoder_type == "nano"
    cfg = TrainConfig(
        steps=500 if steps is None else steps,
        batch_images=batch_images,
        objects_per_image=objects_per_image,
        crop_size=crop_size if nano else None,
        lr=1e-4 if lr is None else lr,
        freeze_encoder=freeze_encoder,
        seed=seed,
        checkpoint_every=100,
    )
    state = train_model(sam, source, cfg, TrainRun(out_dir=folder, device=target), progress=progress)
    weights = folder / "model.safetensors"
    save_safetensors(sam.cpu(), weights, config=sam.config, dtype=torch.float16)
    return TrainResult(weights=weights, step=state.step, history=state.history)


#: :func:`train`'s options of SAM training that ``instance_decoder=True`` refuses, with their defaults
_NOT_FOR_INSTANCE = {"objects_per_image": 8, "crop_size": 256, "freeze_encoder": False}


def _check_training(
    data: Any,
    out: Any,
    steps: Any,
    batch_images: Any,
    objects_per_image: Any,
    lr: Any,
    seed: Any,
    instance_decoder: Any,
    sam_options: dict[str, Any],
) -> None:
    """:func:`train`'s checks of its arguments, before any model is loaded: TypeError / ValueError
    naming the argument."""
    import os

    from .engine.types import check_int

    if not callable(data) and not isinstance(data, (str, os.PathLike)):
        raise TypeError(
            f"data must be a folder of image/label pairs or a callable rng -> (image, labels), got "
            f"{type(data).__name__}"
        )
    if not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out must be a folder path (str or os.PathLike), got {type(out).__name__}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out must be a folder, but {os.fspath(out)!r} is a file")
    if not isinstance(instance_decoder, bool):
        raise TypeError(f"instance_decoder must be True or False, got {instance_decoder!r}")
    if steps is not None:  # None: the default of the kind of training
        check_int(steps, "steps", 1 if instance_decoder else 0)
    for name, value, low in (("batch_images", batch_images, 1), ("objects_per_image", objects_per_image, 1)):
        check_int(value, name, low)
    check_int(seed, "seed", 0)
    if lr is not None and (
        isinstance(lr, bool)
        or not isinstance(lr, (int, float, np.integer, np.floating))
        or not (np.isfinite(lr) and lr > 0)
    ):
        raise ValueError(f"lr must be a positive finite number (or None: the default), got {lr!r}")
    if instance_decoder:
        unused = [f"{k}={v!r}" for k, v in sam_options.items() if not _is_default(v, _NOT_FOR_INSTANCE[k])]
        if unused:
            raise ValueError(
                f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to "
                "instance_decoder=True (only the instance decoder trains, on the frozen encoder's "
                f"embeddings); leave {'it' if len(unused) == 1 else 'them'} out"
            )
