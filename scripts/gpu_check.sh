#!/usr/bin/env bash
# The GPU check on a machine with no package index: installs the wheels carried in .whl/ (made here by
# scripts/gpu_wheels.sh) into /tmp/site, then runs scripts/gpu_check.py on cuda. Results go to the folder given
# as the first argument, else $OUT/gpu_check (the device tool brings $OUT back), else ./gpu_check_out.
#   bash scripts/gpu_check.sh [OUT_FOLDER] [more gpu_check.py arguments]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:+$OUT/gpu_check}}"
out="${out:-gpu_check_out}"
shift || true
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "gpu_check.sh: installing the carried wheels failed" >&2; exit 3; }
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
mkdir -p "$out"
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
python3 scripts/gpu_check.py --device cuda --out "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
