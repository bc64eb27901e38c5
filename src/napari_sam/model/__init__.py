"""Pure-PyTorch Segment Anything (SAM 1 and SAM 2.1): encoders, heads, memory, weights handling."""

from .build import MODEL_NAMES, build_sam
from .checkpoint import infer_config, read_checkpoint, save_safetensors
from .configs import CONFIGS, SamConfig
from .instance_decoder import InstanceDecoder
from .registry import OFFICIAL_WEIGHTS, SAM2_WEIGHTS, fetch_sam2_weights, fetch_weights
from .sam import Sam
from .sam2.configs import SAM2_CONFIGS, Sam2Config
from .sam2.sam2 import Sam2

__all__ = [
    "CONFIGS",
    "MODEL_NAMES",
    "OFFICIAL_WEIGHTS",
    "SAM2_CONFIGS",
    "SAM2_WEIGHTS",
    "InstanceDecoder",
    "Sam",
    "Sam2",
    "Sam2Config",
    "SamConfig",
    "build_sam",
    "fetch_sam2_weights",
    "fetch_weights",
    "infer_config",
    "read_checkpoint",
    "save_safetensors",
]
