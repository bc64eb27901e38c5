"""Exceptions raised by napari-sam (no heavy imports here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class NapariSamError(Exception):
    """Base class of napari-sam's own errors."""


class CheckpointError(NapariSamError, ValueError):
    """A weights file cannot be read, or does not fit the requested architecture."""


class WeightsHashError(CheckpointError):
    """A weights file's sha256 differs from the published one (corrupt or wrong file)."""


class WeightsUnavailableError(NapariSamError, FileNotFoundError):
    """Weights are neither on disk nor downloadable (for example, offline)."""


class CacheMismatchError(NapariSamError, ValueError):
    """An embedding cache belongs to another image, model or preprocessing."""


class CacheLockedError(NapariSamError, TimeoutError):
    """An embedding cache stayed locked by another process for longer than the caller would wait."""


class RefineWarning(UserWarning):
    """Some labels were left as given: too small to refine, or their refined mask came back empty;
    or a refined label lost every pixel to other refined labels (it is absent from the result).

    Attributes
    ----------
    skipped
        ``{label: reason}`` of the labels kept as given.
    covered
        Refined labels that ended with no pixel (another refined label with a higher predicted IoU
        took all of them; typical of one object split into two labels).
    """

    def __init__(self, skipped: dict[int, str], covered: Sequence[int]) -> None:
        self.skipped = dict(skipped)
        self.covered = tuple(int(k) for k in covered)
        parts = []
        if self.skipped:
            said = "; ".join(f"{k}: {why}" for k, why in sorted(self.skipped.items()))
            parts.append(f"{len(self.skipped)} label(s) kept as given ({said})")
        if self.covered:
            parts.append(
                f"label(s) {', '.join(map(str, self.covered))} refined into other labels' pixels and "
                "absent from the result"
            )
        super().__init__("; ".join(parts))


class EmptyObjectsWarning(UserWarning):
    """Some prompted objects got no pixels; the other objects were segmented all the same.

    Emitted once per call (:func:`napari_sam.segment`, :func:`napari_sam.propagate`) naming every
    such object: its prompt gave no mask (or none inside its box), or a mask entirely covered by
    other objects, or it repeats an identical box of its slice (merged into the first, see
    :class:`DuplicateBoxesWarning`). Those objects' labels are absent from the result.

    Parameters
    ----------
    objects
        The empty objects' labels (object ``k`` of the prompts has label ``k + 1``).
    slices
        The slice each one was prompted on (parallel to ``objects``); None for 2D images.

    Attributes
    ----------
    objects : tuple of int
        As given.
    slices : tuple of int or None
        As given.
    """

    def __init__(self, objects: Sequence[int], slices: Sequence[int | None]) -> None:
        self.objects = tuple(int(v) for v in objects)
        self.slices = tuple(None if z is None else int(z) for z in slices)
        if len(self.slices) != len(self.objects):
            raise ValueError("EmptyObjectsWarning needs one slice (or None) per object")
        super().__init__(self._text())

    def _text(self) -> str:
        where = [
            f"object {k}" if z is None else f"object {k} (slice {z})"
            for k, z in zip(self.objects, self.slices, strict=True)
        ]
        n = len(where)
        return (
            f"{n} prompted object{'s' if n != 1 else ''} got no pixels and {'are' if n != 1 else 'is'} "
            f"left out of the labels: {', '.join(where)}. "
            f"{'Each such prompt' if n != 1 else 'Its prompt'} gave no mask there (or none inside its box), "
            "or one entirely covered by other objects, or duplicates an earlier box; every other object "
            "was segmented."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.objects, self.slices)


class CorruptCacheError(CacheMismatchError):
    """An embedding cache is damaged as a whole: an array folder missing (an interrupted copy), an array
    of the wrong shape, or a record that does not match its arrays. Rebuild it with ``overwrite=True``
    (``--overwrite`` on the command line)."""


class MissingSliceError(CorruptCacheError, LookupError):
    """A slice is not in an embedding cache opened without its image (``open_embeddings``).

    It was never finished (a run interrupted before it) or its ``done`` flag was lost. Also a
    ``LookupError``, as indexing a missing item is. ``compute_embeddings(image, cache=...)`` computes
    it (and rewrites the flag); ``overwrite=True`` rebuilds the whole cache.
    """


class NoContrastWarning(UserWarning):
    """An image (or a slice of a stack) has no contrast: every finite pixel has the same value.

    Nothing can be told apart in it, so it is given to the model as a blank image and
    :func:`napari_sam.segment` returns no objects on it. The message names the slice and the value.
    """


class LayoutWarning(UserWarning):
    """An array's shape fits two layouts; the message says which one was assumed and how to choose.

    A ``(Y, X, C)`` image with a few channels (5 to 16) has the shape of a ``(Z, Y, X)`` stack of
    narrow slices: without ``channel=`` or ``channel_axis=`` it is read as a stack. Emitted once
    per call of :func:`napari_sam.segment` or :func:`napari_sam.propagate`, however often the call
    reads the shape.
    """


class DuplicateBoxesWarning(UserWarning):
    """Identical boxes were given for one image (or one slice of a stack): the copies were merged.

    The first of the identical boxes makes the object; a copy adds nothing (one prompt, one mask). In
    :func:`napari_sam.segment` object ``k`` keeps label ``k + 1`` all the same, so a copy's label is
    left unused; the napari annotator makes one object of them.

    Parameters
    ----------
    message
        What was merged, in the caller's numbering (box order, shapes-layer order …).
    pairs
        ``(kept, dropped)`` numbers of the merged boxes (from 1).

    Attributes
    ----------
    pairs : tuple of (int, int)
        As given.
    """

    def __init__(self, message: str, pairs: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> None:
        self.pairs = tuple((int(kept), int(dropped)) for kept, dropped in pairs)
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return type(self), (str(self), self.pairs)


class Cancelled(NapariSamError, RuntimeError):
    """Long work (embedding, propagation, automatic segmentation) was stopped through ``cancel=``.

    What finished before is kept (embedded slices stay in the cache).
    """


class CorruptSliceError(NapariSamError, RuntimeError):
    """A slice of the store is missing, unfinished or fails its checksum."""


class UsageError(NapariSamError, ValueError):
    """The request cannot run as given (bad arguments, unusable output folder, no cluster)."""


class NotAnImageError(NapariSamError, ValueError):
    """A path that :func:`napari_sam.io.read_image` cannot read as an image."""


class AnnotatorError(NapariSamError, ValueError):
    """Something the user can fix in the viewer: a missing layer, a point off the image, …"""
