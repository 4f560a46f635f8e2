#!/usr/bin/env bash
# weir's main job on the embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok), a local Git repository served by git daemon,
# every controller built so far, and a GitRepository syncing that repository. Prints where
# the kubeconfig and the artifact are; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
# Also installs Go if missing and, the first time, builds the control plane, kustomize's build worker and
# sops from their pinned Go modules (about 11 minutes on 2 cores; cached in ~/.cache/weir).
hack/setup.sh
exec .venv/bin/python hack/local.py "$@"
