#!/usr/bin/env bash
# The prepared GPU check: under 8 minutes on one GPU, one JSON (benchmarks/results/gpu_check.json).
#   bash benchmarks/gpu_check.sh            # on a GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --smoke    # every section at a tiny size, any device (the tests)
# Sections and what each measures: see benchmarks/gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
