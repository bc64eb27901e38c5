"""The values an image becomes on its way to the model: how it was normalised, its embeddings, its layout.

- :data:`Limits`: ``(low, high)`` intensity limits per channel.
- :class:`PreprocessParams`: how an image was turned into model input (recorded with every embedding).
- :class:`Embeddings`: the image encoder's output for one 2D image.
- :class:`ImageLayout`: where an array keeps its slices and channels.
- :class:`LazySequence`: a read-only sequence whose items are made on demand (slices read from a cache).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..lru import LRU

if TYPE_CHECKING:
    import torch

    from ...model import Sam

#: ``(low, high)`` intensity limits, one pair per channel.
Limits = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class PreprocessParams:
    """How an image was turned into model input (recorded with every embedding).

    Attributes
    ----------
    normalize
        ``"percentile"``, ``"contrast_limits"`` or ``"none"`` (resolved; never ``"auto"``).
    percentiles
        ``(low, high)`` percentiles, when ``normalize == "percentile"``.
    contrast_limits
        ``(low, high)`` intensities mapped to 0 and 1: the given limits, or the computed percentile
        values per selected channel.
    channel
        Selected channel indices mapped to R, G, B (``None``: the image is gray or RGB as given).
    limit_residuals
        What rounding ``contrast_limits`` to float64 left out, per channel: the exact limits are
        ``contrast_limits + limit_residuals``. Only 64-bit integer images beyond ``2**53`` have
        limits float64 cannot hold (their percentiles are taken after subtracting the minimum
        exactly); ``None`` when every limit is exact as it is. A tile, a window or a slice of such an
        image normalised with these limits is normalised exactly as the whole image.
    """

    normalize: str
    percentiles: tuple[float, float] | None
    contrast_limits: tuple[tuple[float, float], ...] | None
    channel: tuple[int, ...] | None
    limit_residuals: tuple[tuple[float, float], ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Embeddings:
    """The image encoder's output for one 2D image, with what is needed to decode prompts on it.

    Attributes
    ----------
    features
        ``(1, C, h, w)`` float32 tensor, e.g. ``(1, 256, 64, 64)``.
    input_size
        ``(rows, cols)`` of the resized image inside the padded model input.
    original_size
        ``(rows, cols)`` of the image.
    image_size
        Side of the square model input (1024 for the official models).
    model_name
        The model's name (``"vit_b"``, a file stem …).
    weights_sha256
        Identifies the exact weights.
    preprocessing
        How the image was normalised (see :class:`PreprocessParams`).
    model
        The model that computed the features (used to decode prompts); not part of the record.
    object_size
        The objects' diameter in image pixels the canvas scale was chosen from (given as
        ``object_size=`` or estimated for ``"auto"``); None when the model's fixed rule placed the
        image (the scale itself is ``input_size / original_size``).

    Examples
    --------
    >>> import napari_sam as ns
    >>> from napari_sam.data.synthetic import nuclei_2d
    >>> image, _ = nuclei_2d((128, 128), n_objects=4, seed=0)
    >>> emb = ns.compute_embeddings(image)
    >>> tuple(emb.features.shape), emb.features.dtype, emb.original_size, emb.image_size
    ((1, 256, 64, 64), torch.float32, (128, 128), 1024)
    >>> emb.preprocessing.normalize, emb.preprocessing.percentiles
    ('percentile', (1.0, 99.8))
    """

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    image_size: int
    model_name: str
    weights_sha256: str
    preprocessing: PreprocessParams
    model: Sam | None = field(default=None, repr=False)
    object_size: float | None = None

    def record(self) -> dict[str, Any]:
        """Everything but the tensors, as plain JSON-able values."""
        return {
            "input_size": list(self.input_size),
            "original_size": list(self.original_size),
            "image_size": self.image_size,
            "model_name": self.model_name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing.to_dict(),
        }


#: Slices sampled (evenly spaced) to estimate volume-wide percentiles (``percentile_scope="volume"``).
VOLUME_SAMPLE_SLICES = 16


_VOLUME_SAMPLE_PIXELS = 1 << 18


@dataclass(frozen=True)
class ImageLayout:
    """Where an image keeps its slices and channels.

    Attributes
    ----------
    shape
        The array's full shape.
    is_volume
        True for a ``(Z, Y, X[, C])`` stack.
    z_axis
        Axis of the slices (None for a 2D image).
    slice_channel_axis
        Channel axis inside one slice, when given by ``channel_axis`` or inferred from ``channel``
        (None: last if ``C <= 4``).
    spatial_shape
        ``(Z, Y, X)`` or ``(Y, X)``.
    channel_axis
        Axis of the whole array holding channels (non-negative), when given or inferred; None for
        gray images and for channels found last on their own (``C <= 4``).
    """

    shape: tuple[int, ...]
    is_volume: bool
    z_axis: int | None
    slice_channel_axis: int | None
    spatial_shape: tuple[int, ...]
    channel_axis: int | None = None

    @property
    def n_slices(self) -> int:
        return self.spatial_shape[0] if self.is_volume else 1

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(Y, X)`` of one slice."""
        y, x = self.spatial_shape[-2:]
        return int(y), int(x)


class LazySequence(Sequence):
    """A read-only sequence whose items are produced by ``loader(i)``; the last ``keep`` are kept."""

    def __init__(self, length: int, loader: Callable[[int], Any], keep: int = 2) -> None:
        self._length = int(length)
        self._loader = loader
        self._recent: LRU[int, Any] = LRU(keep)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        i = int(index)
        if i < 0:
            i += self._length
        if not 0 <= i < self._length:
            raise IndexError(f"index {index} out of range for {self._length} item(s)")
        return self._recent.get_or_make(i, lambda: self._loader(i))

    def __iter__(self) -> Iterator[Any]:
        for i in range(self._length):
            yield self[i]
