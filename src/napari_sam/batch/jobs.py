"""The two batches of the CLI: embed images into caches (:class:`EmbedJob`, :func:`embed_files`) and
segment images from prompt tables (:class:`SegmentJob`, :func:`segment_files`).

A job is a picklable dataclass called once per :class:`~.runner.BatchItem` by :func:`~.runner.run_batch`
(in this process, or by a dask worker).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.types import AUTOMATIC_MODES
from ..errors import EmptyObjectsWarning, UsageError
from ..io import image_name, is_ome_zarr, read_image
from .inputs import (
    check_output_folder,
    expand_inputs,
    input_conflicts,
    refuse_folder_in_inputs,
    refuse_inputs,
)
from .outputs import as_json, foreign_output, input_fingerprint, outdated_output, write_output
from .prompt_table import PromptTable, read_prompts_csv
from .runner import UNPROMPTED, BatchItem, BatchSummary, Done, ProgressFn, run_batch

if TYPE_CHECKING:
    from ..engine.types import Precision

__all__ = [
    "CACHE_SUFFIX",
    "EmbedJob",
    "SegmentJob",
    "cache_path",
    "embed_files",
    "model_identity",
    "prompts_digest",
    "segment_files",
]

#: The name ending of an image's embedding cache in a cache folder (:func:`cache_path`).
CACHE_SUFFIX = ".embeddings.zarr"


def _channel(channel: int | Sequence[int] | None) -> int | tuple[int, ...] | None:
    """``channel=`` as a job holds it: None, one channel number, or a tuple of 1 to 3 (mapped to RGB)."""
    if channel is None or isinstance(channel, (int, np.integer)):
        return None if channel is None else int(channel)
    picks = tuple(int(c) for c in channel)
    if not 1 <= len(picks) <= 3:
        raise UsageError(f"channel must name 1 to 3 channels, got {channel!r}")
    return picks


def _object_size(value: Any) -> float | str | None:
    """``object_size=`` checked (a :class:`UsageError` naming it), as a job holds it."""
    from ..engine.types import check_object_size

    try:
        return check_object_size(value)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cache_path(folder: str | os.PathLike[str], source: str | os.PathLike[str]) -> Path:
    """The embedding cache of image ``source`` inside ``folder``: ``folder/<name>.embeddings.zarr``."""
    return Path(folder) / f"{image_name(source)}{CACHE_SUFFIX}"


@dataclass(frozen=True)
class EmbedJob:
    """Embed one image into its cache (resuming a half-done cache); see :func:`embed_files`."""

    model: str = "nano"
    device: str = "auto"
    channel: int | tuple[int, ...] | None = None
    tile: Any = None
    batch_size: int = 1
    precision: Precision = "auto"
    overwrite: bool = False
    slices_per_task: int = 0
    #: ``object_size=`` of :func:`napari_sam.compute_embeddings`: pixels across, "auto", "fixed" or None.
    object_size: float | str | None = None
    slices: tuple[int, ...] | None = None
    #: ``{output: how}``: items whose cache path is, lies in or holds an input (never written).
    conflicts: Mapping[str, str] = field(default_factory=dict)

    def split(self, item: BatchItem) -> list[EmbedJob]:
        """On a cluster: a stack is embedded in parts of ``slices_per_task`` slices (0: whole files).

        The first part creates (or, with ``overwrite``, replaces) the cache; the others only add
        their slices to it, so they run after it, side by side.
        """
        if self.slices_per_task <= 0:
            return [self]
        from ..engine.embed.layout import image_layout

        layout = image_layout(read_image(item.source), channel=self.channel)
        n, k = layout.n_slices, self.slices_per_task
        if not layout.is_volume or n <= k:
            return [self]
        return [
            replace(
                self,
                slices=tuple(range(a, min(a + k, n))),
                slices_per_task=0,
                overwrite=self.overwrite and a == 0,
            )
            for a in range(0, n, k)
        ]

    def __call__(self, item: BatchItem, progress: ProgressFn | None = None) -> str:
        from ..engine.embed.embeddings import compute_embeddings
        from ..engine.embed.store import is_embedding_store, open_store

        refuse_inputs(item, self.conflicts)
        was_complete = (
            not self.overwrite and is_embedding_store(item.output) and open_store(item.output).is_complete
        )
        image = read_image(item.source)
        compute_embeddings(
            image,
            self.model,
            device=self.device,
            channel=self.channel,
            cache=item.output,
            overwrite=self.overwrite,
            batch_size=self.batch_size,
            tile=self.tile,
            precision=self.precision,
            object_size=self.object_size,
            slices=list(self.slices) if self.slices is not None else None,
            progress=progress if progress is not None else False,
        )
        return "skipped" if was_complete else "ok"


def embed_files(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    model: str = "nano",
    device: str = "auto",
    channel: int | Sequence[int] | None = None,
    tile: Any = None,
    batch_size: int = 1,
    precision: Precision = "auto",
    overwrite: bool = False,
    scheduler: Any = None,
    slices_per_task: int = 0,
    progress: bool = True,
    object_size: float | str | None = None,
) -> BatchSummary:
    """Embed images into one cache each, ``out/<name>.embeddings.zarr``, resuming half-done caches.

    Parameters
    ----------
    inputs
        Image files and folders of images (see :func:`napari_sam.io.find_images`), or one path. An
        input named twice is embedded once; labels napari-sam wrote (files with a record) are left
        out, with a note.
    out
        Folder of the caches (created; not inside an input).
    model, device, channel, tile, batch_size, precision, object_size
        As in :func:`napari_sam.compute_embeddings` (``channel``: the channel, or up to three mapped to
        RGB, of multi-channel images; ``object_size``: the objects' diameter in pixels, ``"auto"``,
        ``"fixed"`` or None for the model's choice, recorded in each cache).
    overwrite
        Recompute caches from scratch (also caches made with another model or preprocessing, which
        are otherwise an error for that item).
    scheduler, progress
        See :func:`run_batch`.
    slices_per_task
        With a ``scheduler``: embed stacks in tasks of this many slices, spread over the workers
        (0, the default: one task per file). Without a scheduler it has no effect.

    Returns
    -------
    BatchSummary
        A complete, still valid cache counts as skipped.

    Raises
    ------
    UsageError
        Missing inputs, two inputs with the same name, an output folder that cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> import tifffile
    >>> from napari_sam.batch import embed_files
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tifffile.imwrite(f"{tmp}/cells.tif", nuclei_2d((128, 128), n_objects=4, seed=0)[0])
    ...     print(embed_files([tmp], f"{tmp}/cache", progress=False).text())
    ...     print(embed_files([tmp], f"{tmp}/cache", progress=False).text())  # again: nothing to do
    1 done, 0 skipped (already done), 0 failed
    0 done, 1 skipped (already done), 0 failed
    """
    if (
        isinstance(slices_per_task, bool)
        or not isinstance(slices_per_task, (int, np.integer))
        or slices_per_task < 0
    ):
        raise UsageError(f"slices_per_task must be an integer >= 0, got {slices_per_task!r}")
    size = _object_size(object_size)
    sources = expand_inputs(inputs)
    folder = check_output_folder(Path(out).expanduser(), "output", sources)
    items = [BatchItem(source, cache_path(folder, source)) for source in sources]
    job = EmbedJob(
        conflicts=input_conflicts(items, sources),
        model=str(model),
        device=str(device),
        channel=_channel(channel),
        tile=tile,
        batch_size=batch_size,
        precision=precision,
        overwrite=overwrite,
        slices_per_task=int(slices_per_task),
        object_size=size,
    )
    return run_batch(items, job, is_done=None, scheduler=scheduler, progress=progress, desc="embed")


def prompts_digest(prompts: Mapping[str, Any]) -> str | None:
    """sha256 of one file's prompts (the keyword arrays of :func:`napari_sam.segment`), or None for none.

    The exact values count (as float64, in their order: it numbers the objects); how the table
    wrote them (``20`` or ``20.0``, separators) does not.
    """
    if not prompts:
        return None
    digest = hashlib.sha256()
    for key in sorted(prompts):
        values = np.ascontiguousarray(prompts[key], dtype="<f8")
        digest.update(f"{key}{values.shape}".encode())
        digest.update(values.tobytes())
    return digest.hexdigest()


def model_identity(model: str | os.PathLike[str]) -> dict[str, str | None]:
    """How the labels' model is recorded: ``{"model": name or weights path, "weights_sha256": …}``.

    A registered name gives its published (or shipped) sha256 — micro-sam's models their published
    xxh128 as ``weights_hash`` (``"xxh128:…"``) —, a weights file its own (remembered by path, size and
    modification time, see :func:`napari_sam.model.registry.remembered_sha256`); two records name the
    same model when their hashes agree. Nothing is downloaded.
    """
    from ..model.registry import NANO_SHA256, OFFICIAL_WEIGHTS, remembered_sha256
    from ..model.zoo import ZOO_MODELS

    name = str(model)
    if name == "nano":
        return {"model": name, "weights_sha256": NANO_SHA256}
    if name in OFFICIAL_WEIGHTS:
        return {"model": name, "weights_sha256": OFFICIAL_WEIGHTS[name].sha256}
    if name in ZOO_MODELS:  # micro-sam publishes xxh128, not sha256: recorded as its publisher states it
        return {"model": name, "weights_sha256": None, "weights_hash": ZOO_MODELS[name].weights.known_hash}
    path = Path(name).expanduser()
    if path.is_file():
        try:
            return {"model": str(path.resolve()), "weights_sha256": remembered_sha256(path)}
        except OSError:
            pass
    return {"model": name, "weights_sha256": None}


@dataclass(frozen=True)
class SegmentJob:
    """Segment one image from its prompts and write its labels; see :func:`segment_files`."""

    prompts: Mapping[str, Mapping[str, np.ndarray]]  # source path (str) → segment() prompt keywords
    model: str = "nano"
    device: str = "auto"
    channel: int | tuple[int, ...] | None = None
    cache_dir: str | None = None
    overwrite: bool = False
    propagate: bool = True
    #: ``{output: how}``: items whose labels path is, lies in or holds an input (never written).
    conflicts: Mapping[str, str] = field(default_factory=dict)
    #: The model as recorded: ``model`` and ``weights_sha256`` (see :func:`model_identity`).
    model_id: Mapping[str, Any] = field(default_factory=dict)
    #: Without prompts: ``"auto"``, ``"ais"``, ``"apg"`` or ``"amg"`` (see :func:`napari_sam.automatic`).
    automatic_mode: str = "auto"
    #: ``object_size=`` of :func:`napari_sam.segment`: pixels across, "auto", "fixed" or None.
    object_size: float | str | None = None
    #: ``precision=`` of :func:`napari_sam.segment` (with a SAM 2 model: the tracking arithmetic).
    precision: str = "auto"

    def ran_mode(self) -> str:
        """The automatic mode that runs: the one asked for, or what ``"auto"`` settles on for the model
        (loaded for that, and kept loaded for the segmentation): AIS with an instance decoder, else AMG."""
        if self.automatic_mode != "auto":
            return self.automatic_mode
        from ..engine.automatic.plan import AutomaticPlan
        from ..engine.loading import load_model

        plan = AutomaticPlan.make("auto", "auto", model=self.model)
        return plan.mode_for(load_model(self.model, self.device))

    def request(self, item: BatchItem, prompts: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """What is asked of ``item``, as recorded with its labels and compared on a rerun.

        ``mode`` (boxes, points or auto), ``prompts_sha256`` (the exact prompt values of this file
        after reading the table), the model, ``propagate``, ``channel``, ``object_size`` (as given:
        None for the model's choice), ``precision`` (when not ``"auto"``: records made before it
        existed stay valid) and ``format``; without
        prompts also ``automatic_mode``, the mode that runs (``"ais"``, ``"apg"`` or ``"amg"``,
        :meth:`ran_mode`), so that labels of one mode are never taken for another's.
        """
        mode = "boxes" if "boxes" in prompts else "points" if "points" in prompts else "auto"
        automatic = {"automatic_mode": self.ran_mode()} if mode == "auto" else {}
        return as_json(
            {
                "mode": mode,
                **automatic,
                "prompts_sha256": prompts_digest(prompts),
                "model": self.model_id.get("model", self.model),
                "weights_sha256": self.model_id.get("weights_sha256"),
                "propagate": self.propagate,
                "channel": self.channel,
                "object_size": self.object_size,
                **({"precision": self.precision} if self.precision != "auto" else {}),
                "format": item.output.suffix.lstrip(".").lower(),
            }
        )

    def __call__(self, item: BatchItem, progress: ProgressFn | None = None) -> str | Done:
        prompts = dict(self.prompts.get(str(item.source), {}))
        if prompts and all(len(v) == 0 for v in prompts.values()):
            return UNPROMPTED  # no row of the table names this file: nothing to segment, not a failure
        refuse_inputs(item, self.conflicts)
        request = self.request(item, prompts)
        if (item.output.exists() or item.output.is_symlink()) and self._done(item, request):
            return "skipped"
        fingerprint = input_fingerprint(item.source)  # before reading: a change meanwhile shows next time
        image = read_image(item.source)
        if prompts:
            _check_prompt_dims(item.source, image, prompts, self.channel)
        options: dict[str, Any] = {}
        if self.cache_dir is not None:
            options["cache"] = cache_path(self.cache_dir, item.source)
        if not prompts:
            options["mode"] = request["automatic_mode"]  # the mode recorded is the mode that runs
        labels, empty = self._segment(image, prompts, options)
        like = item.source if is_ome_zarr(item.source) else None
        details = {"input_fingerprint": fingerprint, "request": request}
        write_output(item, labels, like=like, details=details)
        return Done(empty=_empty_text(empty)) if empty else "ok"

    def _done(self, item: BatchItem, request: Mapping[str, Any]) -> bool:
        """Whether the existing ``item.output`` is done: True to skip it, False to (re)do it.

        Raises
        ------
        FileExistsError
            Without ``overwrite``: it is not labels napari-sam made for this input, or they were made
            another way (other prompts, model … or another version of the input); it is kept.
        """
        if self.overwrite:
            return False
        problem = foreign_output(item)
        if problem is not None:
            raise FileExistsError(
                f"{problem}; it is kept: pass --overwrite (overwrite=True) to replace it, or choose "
                "another output folder"
            )
        outdated = outdated_output(item, request)
        if outdated is not None:
            raise FileExistsError(
                f"{outdated}; they are kept: pass --overwrite (overwrite=True) to redo them"
            )
        return True

    def _segment(
        self, image: Any, prompts: Mapping[str, np.ndarray], options: Mapping[str, Any]
    ) -> tuple[np.ndarray, list[EmptyObjectsWarning]]:
        """:func:`napari_sam.segment` and the :class:`EmptyObjectsWarning` it gave (reported per
        file instead, gathered for this thread only); its other warnings go on as usual."""
        from ..api import segment
        from ..engine.decode.objects import collect_empty_objects

        with collect_empty_objects() as empty:
            labels = segment(
                image,
                points=prompts.get("points"),
                point_labels=prompts.get("point_labels"),
                boxes=prompts.get("boxes"),
                model=self.model,
                device=self.device,
                channel=self.channel,
                propagate=self.propagate,
                object_size=self.object_size,
                precision=self.precision,
                **options,
            )
        return labels, empty


def _empty_text(found: Sequence[EmptyObjectsWarning]) -> str:
    """``"object 4 empty"``, ``"objects 4 (slice 2), 7 (slice 5) empty"``: the objects without pixels."""
    pairs = sorted({(k, z) for w in found for k, z in zip(w.objects, w.slices, strict=True)})
    names = [str(k) if z is None else f"{k} (slice {z})" for k, z in pairs]
    return f"object{'s' if len(names) != 1 else ''} {', '.join(names)} empty"


def _check_prompt_dims(
    source: Path, image: Any, prompts: Mapping[str, np.ndarray], channel: int | tuple[int, ...] | None
) -> None:
    """Stacks need prompts with a slice (``z``) column, 2D images prompts without."""
    from ..engine.embed.layout import image_layout

    values = prompts["boxes"] if "boxes" in prompts else prompts["points"]
    has_z = values.shape[1] in (3, 6)
    is_volume = image_layout(image, channel=channel).is_volume
    if is_volume and not has_z:
        raise ValueError(
            f"{source.name} is a 3D stack of shape {tuple(image.shape)}: its CSV needs a z column (the "
            "slice of each prompt), or min_z and max_z for boxes"
        )
    if has_z and not is_volume:
        raise ValueError(
            f"{source.name} is a 2D image of shape {tuple(image.shape)}: its CSV must not have a z column"
        )


def _check_single_image_table(table: PromptTable, sources: Sequence[Path]) -> None:
    """A napari export without a 'file' column names no file: it prompts a run of one image only."""
    if table.napari_export and len(sources) > 1:
        raise UsageError(
            f"{table.path} is a napari {table.napari_layer}-layer export without a 'file' column, so it "
            f"prompts one image, but {len(sources)} inputs were given; segment them one at a time, or "
            "add a 'file' column naming each row's image"
        )


def _few(names: Sequence[str], at_most: int = 5) -> str:
    """``"a, b, c"``, or the first ``at_most`` names and ``…``."""
    return ", ".join(names[:at_most]) + (" …" if len(names) > at_most else "")


def _check_table_names_an_input(
    table: PromptTable, matched: Mapping[Path, np.ndarray], sources: Sequence[Path]
) -> None:
    """A table with a file column none of whose rows names an input is a usage error (a typo, most
    likely: everything would be "skipped (no prompts)")."""
    if None in table.rows or any(len(values) for values in matched.values()):
        return
    raise UsageError(
        f"{table.path} names none of the inputs: its files are {_few([str(k) for k in table.rows])}; "
        f"the inputs are {_few([s.name for s in sources])}. Names are matched exactly (case too): "
        "the file name (cells.tif), the name without suffix (cells) or the path"
    )


def _labels_path(folder: Path, source: Path, fmt: str | None) -> Path:
    if fmt is None:
        fmt = "zarr" if source.suffix.lower() == ".zarr" or source.is_dir() else "tif"
    if fmt not in ("tif", "zarr"):
        raise UsageError(f"format must be 'tif' or 'zarr', got {fmt!r}")
    return folder / f"{image_name(source)}_labels.{fmt}"


def segment_files(
    inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    boxes: PromptTable | str | os.PathLike[str] | None = None,
    points: PromptTable | str | os.PathLike[str] | None = None,
    auto: bool = False,
    mode: str = "auto",
    format: str | None = None,
    cache: str | os.PathLike[str] | None = None,
    model: str = "nano",
    device: str = "auto",
    channel: int | Sequence[int] | None = None,
    overwrite: bool = False,
    scheduler: Any = None,
    progress: bool = True,
    propagate: bool = True,
    object_size: float | str | None = None,
    precision: str = "auto",
) -> BatchSummary:
    """Segment images from prompt tables (or automatically) and write ``out/<name>_labels.<format>``.

    Parameters
    ----------
    inputs
        Image files and folders of images, or one path. An input named twice (or by its folder and
        by name) is segmented once. Labels napari-sam wrote (files with a record) are not inputs: a
        folder scan leaves them out, and those named one by one are left out with a note.
    out
        Folder of the labels (created; not inside an input). Beside each labels file goes a record,
        ``<labels>.napari-sam.json``, naming its input and how they were made (the input's
        fingerprint, :func:`input_fingerprint`; the request, :meth:`SegmentJob.request`). Labels
        whose record names this input, unchanged since and made from the same version of it with
        the same prompts, mode, model, ``propagate``, ``channel`` and format are skipped (already
        done) unless ``overwrite``; labels made another way, and any other file at a labels path,
        fail that item with a line saying why unless ``overwrite``. A labels path that is one of
        the inputs, lies inside one or holds one is never written. ``out`` may be the input folder.
    boxes, points
        Prompt tables (paths of CSV files, see ``CSV_HELP``, or :class:`PromptTable`); one of them,
        or ``auto=True``. A table with a file column that names none of the inputs is a
        :class:`UsageError`.
    auto
        Automatic segmentation: :func:`napari_sam.segment` without prompts.
    mode
        With ``auto``: ``"auto"`` (the instance decoder's AIS when the model carries one, else the
        prompt grid, AMG), ``"ais"``, ``"apg"`` or ``"amg"``; see :func:`napari_sam.automatic`. The
        mode that ran is recorded, and labels made in another mode are not taken as done.
    format
        ``"tif"`` or ``"zarr"``; default zarr for zarr inputs, tif otherwise. Labels of an OME-Zarr
        input in zarr format are an OME-Zarr label image with the input's axes and scale.
    cache
        Folder of embedding caches (as made by :func:`embed_files`), reused and completed per image
        (not inside an input).
    model, device, channel
        As in :func:`napari_sam.segment`; use the ``channel`` the caches were made with.
    overwrite
        Redo every item and replace what is at its labels path (never an input).
    scheduler, progress
        See :func:`run_batch`.
    propagate
        3D stacks, as in :func:`napari_sam.segment`: prompts are propagated through the stack (False:
        the prompted slices only); without prompts, the slices' objects are linked into 3D objects.
    object_size
        As in :func:`napari_sam.segment`: the objects' diameter in pixels, ``"auto"`` (the boxes'
        median size with ``boxes``, else estimated from the image), ``"fixed"`` or None (the model's
        choice). Recorded with the labels (labels made with another size are not taken as done); with
        ``cache``, give the size the caches were made with.
    precision
        As in :func:`napari_sam.segment`: the encoder's arithmetic (``"auto"``, ``"fp32"``, ``"bf16"``,
        ``"fp16"``); with a SAM 2 model the tracking's (``"bf16"``: bfloat16, else float32). Recorded
        with the labels when not ``"auto"``.

    Returns
    -------
    BatchSummary
        Names of the items done, skipped (their labels were done) and failed (with the reason);
        ``summary.text()`` reports them, ``summary.exit_code`` is 1 when any failed.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import tifffile
    >>> from napari_sam.batch import segment_files
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tifffile.imwrite(f"{tmp}/cells.tif", nuclei_2d((128, 128), n_objects=4, seed=0)[0])
    ...     with open(f"{tmp}/boxes.csv", "w") as table:  # one box on cells.tif
    ...         print("file,min_row,min_col,max_row,max_col", file=table)
    ...         print("cells.tif,0,55,29,95", file=table)
    ...     summary = segment_files([tmp], f"{tmp}/labels", boxes=f"{tmp}/boxes.csv", progress=False)
    ...     print(summary.text())
    ...     print(sorted(path.name for path in Path(f"{tmp}/labels").iterdir()))
    1 done, 0 skipped (already done), 0 failed
    ['cells_labels.tif', 'cells_labels.tif.napari-sam.json']
    """
    chosen = [boxes is not None, points is not None, bool(auto)]
    if sum(chosen) != 1:
        raise UsageError("give exactly one of boxes=, points= or auto=True")
    if mode not in AUTOMATIC_MODES:
        raise UsageError(f"mode must be one of {', '.join(AUTOMATIC_MODES)}, got {mode!r}")
    if mode != "auto" and not auto:
        raise UsageError(f"mode={mode!r} applies to automatic segmentation (auto=True), not to prompt tables")
    if format is not None and format not in ("tif", "zarr"):
        raise UsageError(f"format must be 'tif' or 'zarr', got {format!r}")
    size = _object_size(object_size)
    sources = expand_inputs(inputs)
    prompts: dict[str, dict[str, np.ndarray]] = {str(s): {} for s in sources}
    table = boxes if boxes is not None else points
    if table is not None:
        if not isinstance(table, PromptTable):
            table = read_prompts_csv(table, "boxes" if boxes is not None else "points")
        _check_single_image_table(table, sources)
        matched, unmatched = table.match(sources)
        _check_table_names_an_input(table, matched, sources)
        if unmatched:
            names = ", ".join(unmatched[:5]) + (" …" if len(unmatched) > 5 else "")
            warnings.warn(f"{table.path} names files that are not among the inputs: {names}", stacklevel=2)
        for source, values in matched.items():
            prompts[str(source)] = table.prompts(values)
    if cache is not None:
        refuse_folder_in_inputs(Path(cache).expanduser(), sources, "cache")
    folder = check_output_folder(Path(out).expanduser(), "output", sources)
    cache_dir = None
    if cache is not None:
        cache_dir = str(check_output_folder(Path(cache).expanduser(), "cache", sources))
    items = [BatchItem(source, _labels_path(folder, source, format)) for source in sources]
    job = SegmentJob(
        conflicts=input_conflicts(items, sources),
        prompts=prompts,
        model=str(model),
        device=str(device),
        channel=_channel(channel),
        cache_dir=cache_dir,
        overwrite=overwrite,
        propagate=bool(propagate),
        model_id=model_identity(model),
        automatic_mode=mode,
        object_size=size,
        precision=precision,
    )
    return run_batch(items, job, is_done=None, scheduler=scheduler, progress=progress, desc="segment")
