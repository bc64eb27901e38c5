"""Architecture hyper-parameters of the Segment Anything variants."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SamConfig:
    """Everything needed to build a :class:`~napari_sam.model.sam.Sam` (no weights).

    The defaults are those shared by the official vit_b / vit_l / vit_h models.
    """

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mlp_ratio: float = 4.0
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_num_heads: int = 8
    decoder_mlp_dim: int = 2048
    decoder_attention_downsample_rate: int = 2
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    num_multimask_outputs: int = 3
    #: ``"vit"`` (official architecture) or ``"nano"`` (:class:`~napari_sam.model.nano.NanoEncoder`)
    encoder_type: str = "vit"
    #: nano only: channels at strides 4, 8, 16 (the last equals ``encoder_embed_dim``)
    encoder_widths: tuple[int, ...] = ()
    #: nano only: dilations of the stride-16 blocks, cycled
    encoder_dilations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_widths", tuple(int(i) for i in self.encoder_widths))
        object.__setattr__(self, "encoder_dilations", tuple(int(i) for i in self.encoder_dilations))
        object.__setattr__(
            self,
            "encoder_global_attn_indexes",
            tuple(int(i) for i in self.encoder_global_attn_indexes),
        )
        problems = []
        if self.encoder_type not in ("vit", "nano"):
            problems.append(f"encoder_type must be 'vit' or 'nano', got {self.encoder_type!r}")
        if self.encoder_type == "nano" and (
            len(self.encoder_widths) != 3 or self.encoder_widths[-1] != self.encoder_embed_dim
        ):
            problems.append("a nano encoder needs encoder_widths=(c4, c8, c16) with c16 = encoder_embed_dim")
        if self.image_size % self.patch_size:
            problems.append(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.encoder_embed_dim % self.encoder_num_heads:
            problems.append(
                f"encoder_embed_dim ({self.encoder_embed_dim}) must be divisible by "
                f"encoder_num_heads ({self.encoder_num_heads})"
            )
        bad = [i for i in self.encoder_global_attn_indexes if not 0 <= i < self.encoder_depth]
        if bad:
            problems.append(f"encoder_global_attn_indexes {bad} outside 0..{self.encoder_depth - 1}")
        if self.prompt_embed_dim % 8:
            problems.append(f"prompt_embed_dim ({self.prompt_embed_dim}) must be a multiple of 8")
        if problems:
            raise ValueError("invalid SamConfig: " + "; ".join(problems))

    @property
    def embedding_size(self) -> int:
        """Side of the square image-embedding grid (64 for the official models)."""
        return self.image_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key in ("encoder_global_attn_indexes", "encoder_widths", "encoder_dilations"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown SamConfig fields: {unknown}")
        return cls(**data)


CONFIGS: dict[str, SamConfig] = {
    "vit_b": SamConfig(
        encoder_embed_dim=768,
        encoder_depth=12,
        encoder_num_heads=12,
        encoder_global_attn_indexes=(2, 5, 8, 11),
    ),
    "vit_l": SamConfig(
        encoder_embed_dim=1024,
        encoder_depth=24,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": SamConfig(
        encoder_embed_dim=1280,
        encoder_depth=32,
        encoder_num_heads=16,
        encoder_global_attn_indexes=(7, 15, 23, 31),
    ),
    "nano": SamConfig(
        encoder_type="nano",
        encoder_embed_dim=192,
        encoder_depth=8,
        encoder_num_heads=1,
        encoder_global_attn_indexes=(),
        encoder_widths=(32, 64, 192),
        encoder_dilations=(1, 2, 4, 8),
    ),
}


def config_name(config: SamConfig) -> str | None:
    """The registered name whose architecture equals ``config``, or None."""
    for name, known in CONFIGS.items():
        if known == config:
            return name
    return None
