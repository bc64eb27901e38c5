"""Architecture hyper-parameters of the Segment Anything variants."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, cast

#: The image encoders :class:`SamConfig` knows.
ENCODER_TYPES = ("vit", "nano", "tiny_vit")
_TUPLE_FIELDS = (
    "encoder_global_attn_indexes",
    "encoder_widths",
    "encoder_dilations",
    "encoder_stage_depths",
    "encoder_stage_heads",
    "encoder_stage_windows",
)


_Config = TypeVar("_Config", bound="DictConfig")


class DictConfig:
    """Base of the frozen config dataclasses: integer-tuple fields made tuples, and a round trip
    through plain dicts (lists for tuples, as JSON gives them back)."""

    #: the fields that hold tuples of ints
    tuple_fields: ClassVar[tuple[str, ...]] = ()

    def _tuples_of_ints(self) -> None:
        for key in self.tuple_fields:
            object.__setattr__(self, key, tuple(int(i) for i in getattr(self, key)))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(cast(Any, self))
        for key in self.tuple_fields:
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls: type[_Config], data: dict[str, Any]) -> _Config:
        known = {f.name for f in dataclasses.fields(cast(Any, cls))}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields: {unknown}")
        return cls(**data)


@dataclass(frozen=True)
class SamConfig(DictConfig):
    """Everything needed to build a :class:`~napari_sam.model.sam.Sam` (no weights).

    The defaults are those shared by the official vit_b / vit_l / vit_h models.
    """

    tuple_fields: ClassVar[tuple[str, ...]] = _TUPLE_FIELDS

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
    #: ``"vit"`` (official architecture), ``"nano"`` (:class:`~napari_sam.model.nano.NanoEncoder`) or
    #: ``"tiny_vit"`` (MobileSAM's :class:`~napari_sam.model.tiny_vit.TinyViTEncoder`)
    encoder_type: str = "vit"
    #: nano: channels at strides 4, 8, 16; tiny_vit: channels per stage (the last equals
    #: ``encoder_embed_dim`` for both)
    encoder_widths: tuple[int, ...] = ()
    #: nano only: dilations of the stride-16 blocks, cycled
    encoder_dilations: tuple[int, ...] = ()
    #: tiny_vit only: blocks per stage (they sum to ``encoder_depth``)
    encoder_stage_depths: tuple[int, ...] = ()
    #: tiny_vit only: attention heads of the attention stages (stage 2 onwards; the last equals
    #: ``encoder_num_heads``)
    encoder_stage_heads: tuple[int, ...] = ()
    #: tiny_vit only: window sides of the attention stages (stage 2 onwards)
    encoder_stage_windows: tuple[int, ...] = ()
    #: tiny_vit only: outputs of the unused ImageNet classifier head that MobileSAM's files carry
    #: (1000), 0 for none
    encoder_num_classes: int = 0

    def __post_init__(self) -> None:
        self._tuples_of_ints()
        problems = []
        if self.encoder_type not in ENCODER_TYPES:
            problems.append(f"encoder_type must be one of {ENCODER_TYPES}, got {self.encoder_type!r}")
        if self.encoder_type == "nano" and (
            len(self.encoder_widths) != 3 or self.encoder_widths[-1] != self.encoder_embed_dim
        ):
            problems.append("a nano encoder needs encoder_widths=(c4, c8, c16) with c16 = encoder_embed_dim")
        if self.encoder_type == "tiny_vit":
            problems += _tiny_vit_problems(self)
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


def tiny_vit_stride(num_stages: int) -> int:
    """Output stride of a TinyViT of ``num_stages`` stages: the stem's 4, ×2 for every merge between
    stages but the last (which keeps the grid, as in MobileSAM).

    >>> tiny_vit_stride(4)
    16
    """
    return 4 * 2 ** max(num_stages - 2, 0)


def _tiny_vit_problems(config: SamConfig) -> list[str]:
    """What is inconsistent in a tiny_vit ``config`` (empty: nothing)."""
    widths, depths = config.encoder_widths, config.encoder_stage_depths
    heads, windows = config.encoder_stage_heads, config.encoder_stage_windows
    stages = len(widths)
    if stages < 2 or len(depths) != stages or len(heads) != stages - 1 or len(windows) != stages - 1:
        return [
            "a tiny_vit encoder needs encoder_widths and encoder_stage_depths for every stage (at least "
            "2) and encoder_stage_heads and encoder_stage_windows for stages 2 onwards"
        ]
    problems = []
    stride = tiny_vit_stride(stages)
    if config.patch_size != stride:
        problems.append(
            f"a {stages}-stage tiny_vit encoder has stride {stride}, got patch_size={config.patch_size}"
        )
    if widths[-1] != config.encoder_embed_dim or heads[-1] != config.encoder_num_heads:
        problems.append("encoder_embed_dim and encoder_num_heads must equal the last stage's width and heads")
    if sum(depths) != config.encoder_depth or min(depths) < 1:
        problems.append(f"encoder_stage_depths {depths} must be positive and sum to encoder_depth")
    if widths[0] % 2:
        problems.append(f"the first stage's width ({widths[0]}) must be even")
    bad = [(w, h) for w, h in zip(widths[1:], heads, strict=True) if h < 1 or w % h]
    if bad:
        problems.append(f"stage widths must be divisible by their heads, got (width, heads) {bad}")
    if min(windows) < 1 or config.encoder_num_classes < 0:
        problems.append("encoder_stage_windows must be positive and encoder_num_classes >= 0")
    return problems


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
        encoder_depth=12,
        encoder_num_heads=1,
        encoder_global_attn_indexes=(),
        encoder_widths=(32, 64, 192),
        encoder_dilations=(1, 2, 4, 8),
    ),
    # MobileSAM's TinyViT-5M encoder with SAM's prompt encoder and mask decoder
    "vit_t": SamConfig(
        encoder_type="tiny_vit",
        encoder_embed_dim=320,
        encoder_depth=12,
        encoder_num_heads=10,
        encoder_global_attn_indexes=(),
        encoder_widths=(64, 128, 160, 320),
        encoder_stage_depths=(2, 2, 6, 2),
        encoder_stage_heads=(4, 5, 10),
        encoder_stage_windows=(7, 14, 7),
        encoder_num_classes=1000,
    ),
}


def config_name(config: SamConfig) -> str | None:
    """The registered name whose architecture equals ``config``, or None."""
    for name, known in CONFIGS.items():
        if known == config:
            return name
    return None
