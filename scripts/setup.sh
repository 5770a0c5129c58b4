#!/usr/bin/env bash
# Sets up recnas in ./.venv (or $RECNAS_VENV): torch, FBGEMM and TorchRec in the order TorchRec needs,
# then recnas itself (editable). Idempotent: a second run with everything in place takes seconds.
#
# Which build: with an NVIDIA GPU visible (nvidia-smi works) or RECNAS_DEVICE=cuda, the CUDA wheels of
# torch + fbgemm-gpu are installed; otherwise (the default, and always on CI) the CPU builds
# torch==2.13.0 + fbgemm-gpu-cpu==1.8.0. torchrec==1.8.0 is installed with --no-deps in both cases,
# because it declares a dependency on the CUDA package fbgemm-gpu.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${RECNAS_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0
FBGEMM_VERSION=1.8.0
TORCHREC_VERSION=1.8.0

device=${RECNAS_DEVICE:-}
if [ -z "$device" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then device=cuda; else device=cpu; fi
fi
stamp="$VENV/.recnas-setup-$device-$TORCH_VERSION-$FBGEMM_VERSION-$TORCHREC_VERSION-$(sha1sum pyproject.toml | cut -c1-12)"
if [ -f "$stamp" ]; then
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip="$VENV/bin/python -m pip --disable-pip-version-check -q"
$pip install --upgrade "pip>=23" >/dev/null
if [ "$device" = cuda ]; then
  echo "recnas setup: CUDA build (torch==$TORCH_VERSION, fbgemm-gpu==$FBGEMM_VERSION)" >&2
  # A venv set up earlier with the CPU builds: pip would keep torch 2.13.0+cpu (a local version
  # satisfies torch==2.13.0) beside the CPU FBGEMM, so those go first.
  if "$VENV/bin/python" -c "import sys, torch; sys.exit(torch.version.cuda is not None)" 2>/dev/null; then
    $pip uninstall -y torch fbgemm-gpu-cpu >/dev/null
  fi
  $pip install "torch==$TORCH_VERSION" "fbgemm-gpu==$FBGEMM_VERSION"
else
  echo "recnas setup: CPU build (torch==$TORCH_VERSION, fbgemm-gpu-cpu==$FBGEMM_VERSION)" >&2
  $pip install "torch==$TORCH_VERSION" "fbgemm-gpu-cpu==$FBGEMM_VERSION"
fi
# TorchRec's real runtime needs, then TorchRec itself without its (CUDA) fbgemm-gpu requirement.
$pip install tensordict "torchmetrics==1.0.3" tqdm pyre-extensions iopath
$pip install --no-deps "torchrec==$TORCHREC_VERSION"
# recnas and its declared dependencies (torch etc. are already satisfied, so nothing is re-resolved).
$pip install -e ".[test]"
rm -f "$VENV"/.recnas-setup-* && touch "$stamp"
echo "recnas setup: done ($VENV)" >&2
