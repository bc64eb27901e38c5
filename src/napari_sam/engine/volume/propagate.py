"""3D propagation: objects annotated on some slices of a stack are followed up and down through it.

From each object's seed slices, a *chain* walks slice by slice; every step prompts the decoder with
the object's result on the previous slice (box, interior points and/or the low-resolution mask
logits, see :class:`~napari_sam.engine.volume.steps.PropagateOptions`) and stops on its own when
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
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..decode.objects import empty_objects, segment_stack, warn_empty_objects
from ..device import DeviceLike
from ..embed.embeddings import VolumeEmbeddings, compute_embeddings, image_layout, layout_warnings_once
from ..loading import ModelLike, load_model
from ..steps import run_steps
from .steps import (
    STOP_REASONS,
    MaskSummary,
    PropagateOptions,
    SeedIntensity,
    contrast,
    overlapping_parts,
    seed_intensity,
    step_prompts,
    stop_reason,
    summarize,
    trim_dim,
)

__all__ = [
    "STOP_REASONS",
    "PropagateOptions",
    "PropagationResult",
    "Stop",
    "iter_propagate",
    "propagate",
    "seed_labels",
]


@dataclass(frozen=True)
class Stop:
    """Where and why one object's chain ended.

    Attributes
    ----------
    label
        The object.
    direction
        ``"up"`` (increasing z) or ``"down"``.
    z
        The first slice the chain did not fill (may be outside the stack when it ran off its end).
    reason
        A key of :data:`STOP_REASONS`.
    """

    label: int
    direction: str
    z: int
    reason: str


@dataclass(frozen=True)
class PropagationResult:
    """What :func:`propagate` produced.

    Attributes
    ----------
    labels
        ``(Z, Y, X)`` uint32: the input labels with every propagated object added (seed IDs kept).
        Seed labels above uint32's range (2**32 - 1) keep their values: the labels then come back
        in the seeds' own dtype (uint64 or int64).
    seeds
        ``{label: [seed slices]}`` of the propagated objects.
    stops
        One :class:`Stop` per chain.
    decoder_calls
        Batched decoder calls made (one per slice visited in each round).
    empty_objects
        ``{label: prompted slice}`` of the objects given as prompts that got no pixels on their
        slice (no mask inside their box, or one entirely covered by other objects — a duplicated
        prompt, for one); they are not propagated and not in ``labels``. Always empty for seeds
        given as labels.

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_3d
    >>> stack, truth = nuclei_3d((3, 96, 96), n_objects=2, seed=1)
    >>> result = ns.propagate(stack, truth[1], z=1)
    >>> result.seeds
    {1: [1], 2: [1]}
    >>> first, stop = result.extent(1)  # slices first .. stop - 1 hold object 1
    >>> 0 <= first <= 1 < stop <= 3
    True
    >>> sorted({s.direction for s in result.stops})
    ['down', 'up']
    """

    labels: np.ndarray
    seeds: dict[int, list[int]]
    stops: list[Stop] = field(default_factory=list)
    decoder_calls: int = 0
    empty_objects: dict[int, int] = field(default_factory=dict)

    def extent(self, label: int) -> tuple[int, int]:
        """``(first, last + 1)`` slices holding ``label`` in :attr:`labels`."""
        zs = np.flatnonzero((self.labels == label).any(axis=(1, 2)))
        if zs.size == 0:
            raise KeyError(f"label {label} is not in the result")
        return int(zs[0]), int(zs[-1]) + 1


@dataclass
class _Chain:
    """One object walking in one direction."""

    label: int
    step: int  # +1 up, -1 down
    z: int  # last slice filled (a seed at first)
    limit: int  # first slice it may not fill
    mask: np.ndarray  # (Y, X) bool, the object on slice z
    summary: MaskSummary
    logits: np.ndarray | None = None  # low-res logits that produced mask (None: a seed)
    reason: str | None = None
    best_contrast: float | None = None  # highest image contrast of the object so far
    seed_intensity: SeedIntensity | None = None  # for min_intensity (None: not measured / no basis)
    started: bool = False  # has taken a step (seed measurements done)
    partner: _Chain | None = None  # the chain filling the other half of a gap (down chains only)

    @property
    def active(self) -> bool:
        return self.reason is None

    @property
    def direction(self) -> str:
        return "up" if self.step > 0 else "down"


# ------------------------------------------------------------------------------------------------ inputs


def _as_volume(volume: Any, embeddings: Any, model: ModelLike, device: DeviceLike, options: dict) -> Any:
    """``(VolumeEmbeddings, model)`` for a stack or its embeddings; clear errors for 2D input."""
    if isinstance(volume, VolumeEmbeddings):
        if embeddings is not None and embeddings is not volume:
            raise ValueError("pass the embeddings once: as the first argument or as embeddings=")
        embeddings = volume
    elif embeddings is None:
        if volume is None:
            raise ValueError(
                "propagate needs a 3D stack (Z, Y, X[, C]) or its VolumeEmbeddings as volume, got None"
            )
        if hasattr(volume, "features") or hasattr(volume, "tiles"):
            raise ValueError(
                "propagate needs a 3D stack (Z, Y, X[, C]) or its VolumeEmbeddings; got the embeddings "
                "of a 2D image"
            )
        layout = image_layout(volume, options.get("channel_axis"), channel=options.get("channel"))
        if not layout.is_volume:
            raise ValueError(
                "propagate needs a 3D stack (Z, Y, X[, C]); got a 2D image of shape "
                f"{tuple(np.shape(volume))} (use segment() or predict() for 2D images)"
            )
        sam = load_model(model, device)
        embeddings = compute_embeddings(volume, sam, slices=[], **options)
    if not isinstance(embeddings, VolumeEmbeddings):
        raise TypeError(
            f"embeddings must be the VolumeEmbeddings of a stack, got {type(embeddings).__name__}"
        )
    if volume is not embeddings and hasattr(volume, "shape"):
        layout = image_layout(volume, options.get("channel_axis"), channel=options.get("channel"))
        if tuple(layout.spatial_shape) != tuple(embeddings.shape):
            raise ValueError(
                f"embeddings are of a stack of shape {embeddings.shape}, but the volume has spatial shape "
                f"{tuple(layout.spatial_shape)}"
            )
    sam = embeddings.model if embeddings.model is not None else load_model(model, device)
    return embeddings, sam


def _slice_number(value: Any, n: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a slice number (an integer), got {value!r}")
    if not 0 <= int(value) < n:
        raise ValueError(f"{name}={int(value)} is out of range for a stack of {n} slices (0 … {n - 1})")
    return int(value)


def _as_range(z_range: Any, n: int) -> tuple[int, int]:
    if z_range is None:
        return 0, n
    try:
        lo, hi = (int(v) for v in z_range)
        ok = all(float(v) == int(v) for v in z_range)
    except (TypeError, ValueError):
        ok = False
    if not ok or not 0 <= lo < hi <= n:
        raise ValueError(
            f"z_range must be (start, stop) slice numbers with 0 <= start < stop <= {n}, half-open; got "
            f"{z_range!r}"
        )
    return lo, hi


def _output_dtype(labels: np.ndarray) -> np.dtype:
    """uint32, or the seeds' own integer dtype when their labels exceed uint32's range.

    Raises ValueError for negative labels (naming a few of them).
    """
    if labels.size == 0:
        return np.dtype(np.uint32)
    if labels.min() < 0:
        negative = np.unique(labels[labels < 0]).tolist()
        more = " …" if len(negative) > 5 else ""
        raise ValueError(
            f"labels must be object IDs >= 0 (0 is background); got negative label(s) {negative[:5]}{more}"
        )
    if int(labels.max()) > np.iinfo(np.uint32).max:
        return labels.dtype  # uint64 / int64: keep the user's IDs, never wrap them into uint32
    return np.dtype(np.uint32)


def _labels_volume(labels: Any, shape: tuple[int, int, int], z: Any) -> tuple[np.ndarray, list[int] | None]:
    """``(Z, Y, X)`` copy of the seed labels, and the seed slices implied by a 2D slice + ``z``.

    The copy is uint32, or the seeds' own dtype when their labels exceed uint32's range.
    """
    arr = np.asarray(labels)
    if arr.dtype == bool:
        arr = arr.astype(np.uint32)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"labels must be an integer (or bool) array, got dtype {arr.dtype}")
    dtype = _output_dtype(arr)
    if arr.ndim == 2:
        if z is None:
            raise ValueError("labels of one slice (Y, X) need z= (the slice they were drawn on)")
        if arr.shape != shape[1:]:
            raise ValueError(
                f"labels of one slice must have the slices' shape (Y, X) = {shape[1:]}, got {arr.shape}"
            )
        z = _slice_number(z, shape[0], "z")
        out = np.zeros(shape, dtype=dtype)
        out[z] = arr
        return out, [z]
    if arr.ndim != 3 or arr.shape != shape:
        raise ValueError(
            f"labels must have the stack's shape (Z, Y, X) = {shape}, or (Y, X) = {shape[1:]} with z=; "
            f"got shape {arr.shape}"
        )
    if z is not None:
        raise ValueError("z= only applies to labels of one slice; use seed_slices= for a labels volume")
    return arr.astype(dtype, copy=True), None


def _seed_map(
    labels: np.ndarray, seed_slices: list[int] | None, objects: Sequence[int] | None
) -> dict[int, list[int]]:
    """``{label: sorted seed slices}`` for the objects to propagate."""
    n = labels.shape[0]
    slices = range(n) if seed_slices is None else seed_slices
    present: dict[int, list[int]] = {}
    for z in slices:
        for lab in np.unique(labels[z]):
            if lab:
                present.setdefault(int(lab), []).append(int(z))
    if objects is None:
        if not present:
            where = "the labels" if seed_slices is None else f"seed slice(s) {list(slices)}"
            raise ValueError(f"no objects to propagate: {where} hold no labels")
        return {lab: sorted(zs) for lab, zs in sorted(present.items())}
    wanted = np.asarray(objects).reshape(-1)
    if wanted.size == 0 or not np.issubdtype(wanted.dtype, np.integer) or wanted.min() < 1:
        raise ValueError(f"objects must be a non-empty list of labels >= 1, got {objects!r}")
    seeds = {}
    for lab in sorted({int(v) for v in wanted}):
        if lab not in present:
            where = "the labels volume" if seed_slices is None else f"its seed slice(s) {list(slices)}"
            raise ValueError(f"object {lab} is empty on {where}; nothing to propagate it from")
        seeds[lab] = sorted(present[lab])
    return seeds


def seed_labels(
    embeddings: VolumeEmbeddings,
    *,
    points: Any = None,
    point_labels: Any = None,
    boxes: Any = None,
    model: Any = None,
    clip_to_boxes: bool = True,
    report_empty: bool = True,
) -> np.ndarray:
    """Decode prompts with z on their own slices: the seeds that :func:`propagate` starts from.

    Objects are numbered as :func:`napari_sam.segment` numbers them (boxes first, then free
    foreground points). A box says the object lies inside it: with ``clip_to_boxes`` the pixels
    of a box's mask outside the box are dropped (the decoder sometimes spills onto neighbours).

    Parameters
    ----------
    embeddings
        The stack's :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings` (prompted slices are
        embedded on first use).
    points, point_labels, boxes
        ``(N, 3)`` ``(z, row, col)``, ``(N,)``, ``(M, 6)`` ``(min_z, min_row, min_col, max_z, max_row,
        max_col)`` with ``max_z = min_z + 1``.
    model
        The model to decode with (default: the embeddings' own).
    clip_to_boxes
        Drop the pixels of a box's mask outside the box.
    report_empty
        Emit one :class:`~napari_sam.errors.EmptyObjectsWarning` naming the objects left without
        pixels (after clipping) and their slices.

    Returns
    -------
    numpy.ndarray
        ``(Z, Y, X)`` uint32, objects on their prompted slices only; objects without pixels are
        absent (the others are all there).
    """
    placeholder = np.broadcast_to(np.zeros((), dtype=np.uint8), embeddings.shape)
    seeds = segment_stack(
        placeholder,
        image_layout(placeholder, None),
        points,
        point_labels,
        boxes,
        embeddings.model if model is None else load_model(model),
        embeddings,
        multimask="auto",
        batch_size=32,
        embed_options={},
        report_empty=False,
    )
    if clip_to_boxes and boxes is not None:
        for label, box in enumerate(np.asarray(boxes, dtype=float).reshape(-1, 6), start=1):
            z = round(float(box[0]))
            r0, c0 = (max(0, int(np.floor(v))) for v in box[1:3])
            r1, c1 = (int(np.ceil(v)) for v in box[4:6])
            plane = seeds[z]
            inside = np.zeros(plane.shape, dtype=bool)
            inside[r0:r1, c0:c1] = True
            plane[(plane == label) & ~inside] = 0
    if report_empty:
        warn_empty_objects(empty_objects(seeds, _prompt_slices(points, point_labels, boxes)))
    return seeds


def _seeds_from_prompts(
    emb: VolumeEmbeddings, sam: Any, points: Any, point_labels: Any, boxes: Any
) -> tuple[np.ndarray, dict[int, list[int]], dict[int, int]]:
    """Seed labels from prompts, ``{label: [its slice]}`` of the objects that got pixels, and
    ``{label: its slice}`` of those that got none (left out; the others go on)."""
    seeds = seed_labels(
        emb, points=points, point_labels=point_labels, boxes=boxes, model=sam, report_empty=False
    )
    expected = _prompt_slices(points, point_labels, boxes)
    empty = {lab: int(z) for lab, z in empty_objects(seeds, expected).items() if z is not None}
    found = {lab: [z] for lab, z in expected.items() if lab not in empty}
    return seeds, found, empty


def _prompt_slices(points: Any, point_labels: Any, boxes: Any) -> dict[int, int]:
    """``{label: slice}`` of the objects :func:`napari_sam.segment` makes from (already checked) prompts."""
    bxs = np.zeros((0, 6)) if boxes is None else np.asarray(boxes, dtype=float).reshape(-1, 6)
    pts = np.zeros((0, 3)) if points is None else np.asarray(points, dtype=float).reshape(-1, 3)
    labs = np.ones(len(pts), dtype=int) if point_labels is None else np.asarray(point_labels).reshape(-1)
    out = {i + 1: round(float(b[0])) for i, b in enumerate(bxs)}
    for p, lab in zip(pts, labs, strict=True):
        on = np.round(bxs[:, 0]) == round(p[0])
        inside = (
            (bxs[on, 1] <= p[1]) & (p[1] < bxs[on, 4]) & (bxs[on, 2] <= p[2]) & (p[2] < bxs[on, 5])
        ).any()
        if lab == 1 and not inside:
            out[len(out) + 1] = round(float(p[0]))
    return out


# ------------------------------------------------------------------------------------------------ chains


def _make_chains(
    labels: np.ndarray, seeds: dict[int, list[int]], lo: int, hi: int
) -> tuple[list[_Chain], list[_Chain]]:
    """Up and down chains for every object: outwards from its extreme seeds, and both ways across gaps."""
    ups: list[_Chain] = []
    downs: list[_Chain] = []
    for lab, zs in seeds.items():
        inside = [z for z in zs if lo <= z < hi]
        if not inside:
            continue

        def chain(z: int, step: int, limit: int, lab: int = lab) -> _Chain:
            mask = labels[z] == lab
            summary = summarize(mask)
            assert summary is not None  # seeds hold the object by construction
            return _Chain(lab, step, z, limit, mask, summary)

        downs.append(chain(inside[0], -1, lo - 1))
        ups.append(chain(inside[-1], +1, hi))
        for a, b in itertools.pairwise(inside):
            if b - a < 2:
                continue
            middle = (a + b) // 2
            up = chain(a, +1, middle + 1)
            down = chain(b, -1, middle)
            down.partner = up
            ups.append(up)
            downs.append(down)
    return ups, downs


def _reach(chain: _Chain) -> int:
    """Most slices ``chain`` may fill (a gap's upper half: the whole gap, if the lower half stops at once)."""
    if chain.partner is not None:
        return chain.z - chain.partner.z - 1
    return (chain.limit - chain.z) * chain.step - 1


def _next_slice(chain: _Chain) -> int | None:
    """The slice ``chain`` steps onto in this round; None when it has ended (marked) or waits.

    A gap's upper half (down chain) fills down to the middle, and further down to where the lower
    half ended when that one stopped early; it waits at the middle while the lower half still runs.
    """
    if not chain.active:
        return None
    target = chain.z + chain.step
    limit = chain.limit
    if chain.partner is not None:
        if chain.partner.active:
            return None if target <= limit else target
        limit = chain.partner.z
    if (target - limit) * chain.step >= 0:
        chain.reason = "range"
        return None
    return target


def _mask_prompt_fn(sam: Any, slice_emb: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Binary mask → mask-prompt logits, resized as the slice ``slice_emb`` (:class:`Embeddings`) was."""
    from ..preprocess import mask_to_prompt_logits

    size = sam.prompt_encoder.mask_input_size
    input_size = tuple(slice_emb.input_size)

    def convert(mask: np.ndarray) -> np.ndarray:
        logits = mask_to_prompt_logits(
            mask, image_size=slice_emb.image_size, mask_input_size=size, input_size=input_size
        )
        return logits[0, 0].numpy()

    return convert


class _Planes:
    """Gray ``(Y, X)`` float32 slices of the image for the contrast rule (None without an image)."""

    def __init__(self, image: Any, channel_axis: int | None, channel: Any = None) -> None:
        self.image = image
        self.layout = None if image is None else image_layout(image, channel_axis, channel=channel)
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, z: int) -> np.ndarray | None:
        if self.image is None or self.layout is None:
            return None
        if z not in self.cache:
            from ..embed.embeddings import read_slice
            from ..preprocess import as_channels_last_2d

            raw = as_channels_last_2d(
                read_slice(self.image, self.layout, z), channel_axis=self.layout.slice_channel_axis
            )
            self.cache = {z: np.asarray(raw, dtype=np.float32).mean(axis=-1)}  # keep one slice
        return self.cache[z]


def _step_slice(
    z: int,
    chains: list[_Chain],
    emb: VolumeEmbeddings,
    sam: Any,
    labels: np.ndarray,
    opts: PropagateOptions,
    planes: _Planes,
) -> None:
    """Decode every chain stepping onto slice ``z`` in one call, check it, paint what passes."""
    from ..decode.predict import predict
    from ..types import TiledEmbeddings

    for c in chains:
        if not c.started and planes.image is not None:  # measure the seed before the first step
            if opts.min_contrast > 0:
                c.best_contrast = contrast(planes(c.z), c.mask)
            if opts.min_intensity > 0:
                c.seed_intensity = seed_intensity(planes(c.z), c.mask)
        c.started = True

    slice_emb = emb[z]
    tiled = isinstance(slice_emb, TiledEmbeddings)
    kwargs = step_prompts(
        [c.mask for c in chains],
        [c.logits for c in chains],
        opts,
        tiled=tiled,
        mask_prompt=None if tiled else _mask_prompt_fn(sam, slice_emb),
    )
    pred = predict(slice_emb, multimask=opts.multimask, best_only=True, model=sam, **kwargs)
    masks, scores = pred.masks[:, 0], pred.iou_scores[:, 0]
    plane = labels[z]
    for i in np.argsort(-scores, kind="stable"):
        c = chains[i]
        kept = masks[i] & ((plane == 0) | (plane == c.label))
        if opts.min_intensity > 0 and c.seed_intensity is not None:
            kept = trim_dim(kept, planes(z), c.seed_intensity, opts.min_intensity)  # type: ignore[arg-type]
        if "box" in kwargs and opts.clip_to_box:
            r0, c0, r1, c1 = kwargs["box"][i]
            inside = np.zeros_like(kept)
            inside[int(np.floor(r0)) : int(np.ceil(r1)), int(np.floor(c0)) : int(np.ceil(c1))] = True
            kept &= inside
        if opts.connected:
            kept = overlapping_parts(kept, c.mask)
        current = summarize(kept)
        ratio = None
        if opts.min_contrast > 0 and c.best_contrast is not None and c.best_contrast > 0:
            here = contrast(planes(z), kept)
            ratio = None if here is None else here / c.best_contrast
        reason = stop_reason(c.summary, current, float(scores[i]), opts, ratio)
        if reason is not None:
            c.reason = reason
            continue
        assert current is not None
        plane[kept] = c.label
        c.z, c.mask, c.summary = z, kept, current
        c.logits = None if tiled else pred.low_res_logits[i, 0]
        if ratio is not None and ratio > 1 and c.best_contrast is not None:
            c.best_contrast *= ratio


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
    **embedding_options: Any,
) -> Generator[tuple[int, int], None, PropagationResult]:
    """:func:`propagate` as a generator: yields ``(done, total)`` slice steps, returns the result.

    Made for napari's ``thread_worker``; closing the generator stops between two slices.
    Arguments as :func:`propagate`. Prompted objects that got no pixels are listed in the result's
    ``empty_objects`` (no warning is emitted here: :func:`propagate` emits it).
    """
    opts = PropagateOptions(
        prompt=tuple(prompt) if not isinstance(prompt, str) else (prompt,),
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
    prompts = _prompt_arguments(labels_or_prompts, points, point_labels, boxes)
    emb, sam = _as_volume(volume, embeddings, model, device, embedding_options)
    shape = tuple(int(v) for v in emb.shape)
    lo, hi = _as_range(z_range, shape[0])

    empty: dict[int, int] = {}
    if prompts is not None:
        if z is not None or seed_slices is not None or objects is not None:
            raise ValueError("z=, seed_slices= and objects= apply to seed labels, not to prompts")
        labels, seeds, empty = _seeds_from_prompts(emb, sam, *prompts)
    else:
        if labels_or_prompts is None:
            raise ValueError("propagate needs seed labels or prompts (points= / boxes= with z)")
        labels, implied = _labels_volume(labels_or_prompts, shape, z)  # type: ignore[arg-type]
        if seed_slices is not None:
            if implied is not None:
                raise ValueError("give z= or seed_slices=, not both")
            implied = [_slice_number(v, shape[0], "seed_slices") for v in np.asarray(seed_slices).reshape(-1)]
        seeds = _seed_map(labels, implied, objects)
        if implied is not None and not any(lo <= s < hi for s in implied):
            raise ValueError(f"the seed slice(s) {implied} lie outside z_range=({lo}, {hi})")

    if image is None and not isinstance(volume, VolumeEmbeddings):
        image = volume
    planes = _Planes(image, embedding_options.get("channel_axis"), embedding_options.get("channel"))
    if planes.layout is not None and tuple(planes.layout.spatial_shape) != shape:
        raise ValueError(
            f"image has spatial shape {tuple(planes.layout.spatial_shape)}, the embeddings {shape}"
        )
    ups, downs = _make_chains(labels, seeds, lo, hi)
    chains = [*ups, *downs]
    # rounds: each takes every active chain one slice further, so the slices nearest to any seed are
    # claimed first (an object does not lose its own slices to a neighbour that walked there from afar)
    total = max((_reach(c) for c in chains), default=0)
    rounds = calls = 0
    yield 0, total
    while True:
        onto: dict[int, list[_Chain]] = {}
        for c in chains:
            zz = _next_slice(c)
            if zz is not None:
                onto.setdefault(zz, []).append(c)
        if not onto:
            break
        rounds += 1
        for zz in sorted(onto):
            _step_slice(zz, onto[zz], emb, sam, labels, opts, planes)
            calls += 1
            yield min(rounds, total), total
    for c in chains:
        if c.active:
            c.reason = "range"  # a gap's upper half waiting at the middle for a lower half that filled it
    yield total, total
    stops = [Stop(c.label, c.direction, c.z + c.step, c.reason or "range") for c in chains]
    return PropagationResult(
        labels=labels, seeds=seeds, stops=stops, decoder_calls=calls, empty_objects=empty
    )


def _prompt_arguments(labels_or_prompts: Any, points: Any, point_labels: Any, boxes: Any) -> tuple | None:
    """``(points, point_labels, boxes)`` when seeds are given as prompts, else None."""
    if isinstance(labels_or_prompts, Mapping):
        if points is not None or point_labels is not None or boxes is not None:
            raise ValueError("give prompts either as a mapping or as points= / boxes=, not both")
        unknown = set(labels_or_prompts) - {"points", "point_labels", "boxes"}
        if unknown:
            raise ValueError(
                "a prompts mapping holds 'points', 'point_labels' and 'boxes'; unknown keys "
                f"{sorted(unknown)}"
            )
        points = labels_or_prompts.get("points")
        point_labels = labels_or_prompts.get("point_labels")
        boxes = labels_or_prompts.get("boxes")
        if points is None and boxes is None:
            raise ValueError("the prompts mapping holds neither 'points' nor 'boxes'")
        return points, point_labels, boxes
    if points is None and boxes is None:
        if point_labels is not None:
            raise ValueError("point_labels given without points")
        return None
    if labels_or_prompts is not None:
        raise ValueError("give seed labels or prompts (points= / boxes=), not both")
    return points, point_labels, boxes


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
) -> PropagationResult:
    """Propagate objects annotated on some slices of a stack through the stack.

    Parameters
    ----------
    volume
        ``(Z, Y, X[, C])`` stack (numpy, dask or zarr; any dtype), or its
        :class:`~napari_sam.engine.embed.embeddings.VolumeEmbeddings`. Slices are embedded when first
        visited (through ``cache=`` when given).
    labels_or_prompts
        The seeds, one of:

        - ``(Z, Y, X)`` integer labels: every object is seeded on each slice that holds it (or on
          ``seed_slices``); all other labels are kept and never overwritten;
        - ``(Y, X)`` labels of one slice, with ``z=`` that slice;
        - a mapping ``{"points": (N, 3), "point_labels": (N,), "boxes": (M, 6)}`` of prompts with z,
          read as :func:`napari_sam.segment` reads them (object ``k`` gets label ``k + 1``); the same
          may be given as ``points=`` / ``point_labels=`` / ``boxes=``.
    z
        The slice of a ``(Y, X)`` labels slice.
    seed_slices
        With a labels volume: only these slices seed objects.
    objects
        Labels of the objects to propagate (default: every object on the seed slices).
    z_range
        ``(start, stop)`` half-open slices to propagate within (default: the whole stack).
    prompt
        What each step gives the decoder from the previous slice's result: any of ``"box"``,
        ``"points"``, ``"mask"`` (see :class:`PropagateOptions`).
    n_points, box_margin, multimask
        Prompt details (see :class:`PropagateOptions`).
    iou_threshold, min_area, max_area_change, max_centroid_shift
        Stop rules, checked for every object on every slice (see :class:`PropagateOptions`).
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
        Drop the parts of a prediction outside its box prompt (see :class:`PropagateOptions`).
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
        Passed to :func:`napari_sam.compute_embeddings` (``cache``, ``normalize``, ``channel_axis`` …).

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
            image=image,
            model=model,
            device=device,
            embeddings=embeddings,
            **embedding_options,
        )
        result = run_steps(steps, progress=progress, cancel=cancel, what="propagation", unit="slice")
        warn_empty_objects(result.empty_objects)
        return result
