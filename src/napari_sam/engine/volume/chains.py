"""The stepping loop of propagation: chains of one object in one direction, walked in rounds.

A *chain* starts on a seed slice and steps one slice at a time away from it, prompting the decoder
with the object's result on the previous slice (:func:`~napari_sam.engine.volume.steps.step_prompts`)
until a stop rule fires (:func:`~napari_sam.engine.volume.steps.stop_reason`) or its range ends.
Between two seed slices of one object, a chain from each end fills its half; the upper one (a down
chain, whose ``partner`` is the lower one) goes on down to where the lower one stopped, if it
stopped early. Each round takes every chain one slice further; the chains stepping onto one slice
are decoded in one batched call, and only then are that slice's embeddings fetched.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..decode import predict as predict_module
from ..embed.embeddings import VolumeEmbeddings
from ..embed.layout import image_layout, read_slice
from ..preprocess import as_channels_last_2d, mask_to_prompt_logits
from ..types import ImageLayout, PropagationOptions, TiledEmbeddings
from .steps import (
    MaskSummary,
    SeedIntensity,
    contrast,
    overlapping_parts,
    seed_intensity,
    step_prompts,
    stop_reason,
    summarize,
    trim_dim,
)


@dataclass
class Chain:
    """One object walking in one direction; its state after the last slice it filled."""

    label: int
    step: int  # +1 up, -1 down
    z: int  # last slice filled (a seed at first)
    limit: int  # first slice it may not fill
    mask: np.ndarray  # (Y, X) bool, the object on slice z
    summary: MaskSummary
    logits: np.ndarray | None = None  # low-res logits that produced mask (None: a seed)
    reason: str | None = None  # why it stopped (a key of STOP_REASONS); None while it runs
    best_contrast: float | None = None  # highest image contrast of the object so far
    seed_intensity: SeedIntensity | None = None  # for min_intensity (None: not measured / no basis)
    started: bool = False  # has taken a step (seed measurements done)
    partner: Chain | None = None  # the chain filling the other half of a gap (down chains only)

    @property
    def active(self) -> bool:
        """The chain has not stopped."""
        return self.reason is None

    @property
    def direction(self) -> str:
        """``"up"`` (increasing z) or ``"down"``."""
        return "up" if self.step > 0 else "down"


class Planes:
    """Gray ``(Y, X)`` float32 slices of the image, for the contrast and intensity rules.

    ``planes(z)`` is None without an image; the last slice read is kept.
    """

    def __init__(self, image: Any, channel_axis: int | None, channel: Any = None) -> None:
        self.image = image
        self.layout: ImageLayout | None = (
            None if image is None else image_layout(image, channel_axis, channel=channel)
        )
        self.cache: dict[int, np.ndarray] = {}

    def __call__(self, z: int) -> np.ndarray | None:
        if self.image is None or self.layout is None:
            return None
        if z not in self.cache:
            raw = as_channels_last_2d(
                read_slice(self.image, self.layout, z), channel_axis=self.layout.slice_channel_axis
            )
            self.cache = {z: np.asarray(raw, dtype=np.float32).mean(axis=-1)}  # keep one slice
        return self.cache[z]


@dataclass
class Walk:
    """What every step reads and writes.

    Attributes
    ----------
    embeddings
        The stack's embeddings (slices embedded on first use).
    model
        The SAM model to decode with.
    labels
        ``(Z, Y, X)`` labels being filled in place (seeds and other labels are never overwritten).
    options
        How slices are prompted and when objects stop.
    planes
        The image, for the contrast and intensity rules.
    """

    embeddings: VolumeEmbeddings
    model: Any
    labels: np.ndarray
    options: PropagationOptions
    planes: Planes


# ------------------------------------------------------------------------------------------------ schedule


def make_chains(labels: np.ndarray, seeds: dict[int, list[int]], lo: int, hi: int) -> list[Chain]:
    """Up chains, then down chains, of every object: outwards from its extreme seeds within the slices
    ``lo`` to ``hi - 1``, and both ways across gaps between its seeds."""
    ups: list[Chain] = []
    downs: list[Chain] = []
    for lab, zs in seeds.items():
        inside = [z for z in zs if lo <= z < hi]
        if not inside:
            continue

        def chain(z: int, step: int, limit: int, lab: int = lab) -> Chain:
            mask = labels[z] == lab
            summary = summarize(mask)
            assert summary is not None  # seeds hold the object by construction
            return Chain(lab, step, z, limit, mask, summary)

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
    return [*ups, *downs]


def reach(chain: Chain) -> int:
    """Most slices ``chain`` may fill (a gap's upper half: the whole gap, if the lower half stops at once)."""
    if chain.partner is not None:
        return chain.z - chain.partner.z - 1
    return (chain.limit - chain.z) * chain.step - 1


def next_slice(chain: Chain) -> int | None:
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


def walk(chains: list[Chain], state: Walk) -> Generator[tuple[int, int], None, int]:
    """Step every chain until all have stopped; yields ``(done, total)`` rounds, returns decoder calls.

    Rounds take every active chain one slice further, so the slices nearest to any seed are claimed
    first (an object does not lose its own slices to a neighbour that walked there from afar).
    """
    total = max((reach(c) for c in chains), default=0)
    rounds = calls = 0
    yield 0, total
    while True:
        onto: dict[int, list[Chain]] = {}
        for c in chains:
            z = next_slice(c)
            if z is not None:
                onto.setdefault(z, []).append(c)
        if not onto:
            break
        rounds += 1
        for z in sorted(onto):
            step_slice(z, onto[z], state)
            calls += 1
            yield min(rounds, total), total
    for c in chains:
        if c.active:
            c.reason = "range"  # a gap's upper half waiting at the middle for a lower half that filled it
    yield total, total
    return calls


# ------------------------------------------------------------------------------------------------ one slice


def step_slice(z: int, chains: list[Chain], state: Walk) -> None:
    """Decode every chain stepping onto slice ``z`` in one call, check it, paint what passes.

    The best-scoring prediction claims its pixels first.
    """
    opts = state.options
    _measure_seeds(chains, state.planes, opts)
    slice_emb = state.embeddings[z]
    tiled = isinstance(slice_emb, TiledEmbeddings)
    prompts = step_prompts(
        [c.mask for c in chains],
        [c.logits for c in chains],
        opts,
        tiled=tiled,
        mask_prompt=None if tiled else _mask_prompt_fn(state.model, slice_emb),
    )
    pred = predict_module.predict(
        slice_emb, multimask=opts.multimask, best_only=True, model=state.model, **prompts
    )
    masks, scores = pred.masks[:, 0], pred.iou_scores[:, 0]
    boxes = prompts["box"] if "box" in prompts and opts.clip_to_box else None
    for i in np.argsort(-scores, kind="stable"):
        c = chains[i]
        kept = _kept_pixels(masks[i], c, z, None if boxes is None else boxes[i], state)
        current = summarize(kept)
        ratio = _contrast_ratio(c, kept, z, state)
        c.reason = stop_reason(c.summary, current, float(scores[i]), opts, ratio)
        if c.reason is None:
            assert current is not None
            state.labels[z][kept] = c.label
            c.z, c.mask, c.summary = z, kept, current
            c.logits = None if tiled else pred.low_res_logits[i, 0]
            if ratio is not None and ratio > 1 and c.best_contrast is not None:
                c.best_contrast *= ratio


def _measure_seeds(chains: list[Chain], planes: Planes, opts: PropagationOptions) -> None:
    """Before a chain's first step: its seed's contrast and intensity, when the image is known."""
    for c in chains:
        if not c.started and planes.image is not None:
            if opts.min_contrast > 0:
                c.best_contrast = contrast(planes(c.z), c.mask)
            if opts.min_intensity > 0:
                c.seed_intensity = seed_intensity(planes(c.z), c.mask)
        c.started = True


def _kept_pixels(mask: np.ndarray, chain: Chain, z: int, box: np.ndarray | None, state: Walk) -> np.ndarray:
    """``(Y, X)`` bool: the pixels of a predicted ``mask`` the chain may take on slice ``z``.

    Only background or the object's own pixels; trimmed of its dim halo (``min_intensity``), of
    what lies outside its box prompt ``box`` (half-open ``(min_row, min_col, max_row, max_col)``;
    None: no clipping) and of the parts not touching its previous slice (``connected``).
    """
    opts = state.options
    plane = state.labels[z]
    kept = mask & ((plane == 0) | (plane == chain.label))
    if opts.min_intensity > 0 and chain.seed_intensity is not None:
        kept = trim_dim(kept, state.planes(z), chain.seed_intensity, opts.min_intensity)  # type: ignore[arg-type]
    if box is not None:
        r0, c0, r1, c1 = box
        inside = np.zeros_like(kept)
        inside[int(np.floor(r0)) : int(np.ceil(r1)), int(np.floor(c0)) : int(np.ceil(c1))] = True
        kept &= inside
    if opts.connected:
        kept = overlapping_parts(kept, chain.mask)
    return kept


def _contrast_ratio(chain: Chain, kept: np.ndarray, z: int, state: Walk) -> float | None:
    """The object's image contrast in ``kept`` on slice ``z`` over its best so far; None when not
    measured (``min_contrast`` off, no image, no positive best contrast, or an empty mask)."""
    if state.options.min_contrast <= 0 or chain.best_contrast is None or chain.best_contrast <= 0:
        return None
    here = contrast(state.planes(z), kept)
    return None if here is None else here / chain.best_contrast


def _mask_prompt_fn(sam: Any, slice_emb: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Binary mask → mask-prompt logits, resized as the slice ``slice_emb`` (:class:`Embeddings`) was."""
    size = sam.prompt_encoder.mask_input_size
    input_size = tuple(slice_emb.input_size)

    def convert(mask: np.ndarray) -> np.ndarray:
        logits = mask_to_prompt_logits(
            mask, image_size=slice_emb.image_size, mask_input_size=size, input_size=input_size
        )
        return logits[0, 0].numpy()

    return convert
