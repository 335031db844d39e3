#!/usr/bin/env bash
# Prepares `.whl/` for `scripts/gpu_check.sh` on a GPU machine that reaches no package index and no model hub:
#   - wheels (Python 3.12, x86-64) of what seal imports there that such a machine lacks, at the versions of
#     this checkout's .venv: trl and datasets (the plain pipeline, the M-step), hydra-core, omegaconf and antlr4
#     (configs), dill and multiprocess (datasets). torch, transformers, peft, accelerate, tokenizers, pyyaml,
#     psutil, pandas, pyarrow and xxhash are expected there already;
#   - `.whl/smollm2-tokenizer/`: the SmolLM2 tokenizer files (a few MB; from seal's model cache, built from the
#     embedded GGUF when missing), which the randomly initialised Qwen2.5 models there are paired with.
# `.whl/` is added to .git/info/exclude: it travels with the device tool's `carry`, never in a commit.
#   bash scripts/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
mkdir -p .whl .git/info
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude

NAMES="trl datasets hydra-core omegaconf antlr4-python3-runtime dill multiprocess"
for name in $NAMES; do
  version=$("$PY" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
  if [ -z "$version" ]; then echo "gpu_wheels: $name is not installed in $PY's environment" >&2; exit 1; fi
  rm -f .whl/"$(echo "$name" | tr - _)"-*.whl
  if ! "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$name==$version" 2>/dev/null; then
    # antlr4-python3-runtime 4.9.3 is published as a source archive only: build its (pure Python) wheel here
    "$PY" -m pip wheel -q --no-deps -w .whl "$name==$version"
  fi
done

"$PY" - <<'EOF'
import sys
from pathlib import Path

sys.path.insert(0, ".")
from seal.models.loading import _embedded_folder  # the cached SmolLM2 folder, converted once if missing

src, dst = _embedded_folder("smollm2-135m"), Path(".whl/smollm2-tokenizer")
dst.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.name.startswith("tokenizer") or f.name in ("chat_template.jinja", "special_tokens_map.json"):
        (dst / f.name).write_bytes(f.read_bytes())
print("gpu_wheels: tokenizer files ->", dst, sorted(p.name for p in dst.iterdir()))
EOF
ls -la .whl
du -sh .whl
