"""3D propagation: objects annotated on some slices of a stack are followed up and down through it.

From each object's seed slices, a *chain* walks slice by slice; every step prompts the decoder with
the object's result on the previous slice (box, interior points and/or the low-resolution mask
logits, see :class:`PropagationOptions`) and stops on its own when
the prediction looks wrong (low predicted IoU, vanishing mask, jumps in area or centroid) or when
the slice range ends. Between two seed slices of one object, a chain from each end fills its half
(each slice is prompted from the nearer annotation); if the lower one stops early, the upper one may
go on down to where it stopped.

Work is organised in rounds: each round takes every object one slice further from its seeds, so the
slices nearest to a seed are claimed first (a nucleus lying below another under the same footprint
does not walk up into it before the upper one has taken its own slices). In a round, every object
stepping onto a slice is decoded in one batched decoder call, and the slice's embeddings are only
then fetched — computed on first use through :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings`
(and its cache), so a short propagation in a long stack embeds only the slices it visits.

Labels already in the volume are never overwritten: a propagated mask only fills pixels that are
background (or already that object's).

The parts: :mod:`.inputs` checks the arguments and makes the seed labels, :mod:`.seeds` decodes
seeds given as prompts, :mod:`.chains` walks the chains (:mod:`.steps`: one step's prompts and
stop rules), :mod:`.result` holds what comes back.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..decode.objects import warn_empty_objects
from ..device import DeviceLike
from ..embed.embeddings import VolumeEmbeddings
from ..embed.layout import layout_warnings_once
from ..loading import ModelLike
from ..steps import run_steps
from ..types import PropagationOptions
from .chains import Planes, Walk, make_chains, walk
from .inputs import open_volume, seeds_from_labels, slice_range
from .result import STOP_REASONS, PropagationResult, Stop
from .seeds import prompt_arguments, seed_labels, seeds_from_prompts, stack_prompts

if TYPE_CHECKING:
    from .memory_propagation import MemoryPropagationResult

__all__ = [
    "STOP_REASONS",
    "PropagationOptions",
    "PropagationResult",
    "Stop",
    "iter_propagate",
    "propagate",
    "seed_labels",
]


def iter_propagate(
    volume: Any,
    labels_or_prompts: Any = None,
    *,
    z: int | None = None,
    seed_slices: Sequence[int] | None = None,
    objects: Sequence[int] | None = None,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    z_range: tuple[int, int] | None = None,
    options: PropagationOptions | None = None,
    image: Any = None,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: VolumeEmbeddings | None = None,
    **embedding_options: Any,
) -> Generator[tuple[int, int], None, PropagationResult]:
    """:func:`propagate` as a generator: yields ``(done, total)`` slice steps, returns the result.

    Made for napari's ``thread_worker`` (and run by :func:`propagate` through
    :func:`~napari_sam.engine.steps.run_steps`); closing the generator stops between two slices.
    Arguments as :func:`propagate`, except that how slices are prompted and when objects stop come
    as one ``options`` object (default: ``PropagationOptions()``). Prompted objects that got no
    pixels are listed in the result's ``empty_objects`` (no warning is emitted here:
    :func:`propagate` emits it).
    """
    opts = PropagationOptions() if options is None else options
    if not isinstance(opts, PropagationOptions):
        raise TypeError(f"options must be a PropagationOptions, got {type(opts).__name__}")
    given = prompt_arguments(labels_or_prompts, points, point_labels, boxes)
    emb, sam = open_volume(volume, embeddings, model, device, embedding_options)
    shape = (int(emb.shape[0]), int(emb.shape[1]), int(emb.shape[2]))
    lo, hi = slice_range(z_range, shape[0])
    empty: dict[int, int] = {}
    if given is not None:
        if z is not None or seed_slices is not None or objects is not None:
            raise ValueError("z=, seed_slices= and objects= apply to seed labels, not to prompts")
        labels, seeds, empty = seeds_from_prompts(emb, sam, stack_prompts(given, shape))
    elif labels_or_prompts is None:
        raise ValueError("propagate needs seed labels or prompts (points= / boxes= with z)")
    else:
        labels, seeds = seeds_from_labels(
            labels_or_prompts, shape, z=z, seed_slices=seed_slices, objects=objects, z_range=(lo, hi)
        )
    if image is None and not isinstance(volume, VolumeEmbeddings):
        image = volume
    planes = _image_planes(image, embedding_options, shape)
    chains = make_chains(labels, seeds, lo, hi)
    calls = yield from walk(chains, Walk(emb, sam, labels, opts, planes))
    stops = [Stop(c.label, c.direction, c.z + c.step, c.reason or "range") for c in chains]
    return PropagationResult(
        labels=labels, seeds=seeds, stops=stops, decoder_calls=calls, empty_objects=empty
    )


def _image_planes(image: Any, embedding_options: dict[str, Any], shape: tuple[int, int, int]) -> Planes:
    """The image's slices for the contrast and intensity rules (None: no image, rules off)."""
    planes = Planes(image, embedding_options.get("channel_axis"), embedding_options.get("channel"))
    if planes.layout is not None and tuple(planes.layout.spatial_shape) != shape:
        raise ValueError(
            f"image has spatial shape {tuple(planes.layout.spatial_shape)}, the embeddings {shape}"
        )
    return planes


def propagate(
    volume: Any,
    labels_or_prompts: Any = None,
    *,
    z: int | None = None,
    seed_slices: Sequence[int] | None = None,
    objects: Sequence[int] | None = None,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    z_range: tuple[int, int] | None = None,
    axis: int = 0,
    prompt: str | Sequence[str] = ("box", "mask"),
    n_points: int = 1,
    box_margin: float = 0.0,
    multimask: bool = False,
    iou_threshold: float = 0.5,
    min_area: int = 4,
    max_area_change: float = 3.0,
    max_centroid_shift: float = 0.5,
    min_contrast: float = 0.5,
    min_intensity: float = 0.5,
    clip_to_box: bool = False,
    connected: bool = True,
    image: Any = None,
    model: ModelLike = "nano",
    device: DeviceLike = "auto",
    embeddings: VolumeEmbeddings | None = None,
    progress: Callable[[int, int], Any] | None = None,
    cancel: threading.Event | None = None,
    **embedding_options: Any,
) -> PropagationResult | MemoryPropagationResult:
    """Propagate objects annotated on some slices of a stack through the stack.

    With a SAM 2 model (``model="sam2.1_hiera_tiny"`` …, a SAM 2 file or a loaded one), objects are
    followed with its memory of earlier frames instead
    (:func:`~napari_sam.engine.volume.memory_propagation.propagate_memory`: a
    :class:`~napari_sam.engine.volume.memory_propagation.MemoryPropagationResult`); the options of the
    SAM 1 walk (``prompt``, the stop rules, ``z``, ``objects``, ``image``) are then refused.

    Parameters
    ----------
    volume
        ``(Z, Y, X[, C])`` stack (numpy, dask or zarr; any dtype), or its
        :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings`. Slices are embedded when first
        visited (through ``cache=`` when given). With a SAM 2 model also a 4D stack
        ``(A0, A1, Y, X[, C])``, followed along ``axis``.
    labels_or_prompts
        The seeds, one of:

        - ``(Z, Y, X)`` integer labels: every object is seeded on each slice that holds it (or on
          ``seed_slices``); all other labels are kept and never overwritten;
        - ``(Y, X)`` labels of one slice, with ``z=`` that slice;
        - a mapping ``{"points": (N, 3), "point_labels": (N,), "boxes": (M, 6)}`` of prompts with z,
          read as :func:`napari_sam.segment` reads them (object ``k`` gets label ``k + 1``); the same
          may be given as ``points=`` / ``point_labels=`` / ``boxes=``, or already checked, as the
          :class:`~napari_sam.engine.types.Prompts` of
          :func:`~napari_sam.engine.decode.prompts.normalize_prompts` for the stack.
    z
        The slice of a ``(Y, X)`` labels slice.
    seed_slices
        With a labels volume: only these slices seed objects.
    objects
        Labels of the objects to propagate (default: every object on the seed slices).
    z_range
        ``(start, stop)`` half-open slices to propagate within (default: the whole stack).
    axis
        SAM 2 models only: the axis objects are followed along, 0 or 1 for a 4D stack (its other
        leading axis indexes planes tracked on their own; prompts ``(N, 4)`` / ``(M, 8)``); see
        :func:`~napari_sam.engine.volume.memory_propagation.propagate_memory`. SAM 1 propagation
        follows a stack's first axis only (``axis=0``).
    prompt
        What each step gives the decoder from the previous slice's result: any of ``"box"``,
        ``"points"``, ``"mask"`` (see :class:`PropagationOptions`).
    n_points, box_margin, multimask
        Prompt details (see :class:`PropagationOptions`).
    iou_threshold, min_area, max_area_change, max_centroid_shift
        Stop rules, checked for every object on every slice (see :class:`PropagationOptions`).
    min_contrast
        Stop an object when its image contrast falls below this fraction of its best so far (objects
        stay visible a few slices beyond their end through out-of-focus light); 0 = off. Measured on
        ``volume`` when it is an image, else on ``image`` when given, else off.
    min_intensity
        Trim from each propagated mask the pixels less than this fraction of the way from the
        object's surroundings to the object itself (both measured on its seed slice), so that the
        blurred, larger halo near an object's end is not taken for it; bright and dark objects alike,
        objects without contrast to their surroundings untrimmed; in [0, 1), 0 = off. Needs the
        image, as ``min_contrast`` does.
    clip_to_box
        Drop the parts of a prediction outside its box prompt (see :class:`PropagationOptions`).
    connected
        Drop the parts of a prediction that do not touch the object's previous slice.
    image
        The stack, when ``volume`` is its embeddings: used by ``min_contrast`` and ``min_intensity``.
    model, device
        Used when ``volume`` is an image (or embeddings opened without a model).
    embeddings
        Precomputed :class:`VolumeEmbeddings` of ``volume``.
    progress
        Called as ``progress(done, total)`` after each batch of slices; ``done`` counts rounds (one
        slice further from every seed), ``total`` the longest walk possible.
    cancel
        A :class:`threading.Event`; when set, raises
        :class:`~napari_sam.engine.embed.embeddings.Cancelled` before the next slice.
    **embedding_options
        Passed to :func:`napari_sam.compute_embeddings` (``cache``, ``normalize``, ``channel_axis`` …);
        with a SAM 2 model also ``propagate_memory``'s own options (``t_range``,
        ``stop_after_absent``, ``corrections``, ``memory_dtype``, ``precision``, ``cache_dtype``).

    Returns
    -------
    PropagationResult
        ``labels`` ``(Z, Y, X)`` uint32 (a new array; the input is not changed; seed labels above
        uint32's range come back in the seeds' own dtype, values kept), the seeds, where and why each
        object stopped, and the prompted objects that got no pixels (``empty_objects``).

    Warns
    -----
    EmptyObjectsWarning
        Once, naming the prompted objects that got no pixels on their slice and those slices (no
        mask inside the box, or one entirely covered by other objects, as with a duplicated box).
        Every other object is segmented and propagated all the same.

    Raises
    ------
    ValueError
        A 2D image, labels of the wrong shape, negative labels, a seed slice outside the stack or
        ``z_range``, an ``objects=`` label absent from its seed slices, no seed labels at all, or an
        invalid option.

    Examples
    --------
    Objects painted on one slice (here the true labels of slice 1) are followed up and down the
    stack. ``propagate(stack, ...)`` embeds the slices it visits; here they are embedded once and
    shared by two calls (``image=`` keeps the contrast stop rule):

    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_3d
    >>> stack, truth = nuclei_3d((3, 96, 96), n_objects=2, seed=1)
    >>> vol = ns.compute_embeddings(stack)
    >>> result = ns.propagate(vol, truth[1], z=1, image=stack)
    >>> result.labels.shape, result.labels.dtype, sorted(result.seeds)
    ((3, 96, 96), dtype('uint32'), [1, 2])

    From one box drawn on slice 1 (``max_z = 1 + 1``, as :func:`napari_sam.segment` reads boxes):

    >>> from skimage.measure import regionprops
    >>> r0, c0, r1, c1 = regionprops(truth[1])[0].bbox
    >>> result = ns.propagate(vol, boxes=[[1, r0, c0, 2, r1, c1]], image=stack)
    >>> result.seeds
    {1: [1]}
    """
    with layout_warnings_once():  # one LayoutWarning per call, however often the layout is read
        if cancel is not None and not callable(getattr(cancel, "is_set", None)):
            raise TypeError(f"cancel must be a threading.Event (or have is_set()), got {cancel!r}")
        sam2 = None if embeddings is not None else _sam2_of(model, device)
        if sam2 is not None:  # SAM 2: memory propagation (its own frame store; SAM 1 options refused)
            return _propagate_with_memory(
                sam2, volume, labels_or_prompts, locals(), progress, cancel, embedding_options
            )
        if isinstance(axis, bool) or axis != 0:
            raise ValueError(
                f"axis={axis!r}: SAM 1 propagation follows a stack's first axis only (axis=0); following "
                "an axis of a 4D stack (A0, A1, Y, X) takes a SAM 2 model (model='sam2.1_hiera_tiny' …)"
            )
        options = PropagationOptions(
            prompt=prompt,
            n_points=n_points,
            box_margin=box_margin,
            multimask=multimask,
            iou_threshold=iou_threshold,
            min_area=min_area,
            max_area_change=max_area_change,
            max_centroid_shift=max_centroid_shift,
            min_contrast=min_contrast,
            min_intensity=min_intensity,
            clip_to_box=clip_to_box,
            connected=connected,
        )
        steps = iter_propagate(
            volume,
            labels_or_prompts,
            z=z,
            seed_slices=seed_slices,
            objects=objects,
            points=points,
            point_labels=point_labels,
            boxes=boxes,
            z_range=z_range,
            options=options,
            image=image,
            model=model,
            device=device,
            embeddings=embeddings,
            **embedding_options,
        )
        result = run_steps(steps, progress=progress, cancel=cancel, what="propagation", unit="slice")
        warn_empty_objects(result.empty_objects)
        return result


#: options of the SAM 1 walk that a SAM 2 model does not take (refused unless at their defaults,
#: which are read from :func:`propagate`'s signature)
_SAM1_ONLY = (
    "z",
    "objects",
    "prompt",
    "n_points",
    "box_margin",
    "multimask",
    "iou_threshold",
    "min_area",
    "max_area_change",
    "max_centroid_shift",
    "min_contrast",
    "min_intensity",
    "clip_to_box",
    "connected",
    "image",
)


def _differs(value: Any, default: Any) -> bool:
    """Whether an option differs from its default (a list of the default tuple's items does not; any
    value but None differs from a default of None, arrays included)."""
    if default is None:
        return value is not None
    if isinstance(default, tuple) and isinstance(value, (list, tuple)):
        return tuple(value) != default
    return bool(value != default)


def _sam2_of(model: Any, device: DeviceLike) -> Any:
    """The SAM 2 model ``model`` names or is (loaded on ``device``), or None for a SAM 1 model."""
    from ..loading import is_sam2, load_any_model

    if is_sam2(model):
        return load_any_model(model, device)
    if isinstance(model, (str, Path)) and Path(str(model)).expanduser().is_file():
        loaded = load_any_model(model, device)  # kept in memory: the SAM 1 path reuses it
        return loaded if is_sam2(loaded) else None
    return None


def _propagate_with_memory(
    sam2: Any,
    volume: Any,
    labels_or_prompts: Any,
    given: dict[str, Any],
    progress: Any,
    cancel: Any,
    embedding_options: dict[str, Any],
) -> Any:
    """:func:`propagate` with a SAM 2 model (see :mod:`~napari_sam.engine.volume.memory_propagation`)."""
    from .memory_propagation import propagate_memory

    defaults = inspect.signature(propagate).parameters
    refused = sorted(k for k in _SAM1_ONLY if _differs(given[k], defaults[k].default))
    if refused:
        raise ValueError(
            f"{', '.join(refused)}: options of SAM 1 propagation, not taken with a SAM 2 model (it follows "
            "objects with its memory of earlier frames)"
        )
    return propagate_memory(
        volume,
        labels_or_prompts,
        points=given["points"],
        point_labels=given["point_labels"],
        boxes=given["boxes"],
        seed_slices=given["seed_slices"],
        z_range=given["z_range"],
        axis=given["axis"],
        model=sam2,
        progress=progress,
        cancel=cancel,
        **embedding_options,
    )
