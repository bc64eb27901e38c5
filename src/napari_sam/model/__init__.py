"""Pure-PyTorch Segment Anything: encoder, prompt encoder, mask decoder, weights handling."""

from .build import MODEL_NAMES, build_sam
from .checkpoint import infer_config, read_checkpoint, save_safetensors
from .configs import CONFIGS, SamConfig
from .instance_decoder import InstanceDecoder
from .registry import OFFICIAL_WEIGHTS, fetch_weights
from .sam import Sam

__all__ = [
    "CONFIGS",
    "MODEL_NAMES",
    "OFFICIAL_WEIGHTS",
    "InstanceDecoder",
    "Sam",
    "SamConfig",
    "build_sam",
    "fetch_weights",
    "infer_config",
    "read_checkpoint",
    "save_safetensors",
]
