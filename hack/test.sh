#!/usr/bin/env bash
# The whole test suite: set-up, linters, type checks, layering contracts, unit and integration
# tests (these start a real etcd + kube-apiserver + kube-controller-manager on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff check";        ruff check .
echo "== ruff format";       ruff format --check .
echo "== mypy --strict";     mypy
echo "== import contracts";  lint-imports
echo "== crds up to date";   python hack/generate_crds.py --check
echo "== pytest";            python -m pytest "$@"
