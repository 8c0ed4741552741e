#!/usr/bin/env bash
# Create ./.venv (if needed) and install mdlib with everything the notebooks and tests use.
# On a machine without a CUDA GPU, torch is pinned to the 2.13.0 CPU build first, so that no
# multi-GB CUDA wheel is pulled in; on a CUDA machine pip's default torch (with CUDA) is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    python -m pip install -q "torch>=2.3"
  else
    python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
python -m pip install -q -e ".[test,notebooks,graph]"
python -m ipykernel install --user --name python3 >/dev/null 2>&1 || true
python -c "import torch, mdlib; print(f'mdlib ready: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
