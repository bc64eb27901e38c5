"""SAM 2 frame features: each frame of a stack encoded once, kept in a zarr store, read back on demand.

SAM 2 sees a frame as its official video predictor prepares it: the frame on the 0–255 scale (our
percentile normalisation for microscopy dtypes, a uint8 RGB frame as it is:
:class:`~napari_sam.engine.preprocess.Preprocessor`) resized to the square ``image_size`` canvas —
both sides, no aspect kept, no padding — with Pillow's
bicubic filter (the default of ``Image.resize`` that ``sam2.utils.misc`` uses), divided by 255 and
normalised with the ImageNet mean / std. A uint8 RGB frame takes exactly the official path.

:class:`Sam2Frames` is the feature source of :class:`~napari_sam.model.sam2.tracking.Sam2Tracker`:
``frames(z)`` gives frame ``z``'s :class:`~napari_sam.model.sam2.sam2.FrameFeatures`, computed on first
use and written to the store when there is one, else kept for the last ``keep`` frames only — so a
propagation holds a bounded number of frames whatever the stack's length.

Store layout (zarr v3, one folder; root attributes under :data:`SAM2_FRAMES_KEY`)::

    frames.zarr/
      zarr.json      {"format": "sam2-frames/1", "library_version", "model": {name, weights_sha256,
                      image_size}, "preprocessing": {...}, "image": {shape, dtype, n_frames, frame_shape},
                      "cache_dtype", "feature_shapes": {image_embed, high_res_0, high_res_1}}
      image_embed/   (Z, C, h, w)        the coarsest level (C = d_model, h = image_size / 16)
      high_res_0/    (Z, C/8, 4h, 4w)    the finer levels, already projected by the mask decoder
      high_res_1/    (Z, C/4, 2h, 2w)
      frame_hash/    (Z,) uint64         blake2b of each input frame (bytes, shape, dtype)
      done/          (Z,) bool           set last, after the frame's features and hash

Features are float16 by default (``cache_dtype="float32"`` keeps them exact); the position encoding
of ``image_embed`` has no weights and is recomputed. Writing is per frame: an interrupted run resumes
where it stopped, a frame whose content hash changed is recomputed. A store of another model,
preprocessing or image is a :class:`~napari_sam.errors.CacheMismatchError` (unless ``overwrite``), and
so is a SAM 1 embedding cache given for a SAM 2 model.

Several processes may use one store (the SAM 1 cache's advisory locks, :mod:`.store_locks`): creating
or replacing it (``overwrite``) holds ``.napari_sam.lock`` exclusively, and each frame is written under
a shared hold of it, so a replacement never interleaves with a frame being written; a writer checks the
root record under that hold and refuses (:class:`~napari_sam.errors.CacheMismatchError`) a store that
another process replaced with other parameters. Two processes writing the same frame write the same
features (frames are keyed by their content).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._version import __version__
from ...errors import CacheMismatchError, MissingSliceError
from ...model.sam2.sam2 import PIXEL_MEAN, PIXEL_STD, FrameFeatures, Sam2
from ..lru import LRU
from ..preprocess import Preprocessor
from ..types import ImageLayout
from .layout import image_layout, read_slice
from .store_layout import ATTRS_KEY as SAM1_ATTRS_KEY
from .store_layout import SAM2_FRAMES_KEY, slice_hash
from .store_locks import LOCK_FILE, resolve_lock_timeout, store_lock

__all__ = [
    "FRAMES_FORMAT",
    "SAM2_FRAMES_KEY",
    "Sam2FrameStore",
    "Sam2Frames",
    "iter_compute_frames",
    "open_frames",
    "sam2_frame_input",
    "sam2_weights_id",
]

#: The format a SAM 2 frame store holds (its root-attribute key is ``SAM2_FRAMES_KEY``).
FRAMES_FORMAT = "sam2-frames/1"
#: The feature arrays of a store, in :class:`FrameFeatures` order (the position encoding is recomputed).
FEATURE_ARRAYS = ("image_embed", "high_res_0", "high_res_1")
CACHE_DTYPES = ("float16", "float32")


def sam2_frame_input(scaled: np.ndarray, image_size: int) -> torch.Tensor:
    """A frame on the 0–255 scale → SAM 2's ``(1, 3, S, S)`` float32 input (``S = image_size``).

    Parameters
    ----------
    scaled
        ``(H, W, 1|3)``: uint8 RGB (resized as one Pillow RGB image: the official path) or float32
        (resized channel by channel in Pillow's float mode); one channel is repeated to three.

    Returns
    -------
    torch.Tensor
        The frame resized to ``(S, S)`` (Pillow bicubic), divided by 255, minus :data:`PIXEL_MEAN`,
        over :data:`PIXEL_STD`.
    """
    from PIL import Image

    if scaled.ndim != 3 or scaled.shape[-1] not in (1, 3):
        raise ValueError(f"expected an (H, W, 1|3) frame, got shape {scaled.shape}")
    size = (image_size, image_size)
    if scaled.dtype == np.uint8 and scaled.shape[-1] == 3:
        resized = np.asarray(Image.fromarray(scaled).resize(size, Image.Resampling.BICUBIC))
    else:
        planes = [
            np.asarray(
                Image.fromarray(np.ascontiguousarray(scaled[..., c], dtype=np.float32)).resize(
                    size, Image.Resampling.BICUBIC
                )
            )
            for c in range(scaled.shape[-1])
        ]
        resized = np.stack(planes, axis=-1)
    x = torch.from_numpy(resized.astype(np.float64) / 255.0).to(torch.float32).permute(2, 0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(PIXEL_STD, dtype=torch.float32)[:, None, None]
    return ((x - mean) / std)[None].contiguous()


def sam2_weights_id(model: Sam2) -> str:
    """The sha256 of the weights file ``model`` was loaded from, else a fingerprint of its tensors
    (recorded on the model, as :func:`~napari_sam.engine.loading.model_weights_id` does)."""
    if model.weights_sha256 is None:
        from ...model.checkpoint import weights_fingerprint
        from ...model.identity import state_tensors

        model.weights_sha256 = weights_fingerprint(state_tensors(model))
    return model.weights_sha256


def _model_device(model: Sam2) -> torch.device:
    return model.no_mem_embed.device


def _feature_shapes(model: Sam2) -> dict[str, list[int]]:
    c, grid = model.config.d_model, model.config.embedding_size
    return {
        "image_embed": [c, grid, grid],
        "high_res_0": [c // 8, 4 * grid, 4 * grid],
        "high_res_1": [c // 4, 2 * grid, 2 * grid],
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _root_attrs(folder: Path) -> dict[str, Any] | None:
    """The root attributes of the zarr group at ``folder`` (None: no readable group there)."""
    try:
        doc = json.loads((folder / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attrs = doc.get("attributes") if isinstance(doc, dict) else None
    return attrs if isinstance(attrs, dict) else None


class Sam2FrameStore:
    """A SAM 2 frame store on disk (see the module's description); made by :meth:`open_or_create`.

    Attributes
    ----------
    folder
        The store's folder.
    meta
        Its root record.
    """

    def __init__(self, folder: Path, group: Any, meta: dict[str, Any]) -> None:
        self.folder, self._group, self.meta = folder, group, meta
        self._arrays = {name: group[name] for name in (*FEATURE_ARRAYS, "frame_hash", "done")}

    @property
    def n_frames(self) -> int:
        return int(self.meta["image"]["n_frames"])

    @classmethod
    def open_or_create(
        cls, path: str | Path, meta: dict[str, Any], *, overwrite: bool = False
    ) -> Sam2FrameStore:
        """Open the store at ``path`` when it was made for ``meta``, else create it.

        Raises
        ------
        CacheMismatchError
            ``path`` holds a SAM 1 embedding cache, or a frame store of another model, preprocessing,
            image or feature dtype (and not ``overwrite``).
        FileExistsError
            ``path`` holds something else that is not a frame store (never deleted).
        """
        folder = Path(path).expanduser()
        wanted = _jsonable({**meta, "format": FRAMES_FORMAT, "library_version": __version__})
        have = _frames_record(folder, meta)
        if have is not None and not overwrite:
            return cls._reuse(folder, have, wanted)
        _refuse_foreign(folder, have)
        folder.mkdir(parents=True, exist_ok=True)
        lock = store_lock(folder, shared=False, timeout=resolve_lock_timeout(None))  # acquired
        try:
            have = _frames_record(folder, meta)  # again: another process may have made it meanwhile
            if have is not None and not overwrite:
                return cls._reuse(folder, have, wanted)
            _refuse_foreign(folder, have, locked=True)
            # overwrite, or the remains of a killed creation: only what a store makes is removed
            (folder / "zarr.json").unlink(missing_ok=True)
            for name in _STORE_ENTRIES:
                shutil.rmtree(folder / name, ignore_errors=True)
            return cls(folder, _create_arrays(folder, wanted), wanted)
        finally:
            lock.release()

    @classmethod
    def _reuse(cls, folder: Path, have: dict[str, Any], wanted: dict[str, Any]) -> Sam2FrameStore:
        """The store at ``folder`` (root record ``have``) when it was made for ``wanted``."""
        import zarr

        problems = _differences(have, wanted)
        if problems:
            raise CacheMismatchError(
                f"the SAM 2 frame store at cache={str(folder)!r} was made for something else: "
                f"{'; '.join(problems)}; pass overwrite=True to recompute it, or another cache folder"
            )
        group = zarr.open_group(str(folder), mode="r+", zarr_format=3)
        return cls(folder, group, have)

    def done(self) -> np.ndarray:
        """``(Z,)`` bool: the frames written."""
        return np.asarray(self._arrays["done"][:], dtype=bool)

    def is_done(self, z: int) -> bool:
        return bool(self._arrays["done"][z])

    def stored_hash(self, z: int) -> int:
        return int(self._arrays["frame_hash"][z])

    def read(self, z: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Frame ``z``'s ``image_embed``, ``high_res_0``, ``high_res_1`` as ``(1, …)`` float32 tensors."""
        return tuple(  # type: ignore[return-value]
            torch.from_numpy(np.asarray(self._arrays[name][z : z + 1], dtype=np.float32))
            for name in FEATURE_ARRAYS
        )

    def write(self, z: int, features: FrameFeatures, content_hash: int) -> None:
        """Write frame ``z``'s features and hash, then mark it done (an interruption leaves it undone),
        under a shared hold of the store's lock.

        Raises
        ------
        CacheMismatchError
            Another process replaced the store with other parameters since it was opened.
        """
        lock = store_lock(self.folder, shared=True, timeout=resolve_lock_timeout(None))  # acquired
        try:
            attrs = _root_attrs(self.folder)
            now = attrs.get(SAM2_FRAMES_KEY) if attrs is not None else None
            if now is None or _differences(now, self.meta):
                raise CacheMismatchError(
                    f"the SAM 2 frame store at {str(self.folder)!r} was replaced by another process with "
                    "other parameters while this one used it: nothing written; open it again"
                )
            self._arrays["done"][z] = False
            dtype = np.dtype(self.meta["cache_dtype"])
            values = (features.image_embed, features.high_res[0], features.high_res[1])
            for name, value in zip(FEATURE_ARRAYS, values, strict=True):
                self._arrays[name][z : z + 1] = value.detach().float().cpu().numpy().astype(dtype)
            self._arrays["frame_hash"][z] = np.uint64(content_hash)
            self._arrays["done"][z] = True
        finally:
            lock.release()

    def __repr__(self) -> str:
        return f"Sam2FrameStore({str(self.folder)!r}, {int(self.done().sum())}/{self.n_frames} frames)"


#: What a frame store folder holds besides its lock file and root record.
_STORE_ENTRIES = (*FEATURE_ARRAYS, "frame_hash", "done")


def _frames_record(folder: Path, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The frame store record at ``folder`` (None: none yet).

    Raises
    ------
    CacheMismatchError
        ``folder`` is a SAM 1 embedding cache.
    """
    attrs = _root_attrs(folder)
    if attrs is not None and SAM1_ATTRS_KEY in attrs:
        raise CacheMismatchError(
            f"cache={str(folder)!r} is a SAM 1 embedding cache; a SAM 2 model ({meta['model']['name']}) "
            "keeps its frame features in a store of its own: pass another cache folder"
        )
    return attrs.get(SAM2_FRAMES_KEY) if attrs is not None else None


def _refuse_foreign(folder: Path, record: dict[str, Any] | None, *, locked: bool = False) -> None:
    """FileExistsError when ``folder`` holds something that is no frame store: before its lock is
    held, a folder with our lock file may be a store being made (let the lock tell); with the lock
    held, anything but a store's own entries (and a root record without ours) is foreign."""
    if record is not None or not folder.exists():
        return
    entries = [e.name for e in folder.iterdir() if e.name != LOCK_FILE]
    if locked:
        foreign = [n for n in entries if n not in (*_STORE_ENTRIES, "zarr.json")]
        foreign += ["zarr.json"] if (folder / "zarr.json").exists() else []
    else:
        foreign = entries if not (folder / LOCK_FILE).exists() else []
    if foreign:
        raise FileExistsError(
            f"cache={str(folder)!r} exists and is not a SAM 2 frame store; pass an empty or new folder"
        )


#: Record entries a reused store must match, with their names in messages.
_CHECKED = {
    "format": "format",
    "model": "model",
    "preprocessing": "preprocessing",
    "image": "image",
    "cache_dtype": "cache_dtype",
    "feature_shapes": "feature shapes",
}


def _differences(have: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    return [
        f"{what}: store has {have.get(key)!r}, requested {wanted.get(key)!r}"
        for key, what in _CHECKED.items()
        if have.get(key) != wanted.get(key)
    ]


def _create_arrays(folder: Path, meta: dict[str, Any]) -> Any:
    import zarr
    from zarr.codecs import Crc32cCodec, ZstdCodec

    n = int(meta["image"]["n_frames"])
    compressors = [ZstdCodec(level=1), Crc32cCodec()]
    group = zarr.open_group(str(folder), mode="a", zarr_format=3)
    for name in FEATURE_ARRAYS:
        shape = tuple(int(v) for v in meta["feature_shapes"][name])
        group.create_array(
            name,
            shape=(n, *shape),
            chunks=(1, *shape),
            dtype=meta["cache_dtype"],
            fill_value=np.nan,
            compressors=compressors,
        )
    group.create_array(
        "frame_hash", shape=(n,), chunks=(1,), dtype="uint64", fill_value=0, compressors=compressors
    )
    group.create_array(
        "done", shape=(n,), chunks=(1,), dtype="bool", fill_value=False, compressors=compressors
    )
    group.attrs[SAM2_FRAMES_KEY] = meta  # last: a folder with it is a complete store
    return group


class Sam2Frames:
    """The frames of a stack as SAM 2 features: ``frames(z)`` → :class:`FrameFeatures` (batch size 1).

    Made by :func:`open_frames`. Features come from the store when it holds frame ``z`` (and its
    content hash matches the image's frame), else are computed (and written to the store).

    Attributes
    ----------
    model
        The :class:`Sam2` the features are for.
    shape
        ``(Z, Y, X)`` of the stack.
    store
        The :class:`Sam2FrameStore`, or None (features kept in memory for the last ``keep`` frames).
    encoder_calls
        Frames encoded so far (for tests and reports).
    """

    def __init__(
        self,
        model: Sam2,
        image: Any,
        layout: ImageLayout | None,
        preprocessor: Preprocessor,
        *,
        shape: tuple[int, int, int],
        store: Sam2FrameStore | None = None,
        keep: int = 2,
    ) -> None:
        self.model, self.image, self.layout, self.preprocessor = model, image, layout, preprocessor
        self.shape = shape
        self.store = store
        self.encoder_calls = 0
        self._kept: LRU[int, FrameFeatures] = LRU(keep)
        self._pos: torch.Tensor | None = None

    @property
    def n_frames(self) -> int:
        return self.shape[0]

    @property
    def frame_shape(self) -> tuple[int, int]:
        return self.shape[1], self.shape[2]

    def available(self, z: int) -> bool:
        """Whether frame ``z``'s features can be had: the image is there, or the store holds them."""
        return self.image is not None or (self.store is not None and self.store.is_done(z))

    def frame_input(self, z: int) -> tuple[torch.Tensor, int]:
        """Frame ``z`` as the model's ``(1, 3, S, S)`` input, and the frame's content hash."""
        if self.image is None or self.layout is None:
            raise MissingSliceError(f"frame {z} has no features in the store and no image was given")
        raw = read_slice(self.image, self.layout, z)
        scaled, _ = self.preprocessor.normalized(raw, where=f"frame {z}")
        return sam2_frame_input(scaled, self.model.image_size), slice_hash(raw)

    def __call__(self, z: int) -> FrameFeatures:
        """Frame ``z``'s features on the model's device."""
        if not 0 <= z < self.n_frames:
            raise IndexError(f"frame {z} outside 0..{self.n_frames - 1}")
        kept = self._kept.get(z)
        if kept is not None:
            return kept
        features = self._load(z)
        self._kept.put(z, features)
        return features

    def _load(self, z: int) -> FrameFeatures:
        store = self.store
        raw_hash: int | None = None
        if store is not None and store.is_done(z):
            if self.image is None:
                return self._from_store(z)
            assert self.layout is not None
            raw_hash = slice_hash(read_slice(self.image, self.layout, z))
            if raw_hash == store.stored_hash(z):
                return self._from_store(z)
        if self.image is None:
            raise MissingSliceError(
                f"frame {z} has no features in the frame store and no image was given to compute them"
            )
        model_input, content_hash = self.frame_input(z)
        device = _model_device(self.model)
        with torch.no_grad():
            features = self.model.forward_image(model_input.to(device))
        self.encoder_calls += 1
        if store is not None:
            store.write(z, features, content_hash)
            if store.meta["cache_dtype"] != "float32":  # read back: the same values a later run reads
                return self._from_store(z)
        return features

    def _from_store(self, z: int) -> FrameFeatures:
        assert self.store is not None
        device = _model_device(self.model)
        embed, s0, s1 = (t.to(device) for t in self.store.read(z))
        if self._pos is None:
            self._pos = self.model.image_encoder.neck.position_encoding(embed).to(embed.dtype)
        return FrameFeatures(embed, self._pos, (s0, s1))

    def __repr__(self) -> str:
        where = "memory" if self.store is None else repr(self.store)
        return f"Sam2Frames({self.model.name}, shape={self.shape}, {where})"


def open_frames(
    image: Any,
    model: Sam2,
    *,
    cache: str | Path | None = None,
    overwrite: bool = False,
    cache_dtype: str = "float16",
    preprocessor: Preprocessor | None = None,
    channel_axis: int | None = None,
    channel: int | Sequence[int] | None = None,
    keep: int = 2,
) -> Sam2Frames:
    """The SAM 2 frames of a stack (nothing is computed yet: frames are encoded on first use).

    Parameters
    ----------
    image
        ``(Z, Y, X[, C])`` stack (numpy, dask or zarr; any dtype), or None to read a store only
        (``cache=`` required).
    model
        The :class:`Sam2`.
    cache
        A folder for the zarr frame store (made or reused); None: no store.
    overwrite
        Replace a store made for another model, preprocessing or image.
    cache_dtype
        ``"float16"`` (default) or ``"float32"``: how features are stored.
    preprocessor
        The intensity normalisation (default: ``Preprocessor()``, percentiles 1–99.8 per frame);
        its geometry options do not apply (SAM 2 resizes every frame to the square canvas).
    channel_axis, channel
        As in :func:`napari_sam.segment`.
    keep
        Frames held in memory at once.

    Raises
    ------
    ValueError
        A 2D image, or an unknown ``cache_dtype``.
    CacheMismatchError
        ``cache`` holds a SAM 1 embedding cache or another stack's / model's frame store.
    """
    if cache_dtype not in CACHE_DTYPES:
        raise ValueError(f"cache_dtype must be 'float16' or 'float32', got {cache_dtype!r}")
    pre = Preprocessor(channel=channel) if preprocessor is None else preprocessor
    if pre.object_size is not None or pre.scale is not None:
        raise ValueError("object_size / scale do not apply to SAM 2: every frame fills the square canvas")
    if image is None:
        if cache is None:
            raise ValueError("open_frames needs an image, or cache= a frame store to read")
        return _frames_of_store(model, Path(cache).expanduser(), pre, keep)
    layout = image_layout(image, channel_axis, channel=pre.channel)
    if not layout.is_volume:
        raise ValueError(f"SAM 2 frames need a (Z, Y, X[, C]) stack, got an image of shape {layout.shape}")
    pre = Preprocessor(
        pre.normalize, pre.percentiles, pre.contrast_limits, pre.channel, layout.slice_channel_axis
    )
    z, y, x = (int(v) for v in layout.spatial_shape)
    store = None
    if cache is not None:
        meta = _record(model, pre, layout, image, cache_dtype)
        store = Sam2FrameStore.open_or_create(cache, meta, overwrite=overwrite)
    return Sam2Frames(model, image, layout, pre, shape=(z, y, x), store=store, keep=keep)


def _record(
    model: Sam2, pre: Preprocessor, layout: ImageLayout, image: Any, cache_dtype: str
) -> dict[str, Any]:
    z, y, x = (int(v) for v in layout.spatial_shape)
    return {
        "model": {
            "name": model.name,
            "weights_sha256": sam2_weights_id(model),
            "image_size": model.image_size,
        },
        "preprocessing": {
            "normalize": pre.normalize,
            "percentiles": list(pre.percentiles),
            "percentile_scope": "frame",
            "contrast_limits": None if pre.contrast_limits is None else list(pre.contrast_limits),
            "channel": pre.channel,
            "channel_axis": layout.channel_axis,
            "resize": "square canvas, Pillow bicubic",
            "pixel_mean": list(PIXEL_MEAN),
            "pixel_std": list(PIXEL_STD),
        },
        "image": {
            "shape": [int(v) for v in layout.shape],
            "dtype": np.dtype(image.dtype).str,
            "n_frames": z,
            "frame_shape": [y, x],
        },
        "cache_dtype": cache_dtype,
        "feature_shapes": _feature_shapes(model),
    }


def _frames_of_store(model: Sam2, folder: Path, pre: Preprocessor, keep: int) -> Sam2Frames:
    """Frames read from an existing store only (no image: frames it lacks are errors)."""
    import zarr

    attrs = _root_attrs(folder)
    if attrs is not None and SAM1_ATTRS_KEY in attrs:
        raise CacheMismatchError(f"cache={str(folder)!r} is a SAM 1 embedding cache, not a SAM 2 frame store")
    meta = None if attrs is None else attrs.get(SAM2_FRAMES_KEY)
    if meta is None:
        raise FileNotFoundError(f"no SAM 2 frame store at cache={str(folder)!r}")
    have = meta.get("model", {}).get("weights_sha256")
    if have != sam2_weights_id(model):
        raise CacheMismatchError(
            f"the SAM 2 frame store at cache={str(folder)!r} was made with other weights "
            f"({meta.get('model', {}).get('name')!r}, sha256 {str(have)[:12]}…) than the model's"
        )
    if meta.get("feature_shapes") != _feature_shapes(model):
        raise CacheMismatchError(f"the SAM 2 frame store at cache={str(folder)!r} has other feature shapes")
    store = Sam2FrameStore(folder, zarr.open_group(str(folder), mode="r", zarr_format=3), meta)
    y, x = (int(v) for v in meta["image"]["frame_shape"])
    return Sam2Frames(model, None, None, pre, shape=(store.n_frames, y, x), store=store, keep=keep)


def iter_compute_frames(
    frames: Sam2Frames, indices: Sequence[int] | None = None
) -> Generator[tuple[int, int], None, Sam2Frames]:
    """Fill the store of ``frames`` (all frames, or ``indices``): a step generator yielding
    ``(done, total)`` frames; frames already stored with a matching hash are skipped. Returns
    ``frames``."""
    if frames.store is None:
        raise ValueError("iter_compute_frames needs frames with a store (open_frames(..., cache=))")
    todo = list(range(frames.n_frames)) if indices is None else [int(i) for i in indices]
    yield 0, len(todo)
    for done, z in enumerate(todo, start=1):
        frames._load(z)  # a stored frame whose hash matches is only read
        yield done, len(todo)
    return frames
