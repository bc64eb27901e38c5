"""The Segment Anything model: image encoder + prompt encoder + mask decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .configs import SamConfig
from .identity import WeightsIds
from .image_encoder import ImageEncoderViT
from .instance_decoder import InstanceDecoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer

#: Per-channel RGB mean and std (0–255 scale) of the official models' input normalisation.
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


#: How much the nano model enlarges a small image at most (see :attr:`Sam.max_upscale`).
NANO_MAX_UPSCALE = 2.0


@dataclass(frozen=True)
class ObjectScale:
    """How much a model wants an image enlarged, from its objects' diameter ``d`` (image pixels):
    ``max_scale * (reference / d) ** exponent``, at most ``max_scale``.

    Attributes
    ----------
    reference
        Objects up to this diameter get ``max_scale``.
    exponent
        How fast the scale falls for larger objects: 1 keeps their size on the canvas constant, 0.5
        lets it grow as ``sqrt(d)``.
    max_scale
        The most the model wants an image enlarged.
    max_canvas_size
        Objects are never made larger than this on the canvas (px); None: no limit.

    Examples
    --------
    >>> rule = ObjectScale(reference=14.0, exponent=0.5, max_scale=3.0)
    >>> rule.scale(8.0), rule.scale(56.0)
    (3.0, 1.5)
    """

    reference: float
    exponent: float
    max_scale: float
    max_canvas_size: float | None = None

    def scale(self, object_size: float) -> float:
        """The scale for objects ``object_size`` px across (positive)."""
        scale = min(self.max_scale, self.max_scale * (self.reference / object_size) ** self.exponent)
        if self.max_canvas_size is not None:
            scale = min(scale, self.max_canvas_size / object_size)
        return float(scale)


#: nano's rule. Measured with the shipped weights on synthetic nuclei of one size each (2 images per
#: size, box IoU and AIS F1@0.5 at scales 1–4): the best scale is ~3 for objects of 8–14 px, ~2.5 at
#: 20 px, ~2 at 32, ~1.5 at 50 and ~1.2 at 80 — about ``3 * sqrt(14 / d)``; box prompts collapse once
#: objects pass ~100 px on the canvas (120 px objects: box IoU 0.91 at 0.6–0.8×, 0.67 at 1×, 0.23 at
#: 1.45×), hence at most 90 px there.
NANO_OBJECT_SCALE = ObjectScale(reference=14.0, exponent=0.5, max_scale=3.0, max_canvas_size=90.0)
#: The official models (trained on objects of every size): objects to 64 px on the canvas, enlarging
#: at most 4× (not measured here: no official weights on this machine).
OFFICIAL_OBJECT_SCALE = ObjectScale(reference=16.0, exponent=1.0, max_scale=4.0)


class Sam(nn.Module):
    """Segment Anything.

    ``state_dict()`` keys equal the official ``segment_anything`` ones, plus ``instance_decoder.*`` when
    the model carries an instance decoder. ``pixel_mean`` and ``pixel_std`` are ``(3, 1, 1)``
    non-persistent buffers (not part of the checkpoint), as in the official model.

    Attributes
    ----------
    config
        The architecture.
    name
        A short model name (``"vit_b"``, a file stem, ``"custom"`` …).
    instance_decoder
        The :class:`~napari_sam.model.instance_decoder.InstanceDecoder` for automatic instance
        segmentation (micro-sam's AIS / APG), or None. It reads the image encoder's output and leaves
        the embeddings unchanged.
    weights_sha256
        The id of the weights the model holds now: the sha256 of the weights file it was loaded
        from, or a fingerprint set by :func:`napari_sam.engine.loading.model_weights_id`; None when
        no id was set, or when the weights changed in place since it was (see :meth:`weights_id`).
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    #: ``(3, 1, 1)`` buffers: the input normalisation
    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        config: SamConfig,
        name: str = "custom",
        pixel_mean: tuple[float, float, float] = PIXEL_MEAN,
        pixel_std: tuple[float, float, float] = PIXEL_STD,
        instance_decoder: InstanceDecoder | None = None,
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.instance_decoder: InstanceDecoder | None = instance_decoder
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.config = config
        self.name = name
        self._weights_ids = WeightsIds()
        #: The most a small image is enlarged onto the input canvas (None: always to ``image_size``,
        #: the official behaviour). The nano encoder was trained on images enlarged about 2×; a 256²
        #: image enlarged 4× shows it nuclei far larger than it learned (1-point IoU drops from ~0.8
        #: to ~0.6 on held-out 256² images), so nano images are enlarged at most 2× and padded.
        self.max_upscale: float | None = NANO_MAX_UPSCALE if config.encoder_type == "nano" else None
        #: How ``object_size=`` sets the scale (see :class:`ObjectScale`,
        #: :mod:`napari_sam.engine.object_scale`).
        self.object_scale: ObjectScale = (
            NANO_OBJECT_SCALE if config.encoder_type == "nano" else OFFICIAL_OBJECT_SCALE
        )
        #: What ``object_size=None`` means for this model: ``"auto"`` (estimate the objects' size and
        #: scale from it: nano, which segments well only in a band of object sizes) or None (the fixed
        #: rule: the official models, whose results then match the reference package's).
        self.default_object_size: str | None = "auto" if config.encoder_type == "nano" else None

    @property
    def weights_sha256(self) -> str | None:
        """The id of the current weights, or None (cheap check; see :meth:`weights_id`)."""
        return self.weights_id(check_content=False)

    @weights_sha256.setter
    def weights_sha256(self, value: str | None) -> None:
        """Give the weights the model holds now the id ``value`` (None: forget the id)."""
        if value is not None and not isinstance(value, str):
            raise TypeError(f"weights_sha256 must be a hex string or None, got {type(value).__name__}")
        self._weights_ids.give(self, value)

    def weights_id(self, *, check_content: bool = False) -> str | None:
        """The id given to the weights, if the model still holds those weights.

        Parameters
        ----------
        check_content
            False: compare the state token only (about a millisecond; sees optimizer steps,
            ``load_state_dict``, in-place operations on parameters and buffers, replaced tensors).
            True: also compare the content digest (one read of every tensor; sees changes made
            through ``parameter.data`` too, unless they keep both exact sums of every 4 KiB block —
            see :func:`~napari_sam.model.identity.content_digest`).

        Returns
        -------
        str or None
            The id, or None when none was set or the weights changed since.
        """
        return self._weights_ids.current(self, check_content=check_content)

    @property
    def image_size(self) -> int:
        """Side of the square model input (1024 for the official models)."""
        return self.config.image_size

    @property
    def embedding_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image embedding, e.g. ``(256, 64, 64)``."""
        side = self.config.embedding_size
        return (self.config.prompt_embed_dim, side, side)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def has_instance_decoder(self) -> bool:
        """Whether the model carries an instance decoder (automatic segmentation by AIS / APG)."""
        return self.instance_decoder is not None

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


def build_from_config(config: SamConfig, *, name: str = "custom") -> Sam:
    """Construct an un-initialised-weights :class:`Sam` (PyTorch default init) for ``config``."""
    encoder: nn.Module
    if config.encoder_type == "nano":
        from .nano import NanoEncoder

        encoder = NanoEncoder(
            widths=config.encoder_widths,
            depth=config.encoder_depth,
            dilations=config.encoder_dilations or (1,),
            out_chans=config.prompt_embed_dim,
            img_size=config.image_size,
        )
    elif config.encoder_type == "tiny_vit":
        from .tiny_vit import TinyViTEncoder

        encoder = TinyViTEncoder(
            img_size=config.image_size,
            widths=config.encoder_widths,
            depths=config.encoder_stage_depths,
            num_heads=config.encoder_stage_heads,
            windows=config.encoder_stage_windows,
            mlp_ratio=config.mlp_ratio,
            out_chans=config.prompt_embed_dim,
            num_classes=config.encoder_num_classes,
        )
    else:
        encoder = _build_vit(config)
    return _assemble(config, encoder, name)


def _build_vit(config: SamConfig) -> ImageEncoderViT:
    return ImageEncoderViT(
        img_size=config.image_size,
        patch_size=config.patch_size,
        embed_dim=config.encoder_embed_dim,
        depth=config.encoder_depth,
        num_heads=config.encoder_num_heads,
        mlp_ratio=config.mlp_ratio,
        out_chans=config.prompt_embed_dim,
        window_size=config.window_size,
        global_attn_indexes=config.encoder_global_attn_indexes,
    )


def _assemble(config: SamConfig, encoder: nn.Module, name: str) -> Sam:
    side = config.embedding_size
    prompt_encoder = PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(side, side),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    decoder = MaskDecoder(
        transformer_dim=config.prompt_embed_dim,
        transformer=TwoWayTransformer(
            depth=config.decoder_depth,
            embedding_dim=config.prompt_embed_dim,
            num_heads=config.decoder_num_heads,
            mlp_dim=config.decoder_mlp_dim,
            attention_downsample_rate=config.decoder_attention_downsample_rate,
        ),
        num_multimask_outputs=config.num_multimask_outputs,
        iou_head_depth=config.iou_head_depth,
        iou_head_hidden_dim=config.iou_head_hidden_dim,
    )
    return Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        config=config,
        name=name,
    )
