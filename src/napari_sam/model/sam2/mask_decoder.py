"""SAM 2's mask decoder: SAM's two-way transformer and hypernetwork heads, plus high-resolution skip
features, an object-score token (is the object in this frame at all?) and a stability-based fallback from
the single-mask output to the best of the three ambiguity-aware masks."""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from ..common import MLP, LayerNorm2d
from ..mask_decoder import hypernetwork_mlps, output_upscaling
from ..transformer import TwoWayAttentionBlock, TwoWayTransformer

#: the layers of ``Sam2MaskDecoder.output_upscaling``: conv-transpose, norm, activation, conv-transpose, act.
_Upscaling = tuple[nn.ConvTranspose2d, LayerNorm2d, nn.Module, nn.ConvTranspose2d, nn.Module]


class Sam2TwoWayTransformer(TwoWayTransformer):
    """SAM's :class:`~napari_sam.model.transformer.TwoWayTransformer` with SAM 2's state-dict keys.

    The mathematics is the same; only each block's token MLP is stored as a two-layer
    :class:`~napari_sam.model.common.MLP` (keys ``mlp.layers.0`` / ``mlp.layers.1``; SAM's are
    ``mlp.lin1`` / ``mlp.lin2``). Defaults are the ones SAM 2 builds its decoder with.
    """

    def __init__(
        self,
        *,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        if activation is not nn.ReLU:
            raise ValueError(f"SAM 2's two-way transformer uses ReLU in its MLPs, got {activation.__name__}")
        super().__init__(
            depth=depth,
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            activation=activation,
            attention_downsample_rate=attention_downsample_rate,
        )
        for block in self.layers:
            # replaces the MLPBlock in place: the key keeps its position in the state dict
            cast(TwoWayAttentionBlock, block).add_module(
                "mlp",
                MLP(input_dim=embedding_dim, hidden_dim=mlp_dim, output_dim=embedding_dim, num_layers=2),
            )


class Sam2MaskDecoder(nn.Module):
    """Predict masks, their IoU, the output tokens and an object score from image and prompt embeddings.

    Defaults are those of the sam2.1 models as the official builders make them (``build_sam2`` and
    ``build_sam2_video_predictor`` turn ``dynamic_multimask_via_stability`` on).

    Parameters
    ----------
    transformer_dim
        Channels ``D`` of embeddings and tokens (256).
    transformer
        The two-way transformer; by default :class:`Sam2TwoWayTransformer` (depth 2, 8 heads, MLP 2048).
    num_multimask_outputs
        Ambiguity-aware masks (3); one more token gives the single-mask output.
    activation
        Activation of the up-scaling layers.
    iou_head_depth, iou_head_hidden_dim
        Shape of the IoU prediction MLP.
    use_high_res_features
        Add the stride-4 and stride-8 image features (already projected by :attr:`conv_s0` /
        :attr:`conv_s1`) during up-scaling.
    iou_prediction_use_sigmoid
        Squash the IoU predictions to ``[0, 1]``.
    dynamic_multimask_via_stability
        In eval mode, when one mask is asked for and the single-mask output is unstable, return the
        multimask output with the highest predicted IoU instead.
    dynamic_multimask_stability_delta
        Logit offset of the stability score (IoU of the masks thresholded at ``±delta``).
    dynamic_multimask_stability_thresh
        Stability score at or above which the single-mask output is kept.
    pred_obj_scores
        Predict an object-score logit from a dedicated token (otherwise it is 10: always present).
    pred_obj_scores_mlp
        The object-score head is a 3-layer MLP (a linear layer otherwise).
    use_multimask_token_for_obj_ptr
        With ``multimask_output``, return the three multimask tokens as ``sam_tokens_out`` (otherwise
        always the single-mask token).
    """

    def __init__(
        self,
        *,
        transformer_dim: int = 256,
        transformer: TwoWayTransformer | None = None,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        use_multimask_token_for_obj_ptr: bool = True,
    ) -> None:
        super().__init__()
        if transformer is None:
            transformer = Sam2TwoWayTransformer(embedding_dim=transformer_dim)
        if transformer.embedding_dim != transformer_dim:
            raise ValueError(
                f"transformer works on {transformer.embedding_dim} channels, "
                f"transformer_dim is {transformer_dim}"
            )
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, transformer_dim)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = output_upscaling(transformer_dim, activation)
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(transformer_dim, transformer_dim // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(transformer_dim, transformer_dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = hypernetwork_mlps(transformer_dim, self.num_mask_tokens)
        self.iou_prediction_head = MLP(
            input_dim=transformer_dim,
            hidden_dim=iou_head_hidden_dim,
            output_dim=self.num_mask_tokens,
            num_layers=iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head: nn.Module = (
                MLP(input_dim=transformer_dim, hidden_dim=transformer_dim, output_dim=1, num_layers=3)
                if pred_obj_scores_mlp
                else nn.Linear(transformer_dim, 1)
            )
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode masks.

        Parameters
        ----------
        image_embeddings
            ``(1, D, H, W)`` with ``repeat_image`` (shared by the ``B`` prompts), else ``(B, D, H, W)``.
        image_pe
            ``(1, D, H, W)`` dense positional encoding (``get_dense_pe()``).
        sparse_prompt_embeddings
            ``(B, N, D)``.
        dense_prompt_embeddings
            ``(B, D, H, W)``.
        multimask_output
            True: the ambiguity-aware masks; False: one mask.
        repeat_image
            Share one image embedding among all prompts.
        high_res_features
            With ``use_high_res_features``: ``[feat_s0, feat_s1]``, ``(B or 1, D/8, 4H, 4W)`` and
            ``(B or 1, D/4, 2H, 2W)``, already projected by :attr:`conv_s0` / :attr:`conv_s1`.

        Returns
        -------
        masks
            ``(B, K, 4H, 4W)`` logits; ``K`` = ``num_multimask_outputs`` or 1.
        iou_pred
            ``(B, K)``.
        sam_tokens_out
            ``(B, K', D)`` mask output tokens (the object pointer's source): the multimask tokens
            (``K' = 3``) with ``multimask_output`` and ``use_multimask_token_for_obj_ptr``, else the
            single-mask token (``K' = 1``).
        object_score_logits
            ``(B, 1)``; 10 when objects scores are not predicted.
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse_prompt_embeddings,
            dense_prompt_embeddings=dense_prompt_embeddings,
            repeat_image=repeat_image,
            high_res_features=high_res_features,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, :1], iou_pred[:, :1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            # the single-mask token, also after a multimask click: it is the one trained as object memory
            sam_tokens_out = mask_tokens_out[:, :1]
        return masks, iou_pred, sam_tokens_out, object_score_logits

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All outputs: masks ``(B, T, 4H, 4W)``, IoU ``(B, T)``, mask tokens ``(B, T, D)`` and object
        score logits ``(B, 1)``, ``T = num_mask_tokens``; the arguments are :meth:`forward`'s."""
        b = sparse_prompt_embeddings.shape[0]
        heads = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            heads.insert(0, self.obj_score_token.weight)
        first = 1 if self.pred_obj_scores else 0  # index of the IoU token
        output_tokens = torch.cat(heads, dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        if repeat_image:
            if image_embeddings.shape[0] != 1:
                raise ValueError(
                    f"repeat_image shares one image embedding, got a batch of {image_embeddings.shape[0]}"
                )
            src = image_embeddings.expand(b, -1, -1, -1)
        else:
            if image_embeddings.shape[0] != b:
                raise ValueError(
                    f"image_embeddings batch ({image_embeddings.shape[0]}) must match the prompts' ({b}) "
                    "without repeat_image"
                )
            src = image_embeddings
        if image_pe.shape[0] != 1:
            raise ValueError(f"image_pe must have batch size 1 (get_dense_pe()), got {image_pe.shape[0]}")
        src = src + dense_prompt_embeddings
        _, c, h, w = src.shape

        hs, image_tokens = self.transformer(src, image_pe, tokens)
        iou_token_out = hs[:, first]
        mask_tokens_out = hs[:, first + 1 : first + 1 + self.num_mask_tokens]

        upscaled = self._upscale(image_tokens.transpose(1, 2).reshape(b, c, h, w), high_res_features)
        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (B, T, D/8)
        masks = (hyper_in @ upscaled.flatten(2)).view(b, -1, *upscaled.shape[-2:])

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:  # "present" with certainty: sigmoid(10) ≈ 1
            object_score_logits = iou_pred.new_full((b, 1), 10.0)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def _upscale(self, src: torch.Tensor, high_res_features: list[torch.Tensor] | None) -> torch.Tensor:
        """``(B, D, H, W)`` image tokens → ``(B, D/8, 4H, 4W)``, with the skip features if used."""
        if not self.use_high_res_features:
            return self.output_upscaling(src)
        if high_res_features is None or len(high_res_features) != 2:
            raise ValueError("use_high_res_features: pass high_res_features=[feat_s0, feat_s1]")
        up1, norm, act1, up2, act2 = cast(_Upscaling, tuple(self.output_upscaling))
        feat_s0, feat_s1 = high_res_features
        x = act1(norm(up1(src) + feat_s1))
        return act2(up2(x) + feat_s0)

    def _stability_scores(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """``(B, K, H, W)`` logits → ``(B, K)``: area above ``+delta`` over area above ``-delta`` (1 if
        the latter is empty)."""
        flat = mask_logits.flatten(-2)
        delta = self.dynamic_multimask_stability_delta
        inner = (flat > delta).sum(dim=-1).float()
        outer = (flat > -delta).sum(dim=-1).float()
        return torch.where(outer > 0, inner / outer.clamp(min=1), torch.ones_like(outer))

    def _dynamic_multimask_via_stability(
        self, all_mask_logits: torch.Tensor, all_iou_scores: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output ``(B, 1, …)`` / ``(B, 1)`` where it is stable, else the multimask output
        with the highest predicted IoU, from all outputs ``(B, T, H, W)`` and ``(B, T)``."""
        multi_logits, multi_iou = all_mask_logits[:, 1:], all_iou_scores[:, 1:]
        best = multi_iou.argmax(dim=-1)
        rows = torch.arange(multi_iou.shape[0], device=multi_iou.device)
        best_logits = multi_logits[rows, best].unsqueeze(1)
        best_iou = multi_iou[rows, best].unsqueeze(1)

        single_logits, single_iou = all_mask_logits[:, :1], all_iou_scores[:, :1]
        stable = self._stability_scores(single_logits) >= self.dynamic_multimask_stability_thresh  # (B, 1)
        logits = torch.where(stable[..., None, None], single_logits, best_logits)
        iou = torch.where(stable, single_iou, best_iou)
        return logits, iou
