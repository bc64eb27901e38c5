"""Architecture hyper-parameters of SAM 2.1: the four official sizes and small test models.

A :class:`Sam2Config` holds every number that shapes a :class:`~napari_sam.model.sam2.sam2.Sam2`
(no weights). The official sizes take theirs from the ``sam2.1_hiera_{t,s,b+,l}.yaml`` files of the
official repository; everything they share is a default here. Behaviour switches the four sizes all
turn on (high-resolution features in the decoder, object pointers, object scores …) are not options:
:class:`Sam2` always has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..configs import DictConfig

_TUPLE_FIELDS = (
    "hiera_stages",
    "hiera_global_att_blocks",
    "hiera_window_spec",
    "hiera_window_pos_embed_bkg_spatial_size",
    "hiera_q_stride",
    "fpn_top_down_levels",
)


@dataclass(frozen=True)
class Sam2Config(DictConfig):
    """Everything needed to build a :class:`~napari_sam.model.sam2.sam2.Sam2` (no weights).

    Defaults are those the four official sam2.1 sizes share; the sizes differ in the Hiera trunk
    only (``hiera_*``).

    Attributes
    ----------
    hiera_embed_dim, hiera_num_heads
        Channels and attention heads of the trunk's first stage (doubled at every later stage).
    hiera_stages
        Blocks per stage (four stages).
    hiera_global_att_blocks
        Indices of the blocks with global attention (the others attend within windows).
    hiera_window_spec
        Window side per stage.
    hiera_window_pos_embed_bkg_spatial_size
        Grid of the trunk's background position embedding (interpolated to the image's grid).
    hiera_q_pool, hiera_q_stride, hiera_dim_mul, hiera_head_mul
        Pooling stages, their stride, and the channel / head factors between stages.
    d_model
        Channels of the neck's features, the prompt encoder, mask decoder and memory attention.
    fpn_top_down_levels, fpn_interp_model, scalp
        The FPN neck's top-down levels and upsampling mode; the coarsest levels dropped (``scalp``).
    mem_dim
        Channels of the memory features (the memory encoder's output).
    mem_attn_num_layers, mem_attn_dim_feedforward, mem_attn_num_heads, rope_theta
        The memory attention's layers, feed-forward width, heads and rotary-encoding base.
    mem_enc_num_layers
        ConvNeXt blocks of the memory encoder's fuser.
    num_maskmem
        Memory frames one frame attends to: the conditioning frames count as one slot, plus
        ``num_maskmem - 1`` previous frames.
    image_size
        Side of the square canvas the model sees (frames are resized to it).
    backbone_stride
        Stride of the coarsest feature map used (the image embedding).
    max_obj_ptrs_in_encoder
        Object pointers (from the nearest frames) one frame attends to, at most.
    max_cond_frames_in_attn
        Conditioning frames one frame attends to, at most (the nearest ones); -1: all.
    memory_temporal_stride_for_eval
        Stride ``r`` between the remembered previous frames (the nearest one is always kept).
    sigmoid_scale_for_mem_enc, sigmoid_bias_for_mem_enc
        Scale and shift of the mask probabilities fed to the memory encoder.
    binarize_mask_from_pts_for_mem_enc
        Whether the memory of a frame prompted with points / boxes encodes the thresholded mask
        (the official video predictor sets this; the image predictor never encodes memories).
    dynamic_multimask_via_stability, dynamic_multimask_stability_delta,
    dynamic_multimask_stability_thresh
        With one output mask asked for, fall back to the best of the three multimask outputs when
        the single mask is unstable (the official builders switch this on).
    """

    tuple_fields: ClassVar[tuple[str, ...]] = _TUPLE_FIELDS

    hiera_embed_dim: int = 96
    hiera_num_heads: int = 1
    hiera_stages: tuple[int, ...] = (1, 2, 7, 2)
    hiera_global_att_blocks: tuple[int, ...] = (5, 7, 9)
    hiera_window_spec: tuple[int, ...] = (8, 4, 14, 7)
    hiera_window_pos_embed_bkg_spatial_size: tuple[int, ...] = (7, 7)
    hiera_q_pool: int = 3
    hiera_q_stride: tuple[int, ...] = (2, 2)
    hiera_dim_mul: float = 2.0
    hiera_head_mul: float = 2.0
    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    fpn_interp_model: str = "nearest"
    scalp: int = 1
    mem_dim: int = 64
    mem_attn_num_layers: int = 4
    mem_attn_dim_feedforward: int = 2048
    mem_attn_num_heads: int = 1
    rope_theta: float = 10000.0
    mem_enc_num_layers: int = 2
    num_maskmem: int = 7
    image_size: int = 1024
    backbone_stride: int = 16
    max_obj_ptrs_in_encoder: int = 16
    max_cond_frames_in_attn: int = -1
    memory_temporal_stride_for_eval: int = 1
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    binarize_mask_from_pts_for_mem_enc: bool = True
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98

    def __post_init__(self) -> None:
        self._tuples_of_ints()
        problems = []
        if len(self.hiera_stages) != len(self.hiera_window_spec) or min(self.hiera_stages, default=0) < 1:
            problems.append(
                f"hiera_stages {self.hiera_stages} must be positive, one per hiera_window_spec entry "
                f"{self.hiera_window_spec}"
            )
        depth = sum(self.hiera_stages)
        bad = [i for i in self.hiera_global_att_blocks if not 0 <= i < depth]
        if bad:
            problems.append(f"hiera_global_att_blocks {bad} outside 0..{depth - 1}")
        if not 0 <= self.hiera_q_pool < len(self.hiera_stages):
            problems.append(f"hiera_q_pool must be in 0..{len(self.hiera_stages) - 1}")
        if self.image_size % self.backbone_stride:
            problems.append(
                f"image_size ({self.image_size}) must be a multiple of "
                f"backbone_stride ({self.backbone_stride})"
            )
        if self.d_model % 8 or self.d_model % self.mem_dim:
            problems.append(
                f"d_model ({self.d_model}) must be a multiple of 8 and of mem_dim ({self.mem_dim})"
            )
        if self.num_maskmem < 1 or self.max_obj_ptrs_in_encoder < 1:
            problems.append("num_maskmem and max_obj_ptrs_in_encoder must be positive")
        if self.max_cond_frames_in_attn != -1 and self.max_cond_frames_in_attn < 2:
            problems.append("max_cond_frames_in_attn must be -1 (all) or at least 2")
        if self.memory_temporal_stride_for_eval < 1:
            problems.append("memory_temporal_stride_for_eval must be positive")
        if problems:
            raise ValueError("invalid Sam2Config: " + "; ".join(problems))

    @property
    def backbone_channel_list(self) -> tuple[int, ...]:
        """Channels of the trunk's stages, coarsest first (the neck's order)."""
        channels = [self.hiera_embed_dim]
        for _ in self.hiera_stages[1:]:
            channels.append(int(channels[-1] * self.hiera_dim_mul))
        return tuple(reversed(channels))

    @property
    def embedding_size(self) -> int:
        """Side of the image-embedding grid (64 for the official models)."""
        return self.image_size // self.backbone_stride


SAM2_CONFIGS: dict[str, Sam2Config] = {
    "sam2.1_hiera_tiny": Sam2Config(),
    "sam2.1_hiera_small": Sam2Config(hiera_stages=(1, 2, 11, 2), hiera_global_att_blocks=(7, 10, 13)),
    "sam2.1_hiera_base_plus": Sam2Config(
        hiera_embed_dim=112,
        hiera_num_heads=2,
        hiera_stages=(2, 3, 16, 3),
        hiera_global_att_blocks=(12, 16, 20),
        hiera_window_pos_embed_bkg_spatial_size=(14, 14),
    ),
    "sam2.1_hiera_large": Sam2Config(
        hiera_embed_dim=144,
        hiera_num_heads=2,
        hiera_stages=(2, 6, 36, 4),
        hiera_global_att_blocks=(23, 33, 43),
        hiera_window_spec=(8, 4, 16, 8),
    ),
}


def tiny_test_config(**overrides: Any) -> Sam2Config:
    """A small SAM 2 for tests: a 4-stage Hiera of 6 blocks (16 channels) on a 128 canvas, two
    memory-attention layers; the official 256 / 64 channels of the heads and memory.

    >>> config = tiny_test_config(num_maskmem=3)
    >>> config.image_size, config.embedding_size, config.backbone_channel_list
    (128, 8, (128, 64, 32, 16))
    """
    fields: dict[str, Any] = {
        "hiera_embed_dim": 16,
        "hiera_num_heads": 1,
        "hiera_stages": (1, 2, 2, 1),
        "hiera_global_att_blocks": (2, 4),
        "hiera_window_spec": (8, 4, 4, 2),
        "hiera_window_pos_embed_bkg_spatial_size": (4, 4),
        "mem_attn_num_layers": 2,
        "mem_attn_dim_feedforward": 256,
        "image_size": 128,
    }
    fields.update(overrides)
    return Sam2Config(**fields)


def sam2_config_name(config: Sam2Config) -> str | None:
    """The registered name whose architecture equals ``config``, or None."""
    for name, known in SAM2_CONFIGS.items():
        if known == config:
            return name
    return None
