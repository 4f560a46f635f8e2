#!/usr/bin/env bash
# weir's main job on the embedded default: a local control plane (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kwok), an example fleet repository (hack/example-fleet:
# kustomize overlays and a HelmRelease of a chart in the same repository; or a copy of yours:
# --repo PATH|URL --path clusters/<name>) served by git daemon, `weir bootstrap git` onto it,
# and every controller built so far following it: source, kustomize, helm and notification (its
# webhook receiver on a loopback port it prints, for a Git host's webhooks). Prints what it
# applied and what to do next (weir get helmreleases -A, and helm history with the helm the
# set-up built); Ctrl-C stops everything. See hack/local.py.
set -euo pipefail
cd "$(dirname "$0")/.."
# Also installs Go if missing and, the first time, builds the control plane, kustomize's build
# worker, sops and helm from their pinned Go modules (about 13 minutes on 2 cores; cached in
# ~/.cache/weir).
hack/setup.sh
exec .venv/bin/python hack/local.py "$@"
