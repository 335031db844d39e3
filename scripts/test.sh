#!/usr/bin/env bash
# The test suite: unit tests on tiny random models (seconds) plus a few integration tests on the
# real SmolLM2 model (minutes). Run inside the venv from scripts/setup.sh:
#   bash scripts/test.sh            # everything
#   bash scripts/test.sh -m "not slow"   # unit tests only
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false
python -m pytest -q -p no:cacheprovider "$@"
