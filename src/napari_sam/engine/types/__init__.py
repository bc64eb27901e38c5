"""The values that flow through the engine, their constants and the options that steer it: a leaf that
imports nothing of the engine but the :class:`~napari_sam.engine.lru.LRU` helper (itself a leaf).

Every name is importable from here (``from napari_sam.engine.types import Embeddings``); each lives in
the module of one responsibility:

- :mod:`.values`: :class:`PreprocessParams` (how an image was turned into model input, recorded with
  every embedding), :class:`Embeddings` (the image encoder's output for one 2D image),
  :class:`ImageLayout` (where an array keeps its slices and channels), :data:`Limits`,
  :class:`LazySequence` and the volume sampling constants.
- :mod:`.tiles`: :class:`TileSpec`, :class:`Window` and :class:`TiledEmbeddings` for a large image
  embedded in tiles; the tiling defaults.
- :mod:`.prompts`: :class:`Prompts`, prompts checked once.
- :mod:`.checks`: the checks every option goes through (an integer, a number in a range, a flag, a name).
- :mod:`.embed_options`: :class:`EmbedOptions` (preprocessing, precision, batching, tiling) and the
  checks of those options.
- :mod:`.automatic_options`: :class:`AutomaticOptions`, the options of automatic mask generation.
- :mod:`.instance_options`: :class:`InstanceOptions`, how the instance decoder's maps become labels
  (AIS, APG), and the automatic modes.
- :mod:`.propagation_options`: :class:`PropagationOptions`, how 3D propagation prompts each slice and
  when an object stops.
"""

from __future__ import annotations

from .automatic_options import MAX_POINTS_PER_SIDE, OVERLAP_RULES, PRESET_CHOICES, AutomaticOptions
from .checks import check_choice, check_field, check_flag, check_int, check_number, keep, one_of
from .embed_options import (
    CACHE_DTYPE_NAMES,
    DEFAULT_PERCENTILES,
    PERCENTILE_SCOPES,
    PRECISION_NAMES,
    PRECISIONS,
    EmbedOptions,
    NormalizeMode,
    PercentileScope,
    Precision,
    check_contrast_limits,
    check_normalize,
    check_object_size,
    check_percentiles,
    check_precision,
    check_tile_threshold,
    tiling_option,
)
from .instance_options import (
    AUTOMATIC_MODES,
    DECODER_MODES,
    DEFAULT_MIN_SIZE,
    INSTANCE_OPTION_NAMES,
    InstanceOptions,
    check_mode,
)
from .prompts import Prompts
from .propagation_options import PROPAGATION_PROMPT_KINDS, PropagationOptions
from .tiles import (
    DEFAULT_HALO,
    DEFAULT_TILE_SIZE,
    DEFAULT_TILE_THRESHOLD,
    OUTSIDE_LOGIT,
    TiledEmbeddings,
    TileSpec,
    Window,
)
from .values import (
    _VOLUME_SAMPLE_PIXELS,
    VOLUME_SAMPLE_SLICES,
    Embeddings,
    ImageLayout,
    LazySequence,
    Limits,
    PreprocessParams,
)

__all__ = [
    "AUTOMATIC_MODES",
    "CACHE_DTYPE_NAMES",
    "DECODER_MODES",
    "DEFAULT_HALO",
    "DEFAULT_MIN_SIZE",
    "DEFAULT_PERCENTILES",
    "DEFAULT_TILE_SIZE",
    "DEFAULT_TILE_THRESHOLD",
    "INSTANCE_OPTION_NAMES",
    "MAX_POINTS_PER_SIDE",
    "OUTSIDE_LOGIT",
    "OVERLAP_RULES",
    "PERCENTILE_SCOPES",
    "PRECISIONS",
    "PRECISION_NAMES",
    "PRESET_CHOICES",
    "PROPAGATION_PROMPT_KINDS",
    "VOLUME_SAMPLE_SLICES",
    "_VOLUME_SAMPLE_PIXELS",
    "AutomaticOptions",
    "EmbedOptions",
    "Embeddings",
    "ImageLayout",
    "InstanceOptions",
    "LazySequence",
    "Limits",
    "NormalizeMode",
    "PercentileScope",
    "Precision",
    "PreprocessParams",
    "Prompts",
    "PropagationOptions",
    "TileSpec",
    "TiledEmbeddings",
    "Window",
    "check_choice",
    "check_contrast_limits",
    "check_field",
    "check_flag",
    "check_int",
    "check_mode",
    "check_normalize",
    "check_number",
    "check_object_size",
    "check_percentiles",
    "check_precision",
    "check_tile_threshold",
    "keep",
    "one_of",
    "tiling_option",
]
