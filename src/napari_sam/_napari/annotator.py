"""The interactive annotator as a plain Python object: layers in, preview and committed labels out.

The Qt widget (:mod:`napari_sam._widgets.annotator`) only drives this object, and scripts can too::

    annotator = Annotator(viewer)
    annotator.set_image(viewer.layers["nuclei"])
    for _ in annotator.embedding_steps(): pass      # or in a thread_worker
    annotator.points_layer.add([120, 80])           # (row, col)
    annotator.update_preview()
    annotator.commit()                              # next free label in annotator.target_layer

Prompts are read from a Points layer (feature ``label``: ``"positive"`` / ``"negative"``) and the
rectangles of a Shapes layer, on the current slice for a 3D stack. Single-object mode makes one object of
all prompts; batch mode makes every box and every positive point outside a box its own object.
Rectangles covering the same pixels are one box (:attr:`SlicePrompts.notes` says so). A point whose
``label`` is not a point kind (NaN, a typo …) and a 2D prompt layer over a 3D image are
:class:`AnnotatorError` s naming the layer, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AnnotatorError
from .embeddings import EmbeddingSettings, compute_steps, image_plane, lookup
from .labels import write_index
from .prompts import (
    LABEL_FEATURE,
    NEGATIVE,
    POSITIVE,
    SlicePrompts,
    check_layer_ndim,
    image_spatial_shape,
    prompts_from_layers,
)

POINTS_NAME = "SAM points"
BOXES_NAME = "SAM boxes"
PREVIEW_NAME = "SAM preview"
TARGET_NAME = "SAM labels"

POINT_COLORS = {POSITIVE: "#33ff66", NEGATIVE: "#ff3355"}
PREVIEW_COLOR = "#ffd21a"


@dataclass
class PreviewResult:
    """The object(s) predicted for the prompts on one slice.

    Attributes
    ----------
    plane
        The slice (``None`` for a 2D image).
    index
        ``(H, W)`` int32: ``k + 1`` where object ``k`` is, 0 elsewhere (overlaps already resolved).
    n_objects
        Objects in ``index`` (1 in single-object mode).
    scores
        ``(n_objects,)`` predicted IoU (single-object mode; 1 in batch mode).
    candidate, n_candidates
        Which of the candidate masks is shown (single-object mode), and how many there are.
    key
        Identifies the prompts and options the result was computed for.
    """

    plane: int | None
    index: np.ndarray
    n_objects: int
    scores: np.ndarray
    candidate: int
    n_candidates: int
    key: tuple[Any, ...]

    @property
    def masks(self) -> np.ndarray:
        """``(n_objects, H, W)`` bool, one per object (built on request)."""
        return (
            np.stack([self.index == k + 1 for k in range(self.n_objects)])
            if self.n_objects
            else (np.zeros((0, *self.index.shape), bool))
        )


def _prompt_key(prompts: SlicePrompts, plane: int | None, batch: bool, candidate: int) -> tuple[Any, ...]:
    return (
        plane,
        batch,
        candidate,
        prompts.points.round(3).tobytes(),
        prompts.point_labels.tobytes(),
        prompts.boxes.round(3).tobytes(),
    )


def predict_single(
    embeddings: Any, prompts: SlicePrompts, candidate: int = 0
) -> tuple[np.ndarray, float, int]:
    """One object from all prompts: its mask ``(H, W)`` bool, score and the number of candidates.

    A lone positive point has the model's 3 multimask candidates (best first); any other prompt has the
    single-output mask first, then the 3 multimask candidates. ``candidate`` picks one (modulo the count).
    """
    from ..engine.decode.predict import predict

    if len(prompts.boxes) > 1:
        raise AnnotatorError(
            f"{len(prompts.boxes)} boxes on this slice: one object takes one box — switch on batch mode to "
            "segment each box as its own object, or delete the extra boxes"
        )
    if prompts.n_positive == 0 and len(prompts.boxes) == 0:
        raise AnnotatorError(
            "add a positive point (click) or a box on the object; negative points alone are not enough"
        )
    kwargs: dict[str, Any] = {}
    if len(prompts.points):
        kwargs["points"] = prompts.points
        kwargs["point_labels"] = prompts.point_labels
    if len(prompts.boxes):
        kwargs["box"] = prompts.boxes[0]
    lone_point = len(prompts.boxes) == 0 and len(prompts.points) == 1
    multi = predict(embeddings, multimask=True, **kwargs)
    order = np.argsort(-multi.iou_scores[0])
    masks = [multi.masks[0, k] for k in order]
    scores = [float(multi.iou_scores[0, k]) for k in order]
    if not lone_point:
        single = predict(embeddings, multimask=False, **kwargs)
        masks.insert(0, single.masks[0, 0])
        scores.insert(0, float(single.iou_scores[0, 0]))
    k = candidate % len(masks)
    return masks[k], scores[k], len(masks)


def predict_batch(embeddings: Any, image: np.ndarray, prompts: SlicePrompts) -> np.ndarray:
    """Every box, and every positive point outside the boxes, as its own object (as in ``segment``).

    Returns the ``(H, W)`` uint32 labels ``1..N`` (overlaps resolved by predicted IoU).
    """
    from ..api import segment

    if prompts.n_positive == 0 and len(prompts.boxes) == 0:
        raise AnnotatorError("batch mode needs positive points or boxes; there are none on this slice")
    return segment(
        image,
        points=prompts.points if len(prompts.points) else None,
        point_labels=prompts.point_labels if len(prompts.points) else None,
        boxes=prompts.boxes if len(prompts.boxes) else None,
        embeddings=embeddings,
    )


class Annotator:
    """Prompt layers, a live preview and a target labels layer for one image layer in a viewer.

    Parameters
    ----------
    viewer
        The ``napari.Viewer`` (or ``ViewerModel``) holding the layers.
    settings
        How embeddings are computed (model, device, precision).
    """

    def __init__(self, viewer: Any, settings: EmbeddingSettings | None = None) -> None:
        self.viewer = viewer
        self.settings = settings or EmbeddingSettings()
        self.image_layer: Any = None
        self.points_layer: Any = None
        self.shapes_layer: Any = None
        self.preview_layer: Any = None
        self.target_layer: Any = None
        self.batch = False
        self.overwrite = False
        self.candidate = 0
        self.last_result: PreviewResult | None = None
        self._preview_plane: int | None = None
        self._preview_style: str | None = None

    # ------------------------------------------------------------------ layers
    def set_image(self, layer: Any) -> None:
        """Annotate ``layer`` (a 2D or 3D Image layer): create the prompt and preview layers for it."""
        image_spatial_shape(layer)
        if layer is not self.image_layer:
            self.image_layer = layer
            self.last_result = None
            self._drop_own_layers()
        self.ensure_layers()

    def _layer_kwargs(self) -> dict[str, Any]:
        img = self.image_layer
        return {"scale": img.scale, "translate": img.translate}

    def _in_viewer(self, layer: Any) -> bool:
        return layer is not None and layer in self.viewer.layers

    def _drop_own_layers(self) -> None:
        """Detach from the previous image's layers: remove the preview and empty prompt layers; prompt
        layers holding prompts stay in the viewer (never lose what the user drew)."""
        for name in ("points_layer", "shapes_layer", "preview_layer"):
            layer = getattr(self, name)
            empty = name == "preview_layer" or layer is None or len(layer.data) == 0
            if self._in_viewer(layer) and empty:
                self.viewer.layers.remove(layer)
            setattr(self, name, None)
        self.target_layer = None

    def ensure_layers(self) -> None:
        """Create (or re-add) the points, boxes and preview layers that fit the current image."""
        from napari.layers import Labels, Points, Shapes

        if self.image_layer is None:
            raise AnnotatorError("choose an image layer first")
        spatial = image_spatial_shape(self.image_layer)
        ndim = len(spatial)
        if not self._in_viewer(self.preview_layer):
            self.preview_layer = Labels(
                np.zeros(spatial, dtype=np.uint16), name=PREVIEW_NAME, opacity=0.55, **self._layer_kwargs()
            )
            self.viewer.add_layer(self.preview_layer)
            self._preview_style = None
        if not self._in_viewer(self.shapes_layer):
            self.shapes_layer = Shapes(
                ndim=ndim,
                name=BOXES_NAME,
                edge_color="#ffd700",
                face_color="transparent",
                edge_width=max(1.0, max(spatial[-2:]) / 400),
                **self._layer_kwargs(),
            )
            self.viewer.add_layer(self.shapes_layer)
        if not self._in_viewer(self.points_layer):
            self.points_layer = Points(
                np.zeros((0, ndim)),
                ndim=ndim,
                name=POINTS_NAME,
                features={LABEL_FEATURE: np.array([], dtype=object)},
                feature_defaults={LABEL_FEATURE: POSITIVE},
                face_color=LABEL_FEATURE,
                face_color_cycle=POINT_COLORS,
                border_color="white",
                size=max(4.0, max(spatial[-2:]) / 60),
                **self._layer_kwargs(),
            )
            self.points_layer.face_color_mode = "cycle"
            self.points_layer.mode = "add"
            self.viewer.add_layer(self.points_layer)

    def set_target(self, layer: Any) -> None:
        """Commit into ``layer`` (a Labels layer of the image's shape), or a new layer when None."""
        if layer is not None:
            self._check_target(layer)
        self.target_layer = layer

    def _check_target(self, layer: Any) -> None:
        from napari.layers import Labels

        if not isinstance(layer, Labels):
            raise AnnotatorError(
                f"the target must be a labels layer, got '{layer.name}' ({type(layer).__name__})"
            )
        spatial = image_spatial_shape(self.image_layer)
        if tuple(layer.data.shape) != spatial:
            raise AnnotatorError(
                f"labels layer '{layer.name}' has shape {tuple(layer.data.shape)} but image "
                f"'{self.image_layer.name}' has {spatial}; choose another labels layer or '(new layer)'"
            )

    def ensure_target(self) -> Any:
        """The target labels layer, created (uint32, empty) if there is none."""
        from napari.layers import Labels

        if self.target_layer is not None and self._in_viewer(self.target_layer):
            self._check_target(self.target_layer)
            return self.target_layer
        spatial = image_spatial_shape(self.image_layer)
        layer = Labels(np.zeros(spatial, dtype=np.uint32), name=TARGET_NAME, **self._layer_kwargs())
        active = self.viewer.layers.selection.active
        below_preview = (
            self.viewer.layers.index(self.preview_layer)
            if self._in_viewer(self.preview_layer)
            else len(self.viewer.layers)
        )
        self.viewer.layers.insert(below_preview, layer)
        if active is not None and active in self.viewer.layers:
            self.viewer.layers.selection.active = active
        self.target_layer = layer
        return layer

    # ------------------------------------------------------------------ slices and embeddings
    def current_plane(self) -> int | None:
        """The image slice shown in the viewer (``None`` for a 2D image)."""
        if self.image_layer is None:
            raise AnnotatorError("choose an image layer first")
        spatial = image_spatial_shape(self.image_layer)
        if len(spatial) == 2:
            return None
        z = float(self.image_layer.world_to_data(self.viewer.dims.point)[-3])
        return int(np.clip(round(z), 0, spatial[0] - 1))

    def embeddings(self, plane: int | None = None) -> Any:
        """The embeddings of ``plane`` (default: the current slice), or None when not computed yet."""
        if self.image_layer is None:
            return None
        plane = self.current_plane() if plane is None else plane
        return lookup(self.image_layer, plane, self.settings)

    def embedding_steps(self, planes: list[int | None] | None = None) -> Any:
        """Generator computing the embeddings of ``planes`` (default: the current slice); yields
        ``(done, total)``. Call it on the UI thread, iterate it anywhere."""
        if self.image_layer is None:
            raise AnnotatorError("choose an image layer first")
        planes = [self.current_plane()] if planes is None else planes
        return compute_steps(self.image_layer, planes, self.settings)

    # ------------------------------------------------------------------ prompts → preview
    def prompts(self, plane: int | None = None) -> SlicePrompts:
        """The prompts on ``plane`` (default: the current slice), in the image's pixel frame."""
        if self.image_layer is None:
            raise AnnotatorError("choose an image layer first")
        return prompts_from_layers(self.image_layer, self.points_layer, self.shapes_layer, plane)

    def compute(self, prompts: SlicePrompts, plane: int | None, embeddings: Any = None) -> PreviewResult:
        """Predict the masks for ``prompts`` on ``plane`` (thread-safe: no layer is touched)."""
        embeddings = embeddings if embeddings is not None else self.embeddings(plane)
        if embeddings is None:
            raise AnnotatorError("compute the embeddings of this image (or slice) first")
        key = _prompt_key(prompts, plane, self.batch, self.candidate)
        if self.batch:
            image = image_plane(self.image_layer, plane)
            labels = predict_batch(embeddings, image, prompts)
            n = int(labels.max())
            return PreviewResult(plane, labels.astype(np.int32), n, np.ones(n, np.float32), 0, 1, key)
        mask, score, n = predict_single(embeddings, prompts, self.candidate)
        index = mask.astype(np.int32)
        return PreviewResult(plane, index, 1, np.array([score], np.float32), self.candidate % n, n, key)

    def show(self, result: PreviewResult | None) -> None:
        """Draw ``result`` in the preview layer (``None`` clears it)."""
        self.ensure_layers()
        layer = self.preview_layer
        self._style_preview(batch=result is not None and result.n_objects > 1)
        if self._preview_plane is not None and layer.data.ndim == 3:
            layer.data[self._preview_plane] = 0
        elif layer.data.ndim == 2:
            layer.data[...] = 0
        self._preview_plane = None
        self.last_result = result
        if result is not None and result.n_objects:
            index = result.index.astype(layer.data.dtype)
            if layer.data.ndim == 3:
                layer.data[result.plane] = index
                self._preview_plane = result.plane
            else:
                layer.data[...] = index
        layer.refresh()

    def _style_preview(self, *, batch: bool) -> None:
        """One object: bright yellow, unlike any committed label; several: napari's distinct colours."""
        from napari.utils.colormaps import DirectLabelColormap, label_colormap

        layer = self.preview_layer
        wanted = "batch" if batch else "single"
        if self._preview_style == wanted:
            return
        if batch:
            layer.colormap = label_colormap(49)
        else:
            layer.colormap = DirectLabelColormap(color_dict={None: PREVIEW_COLOR, 0: "transparent"})
        self._preview_style = wanted

    def update_preview(self) -> PreviewResult | None:
        """Recompute and draw the preview for the prompts on the current slice (clears it when none)."""
        plane = self.current_plane()
        prompts = self.prompts(plane)
        if prompts.empty:
            self.show(None)
            return None
        result = self.compute(prompts, plane)
        self.show(result)
        return result

    def next_candidate(self) -> PreviewResult | None:
        """Show the next candidate mask of the current object."""
        self.candidate += 1
        return self.update_preview()

    # ------------------------------------------------------------------ commit / clear / history
    def commit(self) -> list[int]:
        """Write the previewed object(s) into the target labels with the next free labels.

        Pixels that already hold a label are kept unless :attr:`overwrite` is set. The prompts and the
        preview are cleared afterwards. One commit is one undo step of the target layer.

        Returns
        -------
        list[int]
            The new labels.
        """
        plane = self.current_plane()
        prompts = self.prompts(plane)
        if prompts.empty:
            raise AnnotatorError("nothing to commit: add a point (click on the object) or draw a box first")
        result = self.last_result
        if result is None or result.key != _prompt_key(prompts, plane, self.batch, self.candidate):
            result = self.compute(prompts, plane)
        target = self.ensure_target()
        ids = write_index(target, result.index, result.n_objects, plane=plane, overwrite=self.overwrite)
        self.clear_prompts()
        return ids

    def clear_prompts(self) -> None:
        """Delete every point and box on the current slice (all of them for 2D) and the preview.

        Raises
        ------
        AnnotatorError
            A prompt layer has fewer dimensions than the image (nothing is deleted).
        """
        plane = self.current_plane()
        check_layer_ndim(self.points_layer, self.image_layer, "points")
        check_layer_ndim(self.shapes_layer, self.image_layer, "shapes")
        for layer in (self.points_layer, self.shapes_layer):
            if layer is None or len(layer.data) == 0:
                continue
            if plane is None:
                keep: list[int] = []
            elif layer is self.points_layer:
                keep = [i for i, p in enumerate(layer.data) if abs(p[-3] - plane) >= 0.5]
            else:
                keep = [i for i, s in enumerate(layer.data) if not np.all(np.abs(s[:, -3] - plane) < 0.5)]
            drop = sorted(set(range(len(layer.data))) - set(keep))
            if layer is self.points_layer:
                layer.selected_data = set(drop)
                layer.remove_selected()
            else:
                layer.selected_data = set(drop)
                layer.remove_selected()
        self.candidate = 0
        self.show(None)

    def undo(self) -> None:
        """Undo the last edit of the target labels layer."""
        if self.target_layer is None:
            raise AnnotatorError("nothing to undo: no object committed yet")
        self.target_layer.undo()

    def redo(self) -> None:
        """Redo the last undone edit of the target labels layer."""
        if self.target_layer is None:
            raise AnnotatorError("nothing to redo")
        self.target_layer.redo()
