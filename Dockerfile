# One image for every weir controller: each Deployment picks its controller with
# `command: [python, -m, <package>]` (weir/bundle.py, charts/weir). It is not built or run by the
# set-up, the tests or CI, which have no container engine; tests/unit/test_dockerfile.py holds
# every command below to the ones they do run.

# The Go binaries the controllers run (the kustomize controller's build worker and sops; the
# kustomize CLI, which the helm controller's post-renderer runs; gotemplate, which renders the
# image automation controller's commit messages), from the modules pinned in
# hack/tools/ and with the command `python -m controllers.envtest build` runs (controllers/envtest.py,
# go_build_command). Same Debian release as the final stage: the binaries link its libc.
FROM golang:1.26-bookworm AS go
WORKDIR /src/hack/tools/kustomize
COPY hack/tools/kustomize/ ./
RUN go build -trimpath -ldflags "-s -w" -o /out/ sigs.k8s.io/kustomize/kustomize/v5 github.com/weir/hack/tools/kustomize/buildworker
WORKDIR /src/hack/tools/sops
COPY hack/tools/sops/ ./
RUN go build -trimpath -ldflags "-s -w" -o /out/ github.com/getsops/sops/v3/cmd/sops
WORKDIR /src/hack/tools/gotemplate
COPY hack/tools/gotemplate/ ./
RUN go build -trimpath -ldflags "-s -w" -o /out/ github.com/weir/hack/tools/gotemplate

FROM python:3.11-slim-bookworm
# gpg verifies commit signatures (spec.verify), decrypts SOPS PGP keys and signs the image
# automation's commits; ssh-keygen signs them with SSH keys. As in hack/setup.sh.
RUN apt-get update && apt-get install -y --no-install-recommends gnupg openssh-client \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY controllers/ controllers/
COPY source/ source/
COPY kustomize/ kustomize/
COPY helm/ helm/
COPY image_automation/ image_automation/
COPY notification/ notification/
COPY weir/ weir/
RUN pip install --no-cache-dir .
COPY --from=go /out/buildworker /usr/local/bin/kustomize-build-worker
COPY --from=go /out/kustomize /usr/local/bin/kustomize
COPY --from=go /out/sops /usr/local/bin/sops
COPY --from=go /out/gotemplate /usr/local/bin/gotemplate
# Where controllers/binaries.py looks first. HOME: the root filesystem is read-only and /tmp is
# the pod's emptyDir.
ENV WEIR_KUSTOMIZE_BUILD_WORKER=/usr/local/bin/kustomize-build-worker \
    WEIR_KUSTOMIZE=/usr/local/bin/kustomize \
    WEIR_SOPS=/usr/local/bin/sops \
    WEIR_GOTEMPLATE=/usr/local/bin/gotemplate \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# nobody, by number: the kubelet can only check runAsNonRoot against a numeric user.
USER 65534:65534
WORKDIR /tmp
