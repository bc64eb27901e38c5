#!/usr/bin/env bash
# Create (or update) the reference environment: the official segment-anything package, the
# torch/torchvision it needs, and this package, side by side in one virtualenv.
#
# It is used by the parity fixtures (scripts/make_golden.py, scripts/make_sam2_*_fixtures.py), the slow parity tests
# (tests/model/test_parity_vit_b_slow.py) and the benchmarks (benchmarks/bench_predict.py).
# The library itself never imports segment-anything or torchvision.
#
#   scripts/setup_reference_env.sh                     # → <repo>/.venv-ref
#   REF_VENV=/somewhere/else scripts/setup_reference_env.sh
#   PYTHON=python3.12 scripts/setup_reference_env.sh   # interpreter used to create the venv
#
# Safe to run again: an existing venv is reused and pip skips what is already installed.
# Then:
#   NAPARI_SAM_REFERENCE_PYTHON=<venv>/bin/python python -m pytest -m slow
#   <venv>/bin/python benchmarks/bench_predict.py
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REF_VENV="${REF_VENV:-$ROOT/.venv-ref}"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TORCH_VERSION:-2.14.1}"
TORCHVISION_VERSION="${TORCHVISION_VERSION:-0.29.1}"

if [[ -x "$REF_VENV/bin/python" ]] && "$REF_VENV/bin/python" -c "import sys" 2>/dev/null; then
  echo "reusing the virtualenv at $REF_VENV"
else
  if [[ -e "$REF_VENV" ]]; then
    echo "error: $REF_VENV exists but is not a working virtualenv; remove it or set REF_VENV" >&2
    exit 1
  fi
  echo "creating a virtualenv at $REF_VENV with $("$PYTHON" --version 2>&1)"
  "$PYTHON" -m venv "$REF_VENV"
fi

PY="$REF_VENV/bin/python"
# The official implementation and the exact torch/torchvision pair it runs with.
"$PY" -m pip install \
  "torch==$TORCH_VERSION" \
  "torchvision==$TORCHVISION_VERSION" \
  "segment-anything==1.0" \
  opencv-python-headless  # the official AMG's small-region clean-up (make_golden.py --amg)
# MobileSAM's TinyViT (vit_t parity: make_vit_t_fixtures.py, the slow test of tests/model/test_vit_t.py).
"$PY" -m pip install "mobilesam-mirror==1.0.0" "timm==1.0.31"
# The official SAM 2 (sam2 1.1.0, an sdist: built against the torch above, without its optional CUDA
# extension) for the SAM 2 parity fixtures (scripts/make_sam2_*_fixtures.py).
SAM2_BUILD_CUDA=0 "$PY" -m pip install --no-build-isolation "sam2==1.1.0"
# This package (editable, so the benchmarks and fixtures see the working tree).
"$PY" -m pip install -e "$ROOT"

"$PY" - <<'EOF'
import sam2
import segment_anything
import torch
import torchvision

import napari_sam

print(
    f"reference environment ready: torch {torch.__version__}, torchvision {torchvision.__version__}, "
    f"segment_anything from {segment_anything.__file__}, sam2 from {sam2.__file__}, "
    f"napari_sam from {napari_sam.__file__}"
)
EOF
echo "use it with: NAPARI_SAM_REFERENCE_PYTHON=$PY python -m pytest -m slow"
