#!/usr/bin/env bash
# weir's main job on the embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok), a local Git repository served by git daemon,
# every controller built so far, and a GitRepository syncing that repository. Prints where
# the kubeconfig and the artifact are; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
exec .venv/bin/python hack/local.py "$@"
