#!/usr/bin/env bash
# Installs everything weir's tests and local run need, on a fresh Debian machine or an old one.
# Idempotent: a second run only checks. Python packages go to .venv; binaries built from Go
# modules go to ~/.cache/weir (outside the repository), so a fresh clone reuses them.
#
# --no-go: everything but Go and the binaries built with it; enough for the linters, the type
# checks and the unit tests (hack/test.sh with arguments uses it: if integration tests are
# selected, pytest builds what is missing before the first one, tests/integration/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."

go=yes
case "${1:-}" in
  "") ;;
  --no-go) go=no ;;
  *) echo "usage: hack/setup.sh [--no-go]" >&2; exit 2 ;;
esac

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
command -v git >/dev/null || packages+=(git)
# gpg verifies commit signatures (spec.verify) and decrypts SOPS PGP keys.
command -v gpg >/dev/null && command -v gpgconf >/dev/null || packages+=(gnupg)
[ "$go" = no ] || command -v go >/dev/null || packages+=(golang-go)
# ssh-keygen signs the image automation's commits with SSH keys.
command -v ssh-keygen >/dev/null || packages+=(openssh-client)
# sshd serves the Git repositories of the GitRepository tests over ssh://.
[ -x /usr/sbin/sshd ] || packages+=(openssh-server)
# A real forward proxy for proxySecretRef tests.
command -v tinyproxy >/dev/null || packages+=(tinyproxy)
# docker-registry serves the OCIRepository tests' artifacts; htpasswd makes its bcrypt users.
command -v docker-registry >/dev/null || packages+=(docker-registry)
command -v htpasswd >/dev/null || packages+=(apache2-utils)
if [ ${#packages[@]} -gt 0 ]; then
  echo "setup: apt-get install ${packages[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${packages[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  echo "setup: pip install -e .[dev]"
  if ! .venv/bin/pip install -e '.[dev]' > .venv/pip.log 2>&1; then
    cat .venv/pip.log; exit 1
  fi
  touch .venv/.installed
fi

[ "$go" = yes ] || exit 0
# kube-apiserver and kube-controller-manager from k8s.io/kubernetes (tests/controlplane/go.mod);
# about 5 minutes on 2 cores the first time, then cached. Also kwok, and MinIO for the Bucket
# tests (tests/s3/go.mod, about 2.5 more minutes). kustomize and the kustomize build worker
# (hack/tools/kustomize), sops and age-keygen for SOPS decryption (hack/tools/sops/go.mod, about
# 3 more minutes), helm to lint and render charts/weir (hack/tools/helm/go.mod, about 1m40s),
# Gitea, the tests' Git host (hack/tools/gitea/module.txt, about 3m15s), and gotemplate, which
# renders image automation commit messages (hack/tools/gotemplate/go.mod, seconds).
# Prints what it builds; once everything is cached, only checks.
.venv/bin/python -m controllers.envtest build
