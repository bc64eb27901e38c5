"""Automatic segmentation ("segment everything") of an image layer, for the annotator.

Plan on the UI thread, run anywhere, write on the UI thread::

    job = plan_automatic(image_layer, EmbeddingSettings(), AutomaticSettings(preset="nuclei"), plane=None)
    steps = job.steps()                  # a generator: yields (done, total), returns an AutomaticOutput
    ...                                   # e.g. napari's thread_worker; closing it cancels the run
    layer = add_result_layer(viewer, job, output)   # a NEW labels layer, never an existing one

The embeddings the annotator keeps for the layer (:mod:`napari_sam._napari.embeddings`) are reused, and
the slices embedded here are kept there for the annotator. Each slice is segmented by
:func:`napari_sam.engine.automatic.front.iter_plan` in the settings' mode — the instance decoder's AIS or
APG (on the annotator's embeddings, tiled ones for big images) or the prompt grid, AMG (on an untiled
embedding); a stack's slices are numbered on from one another and, optionally, linked into 3D objects by
:func:`napari_sam.engine.volume.linking.link_slices` — as ``segment(volume)`` without prompts does.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.types import AUTOMATIC_MODES, DECODER_MODES, PRESET_CHOICES
from ..errors import AnnotatorError
from .embeddings import EmbeddingSettings, LayerEmbeddings, compute_steps, preprocessing_of, stored
from .prompts import image_spatial_shape

if TYPE_CHECKING:
    from ..engine.automatic.plan import AutomaticPlan
    from ..model import Sam

RESULT_NAME = "SAM automatic"
#: Modes understood by :class:`AutomaticSettings` (as :func:`napari_sam.automatic`'s ``mode``).
MODE_CHOICES = AUTOMATIC_MODES
#: The prompt grid's (AMG's) options the panel shows, besides the preset.
SHOWN_OPTIONS = ("points_per_side", "pred_iou_thresh", "stability_score_thresh", "min_mask_region_area")
#: The instance decoder's (AIS / APG) options the panel shows.
DECODER_OPTIONS = (
    "foreground_threshold",
    "center_distance_threshold",
    "boundary_distance_threshold",
    "min_size",
)
#: Progress steps of the decoder modes per slice, after the embedding: maps, labels (and the engine's
#: own embedding step, which has nothing to do on given embeddings).
DECODER_STEPS = 3


def engine_preset(preset: str | None, model: str) -> str | None:
    """The engine preset for ``preset``: ``"auto"`` is ``"nuclei"`` for the shipped nano model, else the
    official defaults (``None``) — as ``segment()`` without prompts does."""
    from ..engine.automatic.options import auto_preset

    if preset == "auto":
        return auto_preset(model)
    if preset is not None and preset not in PRESET_CHOICES:
        raise AnnotatorError(f"preset must be one of {PRESET_CHOICES}, got {preset!r}")
    return preset


def preset_values(preset: str | None, model: str = "nano") -> dict[str, Any]:
    """The values of :data:`SHOWN_OPTIONS` under ``preset`` (official defaults where it sets none)."""
    from ..engine.automatic.options import resolve_options

    options = resolve_options(engine_preset(preset, model))
    return {name: getattr(options, name) for name in SHOWN_OPTIONS}


def decoder_values(mode: str) -> dict[str, Any]:
    """The defaults of :data:`DECODER_OPTIONS` for ``mode`` (``"ais"`` or ``"apg"``; micro-sam's:
    thresholds 0.5, ``min_size`` 0 for AIS and 25 for APG)."""
    from ..engine.types import InstanceOptions

    if mode not in DECODER_MODES:
        raise AnnotatorError(f"mode must be one of {DECODER_MODES} for the decoder's options, got {mode!r}")
    options = InstanceOptions()
    values = {name: getattr(options, name) for name in DECODER_OPTIONS}
    values["min_size"] = options.min_size_for(mode)
    return values


@dataclass(frozen=True)
class AutomaticSettings:
    """What to segment and how.

    Attributes
    ----------
    mode
        ``"auto"`` (default: AIS when the model carries an instance decoder, else AMG), ``"ais"``
        (the decoder's maps and a seeded watershed; fast), ``"apg"`` (the watershed's seeds as prompts
        for the mask decoder) or ``"amg"`` (a grid of point prompts; slow). See
        :func:`napari_sam.automatic`.
    preset
        AMG (``"auto"`` / ``"amg"``): ``"auto"`` (``"nuclei"`` for the nano model, else official),
        ``"nuclei"`` or ``None`` (official).
    points_per_side, pred_iou_thresh, stability_score_thresh, min_mask_region_area
        AMG: override the preset's value when not None. With ``mode="auto"`` they are what AMG uses
        when the model has no decoder; unlike :func:`napari_sam.automatic`'s options they do not choose
        AMG.
    foreground_threshold, center_distance_threshold, boundary_distance_threshold, min_size
        AIS / APG only (``mode="ais"`` or ``"apg"``): override micro-sam's defaults when not None.
    whole_stack
        3D images: every slice (True) or only the slice on screen (False).
    link_3d
        Whole stack: link the objects of neighbouring slices into 3D objects (True), or keep one label per
        slice object (False).
    """

    mode: str = "auto"
    preset: str | None = "auto"
    points_per_side: int | None = None
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    min_mask_region_area: int | None = None
    foreground_threshold: float | None = None
    center_distance_threshold: float | None = None
    boundary_distance_threshold: float | None = None
    min_size: int | None = None
    whole_stack: bool = False
    link_3d: bool = True

    def plan(self, model: str) -> AutomaticPlan:
        """The checked :class:`~napari_sam.engine.automatic.plan.AutomaticPlan` of these settings for
        ``model`` (whose preset ``"auto"`` means).

        Raises
        ------
        AnnotatorError
            An unknown mode or preset, a value out of range, or options of a mode not chosen (the
            decoder's with ``"auto"`` / ``"amg"``, the prompt grid's or a preset with ``"ais"`` /
            ``"apg"``).
        """
        from ..engine.automatic.plan import AutomaticPlan

        grid = {name: getattr(self, name) for name in SHOWN_OPTIONS}
        decoder = {name: getattr(self, name) for name in DECODER_OPTIONS}
        engine_preset(self.preset, model)  # an unknown preset is named as the panel's
        try:
            if self.mode != "auto":
                return AutomaticPlan.make(
                    self.mode, self.preset, model=model, amg_options=grid, instance_options=decoder
                )
            given = [name for name, value in decoder.items() if value is not None]
            if given:
                raise AnnotatorError(f"{given[0]} applies to mode 'ais' or 'apg', not 'auto'")
            plan = AutomaticPlan.make("auto", self.preset, model=model, amg_options=grid)
        except AnnotatorError:
            raise
        except ValueError as exc:
            raise AnnotatorError(str(exc)) from None
        # the grid's values are what AMG uses should "auto" settle on it; they do not choose it
        return replace(plan, amg_given=False)


@dataclass
class AutomaticOutput:
    """The result of a run.

    Attributes
    ----------
    labels
        uint32 labels of the image's spatial shape (``(Y, X)`` or ``(Z, Y, X)``); for one slice of a
        stack only that slice holds labels.
    planes
        The slices segmented (``[None]`` for a 2D image).
    n_objects
        Distinct labels in ``labels``.
    features
        Per-label table for the labels layer, row ``k`` for label ``k`` (row 0 the background): ``index``,
        ``score`` (AMG and APG: the predicted IoU; AIS: the mean foreground probability over the object),
        ``stability_score`` (AMG; NaN for AIS and APG), ``area`` and, for stacks, ``z``; empty when
        objects were linked in 3D.
    mode
        The mode that ran: ``"ais"``, ``"apg"`` or ``"amg"``.
    """

    labels: np.ndarray
    planes: list[int | None]
    n_objects: int
    features: dict[str, np.ndarray] = field(default_factory=dict)
    mode: str = "amg"


@dataclass
class AutomaticJob:
    """Everything a run needs, gathered on the UI thread by :func:`plan_automatic`.

    ``plan`` is checked; its ``"auto"`` is settled when the run starts (the model is loaded then, off
    the UI thread). ``embed_steps`` embed each slice into the annotator's registry (tiled for big
    slices); they run for the decoder modes, and for AMG only where a slice is embedded whole.
    """

    image_layer: Any
    shape: tuple[int, ...]
    planes: list[int | None]
    settings: EmbeddingSettings
    plan: AutomaticPlan
    link_3d: bool
    record: LayerEmbeddings | None
    embed_steps: dict[int | None, Iterator[tuple[int, int]] | None]
    image_options: dict[str, Any]
    data: Any

    def steps_per_plane(self, mode: str) -> int:
        """Progress steps of one slice in ``mode``: embedding it, then the engine's steps (AIS / APG:
        :data:`DECODER_STEPS`; AMG: ``ceil(points² / points_per_batch)`` batches after its embedding
        step)."""
        if mode in DECODER_MODES:
            return 1 + DECODER_STEPS
        opts = self.plan.amg
        return 1 + 1 + math.ceil(opts.points_per_side**2 / opts.points_per_batch)

    def model_and_mode(self) -> tuple[Sam, str]:
        """Load the model (cached) and settle the mode on it: ``"ais"``, ``"apg"`` or ``"amg"``.

        Raises
        ------
        AnnotatorError
            AIS / APG with a model that has no instance decoder.
        """
        from ..engine.loading import load_model

        sam = load_model(self.settings.model, self.settings.device)
        if self.plan.mode in DECODER_MODES and getattr(sam, "instance_decoder", None) is None:
            raise AnnotatorError(
                f"{self.plan.mode.upper()} needs a model with an instance decoder, and model "
                f"'{self.settings.model}' has none: choose 'auto' or 'AMG', or a model that carries one "
                "(e.g. a micro-sam checkpoint with its decoder)"
            )
        try:
            return sam, self.plan.mode_for(sam)
        except ValueError as exc:
            raise AnnotatorError(str(exc)) from None

    def steps(self) -> Generator[tuple[int, int], None, AutomaticOutput]:
        """Segment every planned slice; yields ``(done, total)``; returns the :class:`AutomaticOutput`.

        The model is loaded (and the mode settled) before the first report. Closing the generator
        (napari's worker ``quit``) stops it between two engine steps; nothing is written anywhere but
        the embedding registry (finished slices' embeddings are kept).
        """
        sam, mode = self.model_and_mode()
        per_plane = self.steps_per_plane(mode)
        total = per_plane * len(self.planes)
        yield 0, total
        stack = len(self.shape) == 3
        labels = np.zeros(self.shape, dtype=np.uint32)
        tables: list[dict[str, np.ndarray]] = []
        offset = 0
        for i, plane in enumerate(self.planes):
            base = i * per_plane
            result = yield from self._one_plane(plane, sam, mode, base, per_plane, total)
            yield base + per_plane, total
            if result is None or not result.n_objects:
                continue
            shifted = np.where(result.labels > 0, result.labels + np.uint32(offset), 0).astype(np.uint32)
            if stack:
                labels[plane] = shifted
            else:
                labels[...] = shifted
            table = {
                "index": result.properties["label"].astype(np.int64) + offset,
                "score": result.properties["score"],
                "stability_score": result.properties["stability_score"],
                "area": result.properties["area"],
            }
            if stack:
                table["z"] = np.full(result.n_objects, plane, dtype=np.int64)
            tables.append(table)
            offset += int(result.labels.max())
        features = _features(tables)
        if stack and len(self.planes) > 1 and self.link_3d:
            from ..engine.volume.linking import link_slices

            labels = link_slices(labels)
            features = {}
        n_objects = int(np.count_nonzero(np.unique(labels)))
        return AutomaticOutput(
            labels=labels, planes=list(self.planes), n_objects=n_objects, features=features, mode=mode
        )

    def _embeddings(self, plane: int | None, image: np.ndarray, sam: Sam, mode: str) -> Any:
        """The slice's embeddings: the annotator's (computed now if missing; tiled ones only for the
        decoder modes), else — AMG on a slice too large for one embedding — an untiled one, not kept."""
        from ..engine.embed.embeddings import compute_embeddings
        from ..engine.types import Embeddings

        decoder = mode in DECODER_MODES
        embed = self.embed_steps.get(plane)
        if embed is not None and (decoder or _embeds_whole(self.shape)):
            for _ in embed:
                pass
        embeddings = None
        if self.record is not None:
            embeddings = self.record.slices.get(0 if plane is None else int(plane))
        if isinstance(embeddings, Embeddings) or (decoder and embeddings is not None):
            return embeddings
        # AMG needs the whole image at the model's input size (prompts use the tiles): embed it so
        return compute_embeddings(
            image,
            sam,
            device=self.settings.device,
            precision=self.settings.precision,
            object_size=self.settings.object_size,
            tile=False if not decoder else None,
            **self.image_options,
        )

    def _one_plane(
        self, plane: int | None, sam: Sam, mode: str, base: int, per_plane: int, total: int
    ) -> Generator[tuple[int, int], None, Any]:
        from ..engine.automatic.front import iter_plan

        image = np.asarray(self.data if plane is None else self.data[plane])
        if image.size == 0 or float(image.min()) == float(image.max()):
            return None  # a constant slice has no objects (and is not worth embedding)
        embeddings = self._embeddings(plane, image, sam, mode)
        yield base + 1, total
        steps = iter_plan(embeddings, self.plan, model=sam, device=self.settings.device)
        span = per_plane - 1  # the engine's own count; rescaled should it ever differ
        while True:
            try:
                done, steps_total = next(steps)
            except StopIteration as stop:
                return stop.value
            yield base + 1 + min(span, round(done * span / max(steps_total, 1))), total


def _features(tables: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """One table for the labels layer: row ``k`` is label ``k`` (row 0 the background, as napari wants)."""
    if not tables:
        return {}
    joined = {k: np.concatenate([t[k] for t in tables]) for k in tables[0]}
    order = np.argsort(joined["index"], kind="stable")
    out: dict[str, np.ndarray] = {}
    for key, values in joined.items():
        values = values[order]
        background = np.array([0 if key in ("index", "area") else (-1 if key == "z" else np.nan)])
        out[key] = np.concatenate([background.astype(values.dtype, copy=False), values])
    return out


def _embeds_whole(shape: tuple[int, ...]) -> bool:
    """Whether the embedding registry embeds a slice of ``shape`` untiled (what the engine's AMG uses)."""
    from ..engine.types import DEFAULT_TILE_THRESHOLD

    return max(shape[-2:]) <= DEFAULT_TILE_THRESHOLD


def plan_automatic(
    image_layer: Any,
    embedding_settings: EmbeddingSettings,
    settings: AutomaticSettings,
    plane: int | None = None,
) -> AutomaticJob:
    """Gather a run's inputs from the layer (call on the UI thread: reads the layer's display settings).

    Parameters
    ----------
    image_layer
        A 2D or 3D napari Image layer.
    embedding_settings
        Model, device, precision, cache and channel — those of the annotator, so its embeddings are reused.
    settings
        The mode and options of the run (checked here; ``"auto"`` is settled when the run starts).
    plane
        The slice on screen (3D images, unless ``settings.whole_stack``); ignored for 2D images.

    Raises
    ------
    AnnotatorError
        Bad options, or a 3D image without a slice to segment.
    """
    if image_layer is None:
        raise AnnotatorError("no image layer: open an image first")
    shape = image_spatial_shape(image_layer)
    plan = settings.plan(embedding_settings.model)
    planes: list[int | None]
    if len(shape) == 2:
        planes = [None]
    elif settings.whole_stack:
        planes = list(range(shape[0]))
    else:
        if plane is None or not 0 <= plane < shape[0]:
            raise AnnotatorError(f"slice {plane} is outside image '{image_layer.name}' ({shape[0]} slices)")
        planes = [int(plane)]
    embed_steps: dict[int | None, Iterator[tuple[int, int]] | None] = {}
    if _embeds_whole(shape) or plan.mode != "amg":  # big slices are embedded in tiles, for AIS / APG
        for p in planes:
            embed_steps[p] = compute_steps(image_layer, [p], embedding_settings)
    image_options = dict(preprocessing_of(image_layer))
    if embedding_settings.channel is not None:
        image_options["channel"] = embedding_settings.channel
    data = image_layer.data[0] if image_layer.multiscale else image_layer.data
    return AutomaticJob(
        image_layer=image_layer,
        shape=shape,
        planes=planes,
        settings=embedding_settings,
        plan=plan,
        link_3d=bool(settings.link_3d),
        record=stored(image_layer, embedding_settings),
        embed_steps=embed_steps,
        image_options=image_options,
        data=data,
    )


def run_automatic(job: AutomaticJob) -> AutomaticOutput:
    """Run ``job`` to the end here (scripts and tests; the widget uses :meth:`AutomaticJob.steps`)."""
    from ..engine.steps import run_steps

    return run_steps(job.steps())


def add_result_layer(
    viewer: Any, job: AutomaticJob, output: AutomaticOutput, *, name: str = RESULT_NAME, below: Any = None
) -> Any:
    """Add ``output`` as a NEW labels layer over the image (napari makes the name unique).

    Parameters
    ----------
    below
        Insert the layer below this one when it is in the viewer (e.g. the annotator's preview); the
        active layer stays active, so clicks keep going to the prompt layers.

    Returns
    -------
    napari.layers.Labels
        The new layer.
    """
    from napari.layers import Labels

    if tuple(output.labels.shape) != tuple(job.shape):
        raise AnnotatorError(f"result of shape {output.labels.shape} does not fit the image {job.shape}")
    image = job.image_layer
    features = output.features if output.features else None
    layer = Labels(output.labels, name=name, scale=image.scale, translate=image.translate, features=features)
    active = viewer.layers.selection.active
    index = viewer.layers.index(below) if below is not None and below in viewer.layers else len(viewer.layers)
    viewer.layers.insert(index, layer)
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return layer


def describe(output: AutomaticOutput, layer_name: str) -> str:
    """A status line for a finished run."""
    where = (
        "the image"
        if output.planes == [None]
        else (f"slice {output.planes[0]}" if len(output.planes) == 1 else f"{len(output.planes)} slices")
    )
    method = output.mode.upper()
    if not output.n_objects:
        hint = (
            "a lower foreground threshold"
            if output.mode in DECODER_MODES
            else "a lower IoU / stability threshold"
        )
        return f"no objects found in {where} ({method}): '{layer_name}' is empty (try {hint})"
    n = output.n_objects
    found = f"{n} object{'s' if n != 1 else ''} found in {where} ({method})"
    return f"{found}, in the new labels layer '{layer_name}'"
