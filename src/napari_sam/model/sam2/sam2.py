"""SAM 2 (2.1): the image encoder, the SAM heads, and the memory that carries objects between frames.

:class:`Sam2` holds the weights and the per-frame operations of the official ``SAM2Base`` for
inference with the sam2.1 settings: features of a frame (:meth:`Sam2.forward_image`), the prompt
encoder and mask decoder on them (:meth:`Sam2.forward_sam_heads`, :meth:`Sam2.use_mask_as_output`),
conditioning a frame on the memory of others (:meth:`Sam2.condition_on_memory`, fed by
:mod:`.memory_bank`), and encoding a frame's prediction into a new memory (:meth:`Sam2.encode_memory`).
Which frames are remembered, and in what order frames are visited, is the tracker's business
(:mod:`.tracking`). State-dict keys equal the official checkpoints'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..common import MLP
from .configs import Sam2Config, sam2_config_name
from .hiera import Hiera
from .image_encoder import FpnNeck, Sam2ImageEncoder
from .mask_decoder import Sam2MaskDecoder, Sam2TwoWayTransformer
from .memory_attention import MemoryAttention, MemoryAttentionLayer
from .memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
from .position_encoding import PositionEmbeddingSine
from .prompt_encoder import Sam2PromptEncoder
from .rope import RoPEAttention

#: Mask logit of an object judged absent (and of objects with no output on a frame).
NO_OBJ_SCORE = -1024.0
#: ImageNet mean and std (0–1 scale) that frames are normalised with before the encoder.
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
#: Logits a binary mask prompt becomes when it is taken as the output (sigmoid(±10) ≈ 0 / 1).
_MASK_AS_OUTPUT_SCALE, _MASK_AS_OUTPUT_BIAS = 20.0, -10.0


@dataclass(frozen=True)
class FrameFeatures:
    """A frame's image features, ready for the SAM heads and the memory attention.

    Attributes
    ----------
    image_embed
        ``(B, C, h, w)`` the coarsest kept level (``C = d_model``, ``h = image_size / 16``).
    image_pos
        ``(B, C, h, w)`` its sine position encoding.
    high_res
        ``(B, C/8, 4h, 4w)`` and ``(B, C/4, 2h, 2w)``: the finer levels, already projected by the
        mask decoder's ``conv_s0`` / ``conv_s1``.
    """

    image_embed: torch.Tensor
    image_pos: torch.Tensor
    high_res: tuple[torch.Tensor, torch.Tensor]

    @property
    def batch_size(self) -> int:
        return int(self.image_embed.shape[0])

    def select(self, index: int) -> FrameFeatures:
        """Batch item ``index`` alone (batch size 1)."""
        return FrameFeatures(
            self.image_embed[index : index + 1],
            self.image_pos[index : index + 1],
            (self.high_res[0][index : index + 1], self.high_res[1][index : index + 1]),
        )

    def expand(self, batch_size: int) -> FrameFeatures:
        """The features of one frame (batch size 1) repeated ``batch_size`` times (views, no copies)."""
        if self.batch_size != 1:
            raise ValueError(f"only features of batch size 1 can be expanded, got {self.batch_size}")

        def rep(t: torch.Tensor) -> torch.Tensor:
            return t.expand(batch_size, -1, -1, -1)

        return FrameFeatures(
            rep(self.image_embed), rep(self.image_pos), (rep(self.high_res[0]), rep(self.high_res[1]))
        )


class HeadsOutput(NamedTuple):
    """What the SAM heads give for ``B`` prompts on one frame (``S = image_size``, ``s = S / 4``).

    Attributes
    ----------
    low_res_multimasks
        ``(B, M, s, s)`` mask logits; ``M`` is 3 with multimask output, else 1. Where the object is
        judged absent every logit is :data:`NO_OBJ_SCORE`.
    high_res_multimasks
        ``(B, M, S, S)`` the same, bilinearly upsampled to the canvas.
    ious
        ``(B, M)`` predicted IoU of each mask.
    low_res_masks, high_res_masks
        ``(B, 1, s, s)`` / ``(B, 1, S, S)``: the mask with the highest predicted IoU.
    obj_ptr
        ``(B, C)`` the object pointer (the no-object pointer where the object is absent).
    object_score_logits
        ``(B, 1)`` positive: the object is present.
    """

    low_res_multimasks: torch.Tensor
    high_res_multimasks: torch.Tensor
    ious: torch.Tensor
    low_res_masks: torch.Tensor
    high_res_masks: torch.Tensor
    obj_ptr: torch.Tensor
    object_score_logits: torch.Tensor


def _flat(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(HW, B, C)`` (the sequence-first token layout of the memory attention)."""
    return x.flatten(2).permute(2, 0, 1)


class Sam2(nn.Module):
    """SAM 2.1 for inference (the official ``SAM2Base`` with the sam2.1 settings).

    Parameters
    ----------
    config
        The architecture; see :data:`~napari_sam.model.sam2.configs.SAM2_CONFIGS`.
    name
        What the model is called in messages (the registered name when ``config`` is one).

    Attributes
    ----------
    image_encoder, sam_prompt_encoder, sam_mask_decoder, memory_attention, memory_encoder
        The submodules (official attribute names, hence state-dict keys).
    maskmem_tpos_enc
        ``(num_maskmem, 1, 1, mem_dim)`` temporal encoding of the memory slots.
    no_mem_embed, no_mem_pos_enc
        ``(1, 1, C)`` added to the features of a frame prompted without memory.
    no_obj_ptr
        ``(1, C)`` the object pointer of frames where the object is absent.
    no_obj_embed_spatial
        ``(1, mem_dim)`` added to the memory of frames where the object is absent.
    obj_ptr_proj, obj_ptr_tpos_proj, mask_downsample
        Output token → object pointer (3-layer MLP); temporal encoding → ``mem_dim``; a mask prompt
        (canvas size) → low-res logits for the pointer of a frame prompted with a mask.
    """

    def __init__(self, config: Sam2Config, *, name: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.name = name or sam2_config_name(config) or "sam2-custom"
        #: set by the loader: sha256 of the weights file
        self.weights_sha256: str | None = None
        #: SAM 2 has no instance decoder (kept for the loaders that look for one)
        self.instance_decoder: nn.Module | None = None
        c, m = config.d_model, config.mem_dim
        self.hidden_dim, self.mem_dim = c, m
        self.image_size = config.image_size
        self.num_maskmem = config.num_maskmem
        grid = config.embedding_size

        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        for parameter in (self.maskmem_tpos_enc, self.no_mem_embed, self.no_mem_pos_enc):
            nn.init.trunc_normal_(parameter, std=0.02)
        nn.init.trunc_normal_(self.no_obj_ptr, std=0.02)
        nn.init.trunc_normal_(self.no_obj_embed_spatial, std=0.02)

        trunk = Hiera(
            embed_dim=config.hiera_embed_dim,
            num_heads=config.hiera_num_heads,
            q_pool=config.hiera_q_pool,
            q_stride=config.hiera_q_stride,
            stages=config.hiera_stages,
            dim_mul=config.hiera_dim_mul,
            head_mul=config.hiera_head_mul,
            window_pos_embed_bkg_spatial_size=config.hiera_window_pos_embed_bkg_spatial_size,
            window_spec=config.hiera_window_spec,
            global_att_blocks=config.hiera_global_att_blocks,
        )
        neck = FpnNeck(
            d_model=c,
            backbone_channel_list=config.backbone_channel_list,
            position_encoding=PositionEmbeddingSine(c),
            fpn_interp_model=config.fpn_interp_model,
            fpn_top_down_levels=config.fpn_top_down_levels,
        )
        self.image_encoder = Sam2ImageEncoder(trunk=trunk, neck=neck, scalp=config.scalp)
        # a mask prompt (canvas) → low-res logits, for the object pointer of a frame prompted by a mask
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)

        def rope(**extra: int | bool) -> RoPEAttention:
            return RoPEAttention(
                embedding_dim=c,
                num_heads=config.mem_attn_num_heads,
                rope_theta=config.rope_theta,
                feat_sizes=(grid, grid),
                **extra,  # type: ignore[arg-type]
            )

        layer = MemoryAttentionLayer(
            d_model=c,
            dim_feedforward=config.mem_attn_dim_feedforward,
            self_attention=rope(),
            cross_attention=rope(rope_k_repeat=True, kv_in_dim=m),
        )
        self.memory_attention = MemoryAttention(d_model=c, layer=layer, num_layers=config.mem_attn_num_layers)
        self.memory_encoder = MemoryEncoder(
            out_dim=m,
            mask_downsampler=MaskDownSampler(embed_dim=c, kernel_size=3, stride=2, padding=1),
            fuser=Fuser(layer=CXBlock(dim=c), num_layers=config.mem_enc_num_layers),
            position_encoding=PositionEmbeddingSine(m),
            in_dim=c,
        )
        self.sam_prompt_encoder = Sam2PromptEncoder(
            embed_dim=c,
            image_embedding_size=(grid, grid),
            input_image_size=(config.image_size, config.image_size),
            mask_in_chans=16,
        )
        self.sam_mask_decoder = Sam2MaskDecoder(
            transformer_dim=c,
            transformer=Sam2TwoWayTransformer(depth=2, embedding_dim=c, mlp_dim=2048, num_heads=8),
            dynamic_multimask_via_stability=config.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=config.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=config.dynamic_multimask_stability_thresh,
        )
        self.obj_ptr_proj = MLP(input_dim=c, hidden_dim=c, output_dim=c, num_layers=3)
        self.obj_ptr_tpos_proj = nn.Linear(c, m)

    # ------------------------------------------------------------------------------------------------
    # one frame

    def forward(self, images: torch.Tensor) -> FrameFeatures:
        """Same as :meth:`forward_image`."""
        return self.forward_image(images)

    def forward_image(self, images: torch.Tensor) -> FrameFeatures:
        """Encode ``(B, 3, S, S)`` normalised frames (:data:`PIXEL_MEAN` / :data:`PIXEL_STD` on the 0–1
        scale, ``S = image_size``) into :class:`FrameFeatures`."""
        if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[-2:]) != (self.image_size,) * 2:
            raise ValueError(
                f"expected frames of shape (B, 3, {self.image_size}, {self.image_size}), "
                f"got {tuple(images.shape)}"
            )
        out = self.image_encoder(images)
        fpn, pos = out["backbone_fpn"], out["vision_pos_enc"]
        if len(fpn) < 3:
            raise ValueError(f"the image encoder gave {len(fpn)} feature levels; SAM 2's heads need 3")
        s0 = self.sam_mask_decoder.conv_s0(fpn[-3])
        s1 = self.sam_mask_decoder.conv_s1(fpn[-2])
        return FrameFeatures(fpn[-1], pos[-1], (s0, s1))

    def forward_sam_heads(
        self,
        image_embed: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor],
        *,
        point_coords: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool = False,
    ) -> HeadsOutput:
        """Run the prompt encoder and mask decoder on ``B`` prompts of one frame.

        Parameters
        ----------
        image_embed
            ``(B, C, h, w)`` the frame's (possibly memory-conditioned) features.
        high_res_features
            ``(B, C/8, 4h, 4w)`` and ``(B, C/4, 2h, 2w)`` (:attr:`FrameFeatures.high_res`).
        point_coords, point_labels
            ``(B, N, 2)`` float ``(x, y)`` canvas pixels and ``(B, N)`` int labels: 1 positive,
            0 negative, 2 / 3 box corners (top-left / bottom-right), -1 padding. None: no points.
        mask_inputs
            ``(B, 1, H, W)`` mask logits; resized (bilinear, antialiased) to ``4h × 4w`` when needed.
        multimask_output
            Three masks (the best is picked by predicted IoU) instead of one.
        """
        b, c, h, w = image_embed.shape
        grid = self.config.embedding_size
        if c != self.hidden_dim or (h, w) != (grid, grid):
            raise ValueError(
                f"image_embed must be (B, {self.hidden_dim}, {grid}, {grid}), got {tuple(image_embed.shape)}"
            )
        device = image_embed.device
        if point_coords is None:  # a single padding point
            point_coords = torch.zeros(b, 1, 2, device=device)
            point_labels = -torch.ones(b, 1, dtype=torch.int32, device=device)
        elif (
            point_labels is None
            or point_coords.shape[0] != b
            or point_labels.shape[:2] != point_coords.shape[:2]
        ):
            raise ValueError("point_coords (B, N, 2) and point_labels (B, N) must come together, B prompts")
        mask_prompt = None
        if mask_inputs is not None:
            if mask_inputs.ndim != 4 or tuple(mask_inputs.shape[:2]) != (b, 1):
                raise ValueError(f"mask_inputs must be ({b}, 1, H, W), got {tuple(mask_inputs.shape)}")
            size = self.sam_prompt_encoder.mask_input_size
            mask_prompt = mask_inputs
            if tuple(mask_inputs.shape[-2:]) != tuple(size):
                mask_prompt = F.interpolate(
                    mask_inputs.float(), size=size, mode="bilinear", align_corners=False, antialias=True
                )
        sparse, dense = self.sam_prompt_encoder(
            points=(point_coords, point_labels), boxes=None, masks=mask_prompt
        )
        low_res_multimasks, ious, tokens, object_score_logits = self.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=False,
            high_res_features=list(high_res_features),
        )
        present = object_score_logits > 0  # (B, 1)
        low_res_multimasks = torch.where(present[:, None, None], low_res_multimasks, NO_OBJ_SCORE).float()
        high_res_multimasks = F.interpolate(
            low_res_multimasks, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        token = tokens[:, 0]
        if multimask_output:
            best = torch.argmax(ious, dim=-1)
            rows = torch.arange(b, device=device)
            low_res_masks = low_res_multimasks[rows, best].unsqueeze(1)
            high_res_masks = high_res_multimasks[rows, best].unsqueeze(1)
            if tokens.shape[1] > 1:
                token = tokens[rows, best]
        else:
            low_res_masks, high_res_masks = low_res_multimasks, high_res_multimasks
        weight = present.float()
        obj_ptr = weight * self.obj_ptr_proj(token) + (1 - weight) * self.no_obj_ptr
        return HeadsOutput(
            low_res_multimasks,
            high_res_multimasks,
            ious,
            low_res_masks,
            high_res_masks,
            obj_ptr,
            object_score_logits,
        )

    def use_mask_as_output(
        self,
        image_embed: torch.Tensor,
        high_res_features: tuple[torch.Tensor, torch.Tensor] | list[torch.Tensor],
        mask_inputs: torch.Tensor,
    ) -> HeadsOutput:
        """Take a binary ``(B, 1, S, S)`` mask prompt as the frame's output (logits ±10), with a
        pointer from the decoder and the object present wherever the mask has a pixel.

        ``image_embed`` is the frame's plain features (no memory, no no-memory embedding).
        """
        if mask_inputs.ndim != 4 or mask_inputs.shape[1] != 1:
            raise ValueError(f"mask_inputs must be (B, 1, S, S), got {tuple(mask_inputs.shape)}")
        mask = mask_inputs.float()
        high_res_masks = mask * _MASK_AS_OUTPUT_SCALE + _MASK_AS_OUTPUT_BIAS
        low_res_masks = F.interpolate(
            high_res_masks,
            size=(high_res_masks.shape[-2] // 4, high_res_masks.shape[-1] // 4),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        ious = mask.new_ones(mask.shape[0], 1)
        obj_ptr = self.forward_sam_heads(
            image_embed, high_res_features, mask_inputs=self.mask_downsample(mask)
        ).obj_ptr
        present = (mask.flatten(1) > 0).any(dim=1, keepdim=True).float()  # (B, 1)
        object_score_logits = _MASK_AS_OUTPUT_SCALE * present + _MASK_AS_OUTPUT_BIAS
        obj_ptr = present * obj_ptr + (1 - present) * self.no_obj_ptr
        return HeadsOutput(
            low_res_masks, high_res_masks, ious, low_res_masks, high_res_masks, obj_ptr, object_score_logits
        )

    def use_multimask(self, *, is_init_cond_frame: bool, num_points: int) -> bool:
        """Whether the heads give three masks: on every frame (sam2.1 tracks with multimask output)
        when at most one point is given (a box counts two)."""
        del is_init_cond_frame  # sam2.1: multimask output on prompted and tracked frames alike
        return 0 <= num_points <= 1

    # ------------------------------------------------------------------------------------------------
    # memory

    def add_no_memory(self, image_embed: torch.Tensor) -> torch.Tensor:
        """``(B, C, h, w)`` features of a frame prompted without memory: plus the no-memory embedding."""
        return image_embed + self.no_mem_embed.view(1, -1, 1, 1)

    def condition_on_memory(
        self,
        features: FrameFeatures,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        *,
        num_obj_ptr_tokens: int,
        rotated_memory_keys: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Fuse a frame's features with a memory (:func:`.memory_bank.assemble_memory`).

        Parameters
        ----------
        features
            The frame's features, batch ``B``.
        memory, memory_pos
            ``(L, B, mem_dim)`` memory tokens and their position encoding (spatial memories first,
            then ``num_obj_ptr_tokens`` object-pointer tokens).
        rotated_memory_keys
            Per memory-attention layer, the spatial memories' cross-attention keys already projected
            and rotated (:func:`.memory_bank.memory_keys`); computed from ``memory`` when None.

        Returns
        -------
        torch.Tensor
            ``(B, C, h, w)`` the conditioned features, for :meth:`forward_sam_heads`.
        """
        b, c, h, w = features.image_embed.shape
        fused = self.memory_attention(
            curr=[_flat(features.image_embed)],
            curr_pos=[_flat(features.image_pos)],
            memory=memory,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=num_obj_ptr_tokens,
            rotated_memory_keys=rotated_memory_keys,
        )
        return fused.permute(1, 2, 0).reshape(b, c, h, w)

    def encode_memory(
        self,
        image_embed: torch.Tensor,
        high_res_masks: torch.Tensor,
        object_score_logits: torch.Tensor,
        *,
        is_mask_from_pts: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a frame and its predicted masks into a memory.

        Parameters
        ----------
        image_embed
            ``(B, C, h, w)`` the frame's plain features (not conditioned on memory).
        high_res_masks
            ``(B, 1, S, S)`` mask logits on the canvas.
        object_score_logits
            ``(B, 1)``; where not positive, the no-object embedding is added to the memory.
        is_mask_from_pts
            The masks answer a prompt: thresholded instead of passed through a sigmoid (with
            ``config.binarize_mask_from_pts_for_mem_enc``).

        Returns
        -------
        features, pos
            ``(B, mem_dim, h, w)`` memory features and their position encoding.
        """
        config = self.config
        if config.binarize_mask_from_pts_for_mem_enc and is_mask_from_pts:
            mask_for_mem = (high_res_masks > 0).float()
        else:
            mask_for_mem = torch.sigmoid(high_res_masks)
        if config.sigmoid_scale_for_mem_enc != 1.0:
            mask_for_mem = mask_for_mem * config.sigmoid_scale_for_mem_enc
        if config.sigmoid_bias_for_mem_enc != 0.0:
            mask_for_mem = mask_for_mem + config.sigmoid_bias_for_mem_enc
        out = self.memory_encoder(image_embed, mask_for_mem, skip_mask_sigmoid=True)
        features, pos = out["vision_features"], out["vision_pos_enc"][-1]
        absent = 1 - (object_score_logits > 0).float()  # (B, 1)
        features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return features, pos
