"""Pipeline nodes: plain typed functions over arrays, usable in scripts and as napari widgets.

Each takes and returns numpy-compatible arrays in napari order (rows first); the annotations are napari's
layer data types, so the manifest shows them as magicgui-generated widgets that pick layers and add the
result as a new layer. Without napari installed the annotations fall back to ``numpy.ndarray``.

>>> from napari_sam.nodes import segment_from_prompts
>>> labels = segment_from_prompts(image, points=[[120, 80]], boxes=[box_vertices])  # doctest: +SKIP
"""

# no ``from __future__ import annotations``: magicgui reads these annotations as objects
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from napari.types import ImageData, LabelsData, LayerDataTuple, PointsData, ShapesData

    from .engine.types import Prompts
else:
    try:
        from napari.types import ImageData, LabelsData, LayerDataTuple, PointsData, ShapesData
    except ImportError:  # scripts without napari
        ImageData = LabelsData = PointsData = ShapesData = np.ndarray
        LayerDataTuple = tuple

__all__ = [
    "ObjectSize",
    "automatic_segmentation",
    "compute_embeddings_to_cache",
    "refine_masks",
    "segment_from_prompts",
    "segment_from_prompts_node",
    "shapes_to_boxes",
]


#: ``object_size=`` of the nodes: the objects' diameter in pixels, ``"auto"``, ``"fixed"`` or None (the
#: model's choice). The widget shows a text field: empty for None, ``auto``, ``fixed`` or a number.
ObjectSize = Annotated[
    float | str | None,
    {
        "widget_type": "LineEdit",
        "value": "",
        "tooltip": "objects' diameter in pixels, auto (estimated) or fixed; empty: the model's choice",
    },
]


def _object_size(value: Any) -> float | str | None:
    """A node's ``object_size``, checked: as :func:`~napari_sam.engine.types.check_object_size` keeps it,
    with the widget's text read too (``""`` → None, ``"20"`` → 20.0)."""
    from .engine.types import check_object_size

    if isinstance(value, str):
        text = value.strip()
        if text in ("", "none", "None"):
            return None
        try:
            value = float(text)
        except ValueError:
            value = text
    return check_object_size(value)


def shapes_to_boxes(shapes: Sequence[Any] | None) -> np.ndarray:
    """Shapes (each ``(V, D)`` vertices, napari order) → ``(M, D * 2)`` half-open boxes of their bounding
    rectangles: ``(min_row, min_col, max_row, max_col)`` for 2D vertices, with ``z`` first for 3D ones
    (``(z, min_row, min_col, z + 1, max_row, max_col)``).

    A pixel belongs to the box when its centre lies inside the shape's bounding rectangle.

    Parameters
    ----------
    shapes
        A Shapes layer's data: a list of ``(V, 2)`` ``(row, col)`` or ``(V, 3)`` ``(z, row, col)``
        vertex arrays (one ``(V, D)`` array is one shape); None for none.

    Returns
    -------
    numpy.ndarray
        ``(M, 4)`` or ``(M, 6)`` float64 boxes, one per shape (``(0, 4)`` for none).

    Examples
    --------
    >>> from napari_sam.nodes import shapes_to_boxes
    >>> rectangle = [[10, 20], [10, 60], [40, 60], [40, 20]]  # napari's 4 corners, (row, col)
    >>> shapes_to_boxes([rectangle])
    array([[10., 20., 41., 61.]])
    >>> shapes_to_boxes([[[3, 10, 20], [3, 10, 60], [3, 40, 60], [3, 40, 20]]])  # drawn on slice 3
    array([[ 3., 10., 20.,  4., 41., 61.]])
    """
    if shapes is None:
        return np.zeros((0, 4))
    if isinstance(shapes, np.ndarray) and shapes.ndim == 2:
        shapes = [shapes]
    from .engine.decode.coords import vertices_to_box
    from .engine.decode.prompts import as_float_array

    out = []
    for vertices in shapes:
        v = as_float_array(vertices, "boxes: shape vertices")  # numeric and finite
        if v.ndim != 2 or v.shape[1] not in (2, 3) or len(v) == 0:
            raise ValueError(f"boxes: each shape must be (V, 2) or (V, 3) vertices, got shape {v.shape}")
        out.append(vertices_to_box(v))
    widths = {len(b) for b in out}
    if len(widths) > 1:
        raise ValueError("boxes: mix of 2D and 3D shapes")
    return np.array(out, dtype=np.float64) if out else np.zeros((0, 4))


def _layer_points(points: Any, name: str) -> np.ndarray | None:
    """A Points layer's data as ``(N, 2 | 3)`` float64 (None for none): the layer's own form only;
    :func:`~napari_sam.engine.decode.prompts.normalize_prompts` checks the prompts."""
    from .engine.decode.prompts import as_float_array

    if points is None:
        return None
    arr = as_float_array(points, name)
    if arr.size == 0:
        return None
    if arr.ndim != 2 or arr.shape[1] not in (2, 3):
        raise ValueError(
            f"{name} must have shape (N, 2) rows (row, col) or (N, 3) (z, row, col); got {arr.shape}"
        )
    return arr


_AXES = {2: "(row, col)", 3: "(z, row, col)"}


def _check_prompt_dims(name: str, n_coords: int, spatial: tuple[int, ...]) -> None:
    """A clear error when prompts ``name`` have ``n_coords`` coordinates but the image has another number
    of spatial axes (a 2D layer's points on a 3D stack, for one)."""
    ndim = len(spatial)
    if n_coords == ndim:
        return
    if ndim == 3:
        hint = (
            f"add the {name} on the stack (a layer with 3 dimensions, rows (z, row, col)), or segment one "
            "slice: image[z]"
        )
    else:
        hint = f"a 2D image takes rows (row, col): add the {name} on a 2D layer, or segment the whole stack"
    raise ValueError(
        f"{name} are {n_coords}D {_AXES.get(n_coords, '')} but the image is {ndim}D {spatial}; {hint}"
    )


def _merged_shapes(box: np.ndarray) -> list[tuple[int, int]]:
    """``(kept, dropped)`` pairs of identical boxes, numbered from 1 in the shapes' order."""
    first: dict[tuple[float, ...], int] = {}
    pairs: list[tuple[int, int]] = []
    for number, row in enumerate(box, 1):
        key = tuple(row.tolist())
        if key in first:
            pairs.append((first[key], number))
        else:
            first[key] = number
    return pairs


def _warn_merged_shapes(pairs: list[tuple[int, int]]) -> None:
    from .errors import DuplicateBoxesWarning

    if pairs:
        named = "; ".join(f"shapes {kept} and {dropped} are identical" for kept, dropped in pairs)
        merged = "merged into one object" if len(pairs) == 1 else "each pair merged into one object"
        warnings.warn(DuplicateBoxesWarning(f"boxes: {named}: {merged}", pairs), stacklevel=3)


def _spatial_shape(image: np.ndarray, rgb: bool) -> tuple[int, ...]:
    shape = image.shape[:-1] if rgb else image.shape
    if len(shape) not in (2, 3):
        raise ValueError(f"image must be 2D (Y, X), 3D (Z, Y, X) or RGB (Y, X, 3); got shape {image.shape}")
    return tuple(int(s) for s in shape)


def segment_from_prompts(
    image: ImageData,
    points: PointsData | None = None,
    negative_points: PointsData | None = None,
    boxes: ShapesData | None = None,
    model: str = "nano",
    device: str = "auto",
    object_size: ObjectSize = None,
) -> LabelsData:
    """Segment the objects marked by points and boxes; 3D stacks slice by slice.

    Parameters
    ----------
    image
        ``(Y, X)``, ``(Y, X, C)`` (C <= 4, e.g. RGB) or ``(Z, Y, X)`` array of any integer or float dtype.
    points
        ``(N, 2)`` ``(row, col)`` foreground points (``(N, 3)`` ``(z, row, col)`` for a stack): each point
        outside the boxes is an object; a point inside a box refines that box's object.
    negative_points
        Background points, same layout.
    boxes
        Shapes as napari gives them: a list of ``(V, 2)`` / ``(V, 3)`` vertex arrays; each shape's bounding
        rectangle is one object (on the slice of its vertices for a stack).
    model
        ``"nano"`` (shipped), ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or a weights file.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"``.
    object_size
        The objects' typical diameter in pixels: the image is scaled onto the model's canvas (and
        tiled) so that objects get the size the model segments best; ``"auto"``: the boxes' median
        size when there are boxes, else estimated from the image (each slice of a stack); ``"fixed"``:
        the image's longer side to the canvas; None (default): the model's choice (nano ``"auto"``,
        the official models ``"fixed"``). See :func:`napari_sam.segment`. Text is read too
        (``"20"``, ``""`` for None), as the widget gives it.

    Returns
    -------
    numpy.ndarray
        uint32 labels of the image's spatial shape; objects numbered from 1 (slice by slice; on each
        slice boxes first, then foreground points outside the boxes). Every prompted object keeps its
        number whether or not it gets pixels; one :class:`~napari_sam.errors.EmptyObjectsWarning`
        names those that got none (by that number, with their slice). A shape whose box is identical
        to an earlier one's on the same slice is merged into it (one
        :class:`~napari_sam.errors.DuplicateBoxesWarning` names both shapes, numbered from 1 in the
        layer's order); its label is left unused, as in :func:`napari_sam.segment`.

    Raises
    ------
    ValueError
        No points and no boxes; prompts with another number of coordinates than the image has spatial
        axes (2D points or shapes on a 3D stack, for one: the error names the argument, both dimensions
        and the fix).

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> from napari_sam.nodes import segment_from_prompts
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> rectangle = [[0, 55], [0, 94], [28, 94], [28, 55]]  # a Shapes layer's rectangle
    >>> labels = segment_from_prompts(image, points=[[74, 15]], boxes=[rectangle])
    >>> labels.shape, labels.dtype, int(labels.max())  # the box is object 1, the point object 2
    ((128, 128), dtype('uint32'), 2)
    """
    from .errors import DuplicateBoxesWarning

    size = _object_size(object_size)
    arr = np.asarray(image)
    rgb = arr.ndim in (3, 4) and arr.shape[-1] <= 4  # channels last, as segment() reads them
    spatial = _spatial_shape(arr, rgb)
    pos, neg = _checked_layer_points(points, negative_points, spatial)
    box = shapes_to_boxes(boxes)
    if pos is None and len(box) == 0:
        raise ValueError("segment_from_prompts needs points or boxes (got neither)")
    if len(box):
        _check_prompt_dims("boxes", box.shape[1] // 2, spatial)
    prompts = _node_prompts(pos, neg, box, spatial)
    _warn_merged_shapes(_merged_shapes(box))
    with warnings.catch_warnings():  # said above, in the shapes' own numbering
        warnings.simplefilter("ignore", DuplicateBoxesWarning)
        return _segment_prompts(arr, prompts, model, device, size)


def _checked_layer_points(
    points: PointsData | None, negative_points: PointsData | None, spatial: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The foreground and background points layers' data as ``(N, D)`` arrays (None when not given),
    each checked to have the image's ``D`` spatial axes."""
    pos = _layer_points(points, "points")
    neg = _layer_points(negative_points, "negative_points")
    for name, a in (("points", pos), ("negative_points", neg)):
        if a is not None:
            _check_prompt_dims(name, a.shape[1], spatial)
    return pos, neg


def _points_and_labels(
    pos: np.ndarray | None, neg: np.ndarray | None, spatial: tuple[int, ...]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Foreground and background points as one ``(N, D)`` array and their ``(N,)`` labels (1, 0); on a
    stack each point on its nearest slice (napari may place points between slices). ``(None, None)``
    without points."""
    layers = [(p, kind) for p, kind in ((pos, 1), (neg, 0)) if p is not None]
    if not layers:
        return None, None
    pts = np.concatenate([p for p, _ in layers])
    labels = np.concatenate([np.full(len(p), kind) for p, kind in layers])
    if len(spatial) == 3:
        pts = np.column_stack([np.round(pts[:, 0]), pts[:, 1:]])
    return pts, labels


def _node_prompts(
    pos: np.ndarray | None, neg: np.ndarray | None, box: np.ndarray, spatial: tuple[int, ...]
) -> "Prompts":
    """The layers' points (foreground, background) and boxes as one checked :class:`Prompts`; on a
    stack each prompt on its nearest slice (napari may place points between slices)."""
    from .engine.decode.prompts import normalize_prompts

    pts, labels = _points_and_labels(pos, neg, spatial)
    if len(spatial) == 3:
        on = sorted({int(z) for z in ([] if pts is None else pts[:, 0])} | {int(b[0]) for b in box})
        outside = [z for z in on if not 0 <= z < spatial[0]]
        if outside:
            raise ValueError(f"a prompt lies on slice {outside[0]}, outside the stack of {spatial[0]} slices")
    return normalize_prompts(
        points=pts, point_labels=labels, boxes=box if len(box) else None, spatial_shape=spatial
    )


def _segment_prompts(
    arr: np.ndarray, prompts: "Prompts", model: str, device: str, object_size: float | str | None
) -> np.ndarray:
    """:func:`segment_from_prompts` on checked prompts: a 2D image at once, a stack slice by slice
    (objects numbered on from slice to slice: on each, boxes first, then free foreground points).
    ``object_size="auto"`` with boxes is their median size (on a stack: of all boxes)."""
    from .api import segment_image
    from .engine.decode.objects import plan_objects, warn_empty_objects
    from .engine.embed.embeddings import compute_embeddings
    from .engine.embed.layout import image_layout
    from .engine.loading import load_model

    sam = load_model(model, device)
    size = _of_boxes(object_size, prompts.boxes)
    if prompts.points.shape[1] == 2:  # an image (gray or with channels)
        embeddings = compute_embeddings(arr, sam, object_size=size)
        return segment_image(image_layout(arr), prompts, sam, embeddings, "auto", 32, stacklevel=3)
    out = np.zeros(arr.shape[:3], dtype=np.uint32)
    numbered = 0  # objects of the slices before: a slice's object k is object numbered + k + 1
    empty: dict[int, int | None] = {}
    for z in prompts.slices:
        plane_prompts = prompts.on_slice(z)
        if not (plane_prompts.point_labels == 1).any() and not plane_prompts.has_boxes:
            continue
        emb = compute_embeddings(arr[z], sam, object_size=size)
        plane, plane_empty = _segment_plane(arr[z], plane_prompts, sam, emb)
        out[z] = np.where(plane > 0, plane + numbered, 0)
        empty.update((k + numbered, z) for k in plane_empty)
        numbered += len(plan_objects(plane_prompts))
    warn_empty_objects(empty, stacklevel=3)
    return out


def _of_boxes(object_size: float | str | None, boxes: np.ndarray) -> float | str | None:
    """``object_size`` for the embeddings: ``"auto"`` with ``(M, 4)`` or ``(M, 6)`` boxes is their median
    size (as :func:`napari_sam.segment` takes it), else ``object_size`` itself."""
    from .engine.object_scale import object_size_of_boxes

    if object_size != "auto" or not len(boxes):
        return object_size
    return object_size_of_boxes(boxes[:, [1, 2, 4, 5]] if boxes.shape[1] == 6 else boxes)


def _segment_plane(
    image: np.ndarray, prompts: "Prompts", sam: Any, embeddings: Any
) -> tuple[np.ndarray, tuple[int, ...]]:
    """:func:`napari_sam.segment` on one slice of a stack: its ``(Y, X)`` labels (object ``k`` of the
    slice is ``k + 1``) and the slice's objects that got no pixels, taken from its
    :class:`~napari_sam.errors.EmptyObjectsWarning` so that the caller names them by their number in
    the stack; other warnings pass on (duplicates are said by :func:`segment_from_prompts`)."""
    from .api import segment_image
    from .engine.decode.objects import collect_empty_objects
    from .engine.embed.layout import image_layout
    from .errors import DuplicateBoxesWarning

    with collect_empty_objects() as reports, warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateBoxesWarning)
        labels = segment_image(image_layout(image), prompts, sam, embeddings, "auto", 32)
    empty = tuple(k for report in reports for k in report.objects)
    return labels, empty


def segment_from_prompts_node(
    image: ImageData,
    points: PointsData | None = None,
    negative_points: PointsData | None = None,
    boxes: ShapesData | None = None,
    model: str = "nano",
    device: str = "auto",
    object_size: ObjectSize = None,
) -> LayerDataTuple:
    """:func:`segment_from_prompts` as the napari widget runs it: the labels as a layer-data tuple.

    (napari cannot map an unset optional layer input back to a layer when a function returns
    ``LabelsData``, so the widget returns the layer tuple itself.)

    Parameters
    ----------
    image, points, negative_points, boxes, model, device, object_size
        As in :func:`segment_from_prompts`.

    Returns
    -------
    tuple
        ``(labels, {"name": "SAM labels (node)"}, "labels")``: napari adds it as a Labels layer.

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> from napari_sam.nodes import segment_from_prompts_node
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> data, meta, kind = segment_from_prompts_node(image, points=[[74, 15]])
    >>> data.shape, meta["name"], kind
    ((128, 128), 'SAM labels (node)', 'labels')
    """
    labels = segment_from_prompts(
        image, points, negative_points, boxes, model=model, device=device, object_size=object_size
    )
    return (labels, {"name": "SAM labels (node)"}, "labels")


def refine_masks(
    image: ImageData,
    labels: LabelsData,
    points: PointsData | None = None,
    negative_points: PointsData | None = None,
    model: str = "nano",
    device: str = "auto",
    object_size: ObjectSize = None,
) -> LabelsData:
    """Refine labels from another tool (Cellpose, StarDist …): each label keeps its id; stacks slice by slice.

    Parameters
    ----------
    image
        ``(Y, X)``, ``(Y, X, C)`` or ``(Z, Y, X)`` array of any integer or float dtype.
    labels
        Integer labels of the image's spatial shape (0 background); not modified.
    points, negative_points
        Correction points, ``(N, 2)`` ``(row, col)`` (``(N, 3)`` ``(z, row, col)`` for a stack): a
        foreground point adds to the label nearest to it (the one under it, or on background the
        closest), a background point removes from the label under it.
    model, device, object_size
        As in :func:`segment_from_prompts`; ``object_size="auto"`` is the labels' median box size.

    Returns
    -------
    numpy.ndarray
        uint32 labels: each label's refined mask under its own id; labels too small to refine or whose
        refined mask is empty are kept as given (one :class:`~napari_sam.errors.RefineWarning`
        names them). See :func:`napari_sam.segment` (``masks=``).

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> from napari_sam.nodes import refine_masks
    >>> image, truth = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> refined = refine_masks(image, truth)
    >>> refined.shape, refined.dtype
    ((128, 128), dtype('uint32'))
    """
    from .api import segment

    size = _object_size(object_size)
    arr = np.asarray(image)
    spatial = _spatial_shape(arr, arr.ndim in (3, 4) and arr.shape[-1] <= 4)
    pts, kinds = _points_and_labels(*_checked_layer_points(points, negative_points, spatial), spatial)
    return segment(
        arr,
        points=pts,
        point_labels=kinds,
        masks=np.asarray(labels),
        model=model,
        device=device,
        object_size=size,
    )


def automatic_segmentation(
    image: ImageData,
    mode: Literal["auto", "ais", "apg", "amg"] = "auto",
    preset: Literal["auto", "nuclei", "official"] = "auto",
    points_per_side: int = 0,
    model: str = "nano",
    device: str = "auto",
    object_size: ObjectSize = None,
) -> LabelsData:
    """Segment every object without prompts; 3D stacks slice by slice.

    Parameters
    ----------
    image
        ``(Y, X)``, ``(Y, X, C)`` or ``(Z, Y, X)`` array of any integer or float dtype.
    mode
        ``"auto"``: the instance decoder's AIS when the model carries one, else the prompt grid (AMG);
        ``"ais"``, ``"apg"`` (decoder models only) or ``"amg"`` — see :func:`napari_sam.automatic`.
    preset
        AMG thresholds: ``"auto"`` (``"nuclei"`` for the shipped nano model, official otherwise),
        ``"nuclei"`` (tuned for nano on fluorescence nuclei) or ``"official"`` (Segment Anything's own).
        Other than ``"auto"`` it chooses AMG.
    points_per_side
        AMG's prompt grid: ``points_per_side²`` points per image (fewer is faster, may miss small
        objects); 0: the default (32). Other than 0 it chooses AMG.
    model, device
        As in :func:`segment_from_prompts`.
    object_size
        AIS / APG: the objects' diameter in pixels, ``"auto"`` (estimated from the image; for a stack,
        once from its middle slice), ``"fixed"`` or None (the model's choice), as in
        :func:`napari_sam.automatic`; AMG embeds the image whole by the fixed rule.

    Returns
    -------
    numpy.ndarray
        uint32 labels of the image's spatial shape (in a stack, labels continue from slice to slice).

    Examples
    --------
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> from napari_sam.nodes import automatic_segmentation
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> labels = automatic_segmentation(image, points_per_side=2)  # AMG, 4 prompts: fast, misses objects
    >>> labels.shape, labels.dtype
    ((128, 128), dtype('uint32'))
    """
    from .engine.automatic.front import automatic_labels
    from .engine.automatic.plan import AutomaticPlan
    from .engine.preprocess import Preprocessor

    size = _object_size(object_size)
    arr = np.asarray(image)
    rgb = arr.ndim in (3, 4) and arr.shape[-1] <= 4
    spatial = _spatial_shape(arr, rgb)
    if preset not in ("auto", "nuclei", "official"):
        raise ValueError(f"preset must be 'auto', 'nuclei' or 'official', got {preset!r}")
    if isinstance(points_per_side, bool) or not isinstance(points_per_side, int) or points_per_side < 0:
        raise ValueError(f"points_per_side must be an integer >= 0 (0: the default), got {points_per_side!r}")
    plan = AutomaticPlan.make(
        mode,
        None if preset == "official" else preset,
        model=model,
        amg_options={"points_per_side": points_per_side or None},
    )
    preprocessor = Preprocessor(object_size=size)
    return automatic_labels(arr, plan, preprocessor, stack=len(spatial) == 3, model=model, device=device)


def compute_embeddings_to_cache(
    image: ImageData,
    cache: Path = Path("embeddings.zarr"),
    model: str = "nano",
    device: str = "auto",
    overwrite: bool = False,
    object_size: ObjectSize = None,
) -> None:
    """Embed a 2D image or every slice of a stack into a zarr cache folder (resumable; reused later).

    Parameters
    ----------
    image
        ``(Y, X)``, ``(Y, X, 3)`` or ``(Z, Y, X)`` array.
    cache
        The cache folder (``*.zarr``); an existing cache of this image and model is completed, not redone.
    model, device
        As in :func:`segment_from_prompts`.
    overwrite
        Replace a cache made for another image or model instead of stopping with an error.
    object_size
        The objects' diameter in pixels, ``"auto"`` (estimated from the image, a stack's middle
        slice), ``"fixed"`` or None (the model's choice), as in :func:`napari_sam.compute_embeddings`;
        recorded in the cache (a cache made with another size is refused unless ``overwrite``).

    Returns
    -------
    None
        The embeddings are in ``cache``; :func:`napari_sam.open_embeddings` reads them back, and
        ``compute_embeddings(image, cache=...)`` / ``segment(image, ..., cache=...)`` reuse them.

    Examples
    --------
    >>> import tempfile
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> from napari_sam.nodes import compute_embeddings_to_cache
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     compute_embeddings_to_cache(image, cache=f"{tmp}/image.zarr")
    ...     emb = ns.open_embeddings(f"{tmp}/image.zarr")
    >>> emb.original_size
    (128, 128)
    """
    from .engine.embed.embeddings import compute_embeddings

    size = _object_size(object_size)
    compute_embeddings(image, model, device=device, cache=Path(cache), overwrite=overwrite, object_size=size)
