#!/usr/bin/env bash
# The package installs anywhere: build the wheel, install it into a fresh virtual environment, and run a
# tiny experiment from a folder outside the checkout (the Hydra configs ship inside the wheel).
#   bash scripts/check_wheel.sh          # about a minute; CI runs it before the tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" -m pip wheel -q --no-deps -w "$work/dist" . >/dev/null
"$PY" -m venv "$work/venv"
"$work/venv/bin/pip" install -q "torch==2.13.0" || "$work/venv/bin/pip" install -q torch   # the CPU build first
"$work/venv/bin/pip" install -q "$work"/dist/seal_rl-*.whl
mkdir "$work/elsewhere"
cd "$work/elsewhere"
WANDB_MODE=disabled "$work/venv/bin/seal" experiment=ki_eval model=tiny-random data.limit=1 conditions=[base] \
    wandb.mode=disabled hydra.run.dir="$work/elsewhere/run" >/dev/null
test -s "$work/elsewhere/run/results.json"
echo "wheel check: the installed wheel ran seal experiment=ki_eval from $work/elsewhere"
