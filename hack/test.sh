#!/usr/bin/env bash
# The one test command: set-up, linters, type checks, layering contracts, the CRD checks (crds/
# and the chart's CRD templates), then pytest with the arguments given (e.g.
# `hack/test.sh tests/unit -x`).
#
# No arguments: the whole suite (what CI runs), unit and integration tests; the integration
# tests start a real etcd + kube-apiserver + kube-controller-manager on loopback, and set-up
# first installs Go and builds, from their pinned Go modules, every binary they run.
# Arguments: set-up leaves Go alone. `-m "not integration"`, `tests/unit` or `tests/fuzz` need
# no Go at all; a selection with integration tests builds what is missing (with Go) before the
# first test, or stops at once saying why it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -eq 0 ]; then hack/setup.sh; else hack/setup.sh --no-go; fi
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check";        ruff check .
echo "== ruff format";       ruff format --check .
echo "== mypy --strict";     mypy
echo "== import contracts";  lint-imports
echo "== crds up to date";   python hack/generate_crds.py --check
echo "== chart crds";        python hack/generate_chart_crds.py --check
echo "== pytest";            python -m pytest "$@"
