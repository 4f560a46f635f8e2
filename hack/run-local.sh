#!/usr/bin/env bash
# weir's main job on the embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager) with weir's CRDs installed and every controller built so far
# running against it. Prints where the kubeconfig is; Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
hack/setup.sh
exec .venv/bin/python -m controllers.envtest up --dir .weir/cluster "$@"
