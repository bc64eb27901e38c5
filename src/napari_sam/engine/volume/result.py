"""What a propagation produced: the labels, the seeds, and where and why each object stopped."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Why an object's propagation ended in one direction.
STOP_REASONS = {
    "score": "predicted IoU below iou_threshold",
    "vanished": "mask smaller than min_area",
    "area": "area changed by more than max_area_change",
    "centroid": "centroid moved by more than max_centroid_shift",
    "contrast": "image contrast inside the mask fell below min_contrast of its best so far",
    "range": "reached the end of z_range, a seed slice, or the part filled from the other end",
}


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
