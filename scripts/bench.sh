#!/usr/bin/env bash
# Set up a virtualenv with the project, then run the main job: `harness bench` with the default
# experiment (about two minutes: three schedulers x two load levels on an embedded cloud), which
# writes runs/bench/report.html and runs/bench/summary.csv. Extra arguments go to `harness bench`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e .
exec .venv/bin/harness bench "$@"
