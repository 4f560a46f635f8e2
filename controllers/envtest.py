"""A real local control plane (etcd + kube-apiserver + kube-controller-manager) on loopback.

The same idea as controller-runtime's envtest: real binaries, client-certificate auth, RBAC,
the CRDs from ``crds/`` installed and established before anyone uses it. The tests and the
local demo both run on it.

Binaries are found as ``controllers.binaries`` says (``WEIR_<NAME>``, then
``$KUBEBUILDER_ASSETS/<name>``, then the cache directory, ``$WEIR_CACHE_DIR`` or
``~/.cache/weir``); the ones in ``BUILT`` missing from all of those are built once from their
pinned Go modules (``tests/controlplane/...``, ``hack/tools/...``) into the cache.

Test and development support only: no controller, and nothing else in the runtime, imports it
(import-linter contracts in ``pyproject.toml``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from controllers.binaries import (
    BUILT,
    DOWNLOADED_MODULE_PIN,
    cache_dir,
    cached_path,
    find_binary,
)

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "die_with_parent",
    "ensure_binaries",
    "find_binary",
    "free_port",
    "go_build_command",
    "main",
]

KUBERNETES_VERSION = "v1.34.4"
REPO_ROOT = Path(__file__).resolve().parent.parent
GO_MODULE_DIR = REPO_ROOT / "tests" / "controlplane"
CRD_DIR = REPO_ROOT / "crds"
# Run as separate processes by name: the runtime never imports a controller.
CONTROLLER_PACKAGES = ("source", "kustomize", "helm", "image_automation", "notification")
ADMIN_USER = "weir-admin"
UNPRIVILEGED_USER = "weir-user"
START_TIMEOUT_SECONDS = 60.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be built or started; the message says why."""


def ensure_binaries() -> dict[str, Path]:
    """Find every binary in ``BUILT`` (the control plane's, MinIO, kustomize, the build worker,
    sops, age-keygen, helm, Gitea, gotemplate), building from their pinned Go modules the ones
    that are missing."""
    missing = [name for name in BUILT if not find_binary(name)]
    if missing and not shutil.which("go"):
        raise ControlPlaneError(
            f"cannot build {', '.join(missing)}: no Go toolchain on PATH (hack/setup.sh "
            "installs Go and builds them; or set WEIR_<NAME> to each binary)"
        )
    if missing:
        print(
            f"building {', '.join(missing)} from their pinned Go modules into {cache_dir()}; "
            "only the first time (everything: about 16 minutes on 2 cores)",
            flush=True,
        )
        _build(missing)
    found = {name: find_binary(name) for name in ("etcd", *BUILT)}
    absent = [name for name, path in found.items() if path is None]
    if absent:
        raise ControlPlaneError(
            f"{', '.join(absent)} not found; set WEIR_<NAME> to a binary or let it be built"
        )
    return {name: path for name, path in found.items() if path is not None}


def _build(names: list[str]) -> None:
    by_module: dict[Path, list[str]] = {}
    for name in names:
        by_module.setdefault(BUILT[name][0], []).append(name)
    for module, group in by_module.items():
        pinned_download = (module / DOWNLOADED_MODULE_PIN).is_file()
        if not pinned_download and not (module / "go.mod").is_file():
            raise ControlPlaneError(f"cannot build {', '.join(group)}: {module}/go.mod is missing")
        cache_dir().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix="weir-build-", dir=cache_dir()))
        try:
            print(f"building {', '.join(group)} from {module} (first time only)", flush=True)
            if pinned_download:
                _build_gitea(module / DOWNLOADED_MODULE_PIN, staging)
            else:
                subprocess.run(go_build_command(group, str(staging)), cwd=module, check=True)
            for name in group:
                cached_path(name).parent.mkdir(parents=True, exist_ok=True)
                # Files the binary reads at run time go first: the binary marks a finished build.
                for directory in _BESIDE_BINARY.get(name, ()):
                    shutil.rmtree(cached_path(name).parent / directory, ignore_errors=True)
                    (staging / directory).rename(cached_path(name).parent / directory)
                (staging / _go_output_name(BUILT[name][1])).rename(cached_path(name))
        except subprocess.CalledProcessError as err:
            raise ControlPlaneError(
                f"go build of {', '.join(group)} failed with exit code {err.returncode}"
            ) from err
        finally:
            shutil.rmtree(staging, ignore_errors=True)


# Gitea reads its templates and locales from STATIC_ROOT_PATH at run time: the binary's directory.
_BESIDE_BINARY = {"gitea": ("templates", "options")}


def _build_gitea(pin: Path, staging: Path) -> None:
    """Build Gitea into ``staging`` from the module version ``pin`` names, with ``templates/`` and
    ``options/`` beside it.

    Its go.mod names another path (``gitea.dev``) than the one it is served under, so it is
    built as the main module in its own downloaded directory (read-only: ``-mod=readonly``),
    which also keeps its replace lines. Without cgo: Gitea's default SQLite is pure Go.
    """
    lines = [line for line in pin.read_text().splitlines() if line and not line.startswith("#")]
    path, version, expected_sum = lines[0].split()
    download = subprocess.run(
        ["go", "mod", "download", "-json", f"{path}@{version}"],
        cwd=staging,
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(download.stdout or "{}")
    if download.returncode or info.get("Error"):
        why = info.get("Error") or download.stderr.strip()
        raise ControlPlaneError(f"cannot download {path}@{version}: {why}")
    if info.get("Sum") != expected_sum:
        raise ControlPlaneError(
            f"{path}@{version} has hash {info.get('Sum')}, not {expected_sum} as {pin} pins"
        )
    source = Path(info["Dir"])
    ldflags = f"-s -w -X main.Version={version.removeprefix('v')}"
    subprocess.run(
        [
            "go",
            "build",
            "-mod=readonly",
            "-trimpath",
            "-ldflags",
            ldflags,
            "-o",
            str(staging / "gitea"),
            ".",
        ],
        cwd=source,
        env={**os.environ, "CGO_ENABLED": "0"},
        check=True,
    )
    for directory in _BESIDE_BINARY["gitea"]:
        shutil.copytree(source / directory, staging / directory)
        # The module cache is read-only; the copies must stay removable.
        for copied in (staging / directory, *(staging / directory).rglob("*")):
            copied.chmod(copied.stat().st_mode | 0o200)


def go_build_command(names: Sequence[str], output_dir: str) -> list[str]:
    """The ``go build`` that builds ``names`` (of ``BUILT``, all of one module) into
    ``output_dir``, run in their module's directory. The Dockerfile runs the same command."""
    modules = {BUILT[name][0] for name in names}
    if len(modules) != 1:
        raise ValueError(f"{', '.join(names)} are not all built from one Go module")
    packages = [BUILT[name][1] for name in names]
    ldflags = _ldflags(modules.pop())
    return ["go", "build", "-trimpath", "-ldflags", ldflags, "-o", output_dir, *packages]


def _ldflags(module: Path) -> str:
    if module == GO_MODULE_DIR:
        return _KUBERNETES_LDFLAGS
    if module == BUILT["helm"][0]:
        # Else `helm version` says v4.2; Helm's own Makefile sets the same variable.
        version = _required(module, "helm.sh/helm/v4")
        return f"-s -w -X helm.sh/helm/v4/internal/version.version={version}"
    return "-s -w"


def _required(module: Path, path: str) -> str:
    """The version of ``path`` that ``module``'s go.mod requires."""
    for line in (module / "go.mod").read_text().splitlines():
        words = line.split()
        if words[:1] == ["require"]:
            words = words[1:]
        if len(words) >= 2 and words[0] == path:
            return words[1]
    raise ControlPlaneError(f"{module}/go.mod requires no {path}")


def _go_output_name(package: str) -> str:
    """The file ``go build -o DIR`` writes for ``package``: its last path element, skipping a
    major-version suffix (``go.etcd.io/etcd/server/v3`` -> ``server``)."""
    parts = package.split("/")
    return (
        parts[-2]
        if len(parts) > 1 and parts[-1][1:].isdigit() and parts[-1][0] == "v"
        else parts[-1]
    )


_KUBERNETES_LDFLAGS = " ".join(
    [
        "-s -w",
        f"-X k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
        "-X k8s.io/component-base/version.gitMajor=1",
        f"-X k8s.io/component-base/version.gitMinor={KUBERNETES_VERSION.split('.')[1]}",
        "-X k8s.io/component-base/version.gitTreeState=clean",
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """A ``preexec_fn`` for long-running children: they die with the process that started them
    and hear SIGINT/SIGTERM even if that process blocks them."""
    # A killed test run must not leave an API server behind.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    # A parent waiting in sigwait() blocks these; a child must still hear them to stop cleanly.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


# Certificates


@dataclass
class _Certs:
    """A CA, the API server's serving pair and client pairs, as PEM files under ``root``."""

    root: Path

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ca_key = _new_key()
        ca = _certificate(_name("weir-envtest-ca"), ca_key, ca_key, None, is_ca=True)
        self._write("ca", ca, ca_key)
        serving_key = _new_key()
        sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
            x509.IPAddress(_ip("127.0.0.1")),
            x509.IPAddress(_ip("10.0.0.1")),
        ]
        serving = _certificate(_name("kube-apiserver"), serving_key, ca_key, ca, sans=sans)
        self._write("apiserver", serving, serving_key)
        for user, group in ((ADMIN_USER, "system:masters"), (UNPRIVILEGED_USER, "weir:users")):
            key = _new_key()
            self._write(user, _certificate(_name(user, group), key, ca_key, ca), key)
        sa_key = _new_key()
        (self.root / "sa.key").write_bytes(_key_pem(sa_key))
        (self.root / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def path(self, name: str, ext: str) -> Path:
        return self.root / f"{name}.{ext}"

    def _write(self, name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> None:
        self.path(name, "crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.path(name, "key").write_bytes(_key_pem(key))
        self.path(name, "key").chmod(0o600)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attrs)


def _ip(text: str) -> Any:
    import ipaddress

    return ipaddress.ip_address(text)


def _certificate(
    subject: x509.Name,
    key: rsa.RSAPrivateKey,
    signer_key: rsa.RSAPrivateKey,
    signer: x509.Certificate | None,
    *,
    is_ca: bool = False,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.subject if signer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def _kwok_logs(path: Path) -> dict[str, Any]:
    """kwok's configuration: every pod's containers print the file at ``path``."""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "every-pod"},
        "spec": {"selector": {}, "logs": [{"containers": [], "logsFile": str(path)}]},
    }


# kwok's pod stages (Stage API, kwok.x-k8s.io/v1alpha1). Any Pod stage given with --config
# replaces all of kwok's built-in ones (its getDefaultPodStages applies only when none is
# given), so the three built-in stages are written out here beside weir's own:
# - pod-ready: a scheduled pod starts running and is Ready (Deployments become Available);
# - pod-complete: a running pod owned by a Job succeeds (Jobs complete, hook Jobs pass),
#   unless it is annotated ``weir.test/outcome: failed``;
# - job-pod-failed (weir's): a running pod owned by a Job and so annotated (from the Job's
#   pod template) fails, so the Job controller fails the Job (a failing Helm hook Job);
# - pod-delete: a pod being deleted goes at once;
# - helm-test-pod: a running bare pod annotated as a Helm test hook (``helm.sh/hook: test``,
#   or Helm 2's ``test-success``) ends: Failed if it is annotated ``weir.test/outcome:
#   failed``, Succeeded otherwise. Without it ``helm test`` would wait for its pods forever.
# Each pod matches at most one stage at a time (kwok picks at random among matches), so the
# selectors of stages that could overlap are made disjoint by the outcome annotation.
TEST_OUTCOME_ANNOTATION = "weir.test/outcome"
_NOT_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"}
_RUNNING = {"key": ".status.phase", "operator": "In", "values": ["Running"]}

_POD_READY_STATUS = """\
{{ $now := Now }}
conditions:
- {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
- {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
{{ range .spec.readinessGates }}
- {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ $now | Quote }}}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  state: {running: {startedAt: {{ $now | Quote }}}}
{{ end }}
initContainerStatuses:
{{ range .spec.initContainers }}
- name: {{ .name | Quote }}
  image: {{ .image | Quote }}
  ready: true
  restartCount: 0
  {{ if eq .restartPolicy "Always" }}
  started: true
  state: {running: {startedAt: {{ $now | Quote }}}}
  {{ else }}
  state: {terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, \
finishedAt: {{ $now | Quote }}}}
  {{ end }}
{{ end }}
hostIP: {{ NodeIPWith .spec.nodeName | Quote }}
podIP: {{ PodIPWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) \
( or .metadata.name "" ) ( or .metadata.namespace "" ) | Quote }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _terminated_status(phase: str, exit_code: int, reason: str) -> str:
    """A ``statusTemplate`` that ends every container with ``exit_code`` and the pod in
    ``phase``."""
    return f"""\
{{{{ $now := Now }}}}
containerStatuses:
{{{{ range .spec.containers }}}}
- name: {{{{ .name | Quote }}}}
  image: {{{{ .image | Quote }}}}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {exit_code}
      reason: {reason}
      startedAt: {{{{ $now | Quote }}}}
      finishedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
phase: {phase}
"""


def _pod_stage(name: str, selector: dict[str, Any], next_step: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": selector,
            "next": next_step,
        },
    }


def _kwok_pod_stages() -> list[dict[str, Any]]:
    """kwok's built-in pod stages and weir's stages for Helm test pods and failing Job pods
    (see above)."""
    job = {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]}
    test_hook = {
        "key": '.metadata.annotations["helm.sh/hook"]',
        "operator": "In",
        "values": ["test", "test-success"],
    }
    # A test hook may be a Job's pod (its template annotated): pod-complete has it then.
    not_job = {"key": ".metadata.ownerReferences.[].kind", "operator": "NotIn", "values": ["Job"]}
    outcome = f'.metadata.annotations["{TEST_OUTCOME_ANNOTATION}"]'
    fails = {"key": outcome, "operator": "In", "values": ["failed"]}
    passes = {"key": outcome, "operator": "NotIn", "values": ["failed"]}
    return [
        _pod_stage(
            "pod-ready",
            {
                "matchExpressions": [
                    _NOT_DELETED,
                    {"key": ".status.podIP", "operator": "DoesNotExist"},
                ]
            },
            {"statusTemplate": _POD_READY_STATUS},
        ),
        _pod_stage(
            "pod-complete",
            {"matchExpressions": [_NOT_DELETED, _RUNNING, job, passes]},
            {"statusTemplate": _terminated_status("Succeeded", 0, "Completed")},
        ),
        _pod_stage(
            "job-pod-failed",
            {"matchExpressions": [_NOT_DELETED, _RUNNING, job, fails]},
            {"statusTemplate": _terminated_status("Failed", 1, "Error")},
        ),
        _pod_stage(
            "pod-delete",
            {"matchExpressions": [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}]},
            {"finalizers": {"empty": True}, "delete": True},
        ),
        _pod_stage(
            "helm-test-pod-succeeded",
            {"matchExpressions": [_NOT_DELETED, _RUNNING, test_hook, not_job, passes]},
            {"statusTemplate": _terminated_status("Succeeded", 0, "Completed")},
        ),
        _pod_stage(
            "helm-test-pod-failed",
            {"matchExpressions": [_NOT_DELETED, _RUNNING, test_hook, not_job, fails]},
            {"statusTemplate": _terminated_status("Failed", 1, "Error")},
        ),
    ]


def _kwok_config(log_path: Path) -> list[dict[str, Any]]:
    """Everything kwok is configured with: the pods' log and the pod stages. Node stages are
    left to kwok's built-in ones (no Node stage is given)."""
    return [_kwok_logs(log_path), *_kwok_pod_stages()]


def _kwok_node(name: str) -> dict[str, Any]:
    resources = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "kwok"},
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


# Processes


@dataclass
class _Process:
    """One long-running binary of the control plane, restartable with the same arguments."""

    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        finally:
            log.close()

    def stop(self, *, kill: bool = False, grace: float = 10.0) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def check_running(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise ControlPlaneError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")


@dataclass
class ControlPlane:
    """etcd, kube-apiserver(s), kube-controller-manager and simulated nodes, under ``workdir``.

    With ``nodes`` > 0, kube-scheduler and kwok run too and that many kwok nodes exist, so
    pods get scheduled and reported Running/Ready, and Deployments become Available.

    Use as a context manager, or call ``start()``/``stop()``. ``admin_kubeconfig`` is a
    system:masters user; ``user_kubeconfig`` is ``weir-user`` with no permissions at all.
    """

    workdir: Path
    crd_dir: Path | None = CRD_DIR
    controller_manager: bool = True
    nodes: int = 1
    etcd_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    _processes: dict[str, _Process] = field(default_factory=dict)
    _binaries: dict[str, Path] = field(default_factory=dict)

    @property
    def certs(self) -> _Certs:
        return _Certs(self.workdir / "pki")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def etcd_url(self) -> str:
        return f"http://127.0.0.1:{self.etcd_port}"

    @property
    def pod_log(self) -> Path:
        """What every container of every simulated pod has printed, as ``pods/log`` (and so
        ``weir logs``) returns it: lines in the CRI log format (``write_pod_log``)."""
        return self.workdir / "pods.log"

    def write_pod_log(self, lines: Sequence[str]) -> None:
        """Make ``lines`` what the simulated containers printed, as a container runtime
        records a container's stdout for the kubelet (CRI format: time, stream, tag, line)."""
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        self.pod_log.write_text("".join(f"{stamp} stdout F {line}\n" for line in lines))

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def user_kubeconfig(self) -> Path:
        return self.workdir / "user.kubeconfig"

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start everything and wait until the API server is ready and every CRD established."""
        self._binaries = ensure_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.certs.path("ca", "crt").exists():
            self.certs.create()
        try:
            self._start_etcd()
            self._processes["kube-apiserver"] = self._apiserver_process(
                "kube-apiserver", self.apiserver_port
            )
            self._processes["kube-apiserver"].start()
            self.write_kubeconfig(self.admin_kubeconfig, ADMIN_USER)
            self.write_kubeconfig(self.user_kubeconfig, UNPRIVILEGED_USER)
            self.wait_ready()
            if self.controller_manager:
                self._start_controller_manager()
                if self.nodes:
                    self._start_nodes()
            if self.crd_dir is not None:
                self.install_crds(sorted(self.crd_dir.glob("*.yaml")))
        except BaseException:
            self.stop()
            raise

    def start_controllers(self, extra_args: Mapping[str, Sequence[str]] = {}) -> list[str]:
        """Start ``python -m <package>`` for each weir controller that has an entry point, with
        ``extra_args[package]`` after the common flags; logs go to ``<workdir>/<name>.log``."""
        started = []
        for package in CONTROLLER_PACKAGES:
            if importlib.util.find_spec(f"{package}.__main__") is None:
                continue
            name = package.replace("_", "-") + "-controller"
            port = free_port()
            process = _Process(
                name,
                [
                    sys.executable,
                    "-m",
                    package,
                    f"--kubeconfig={self.admin_kubeconfig}",
                    f"--metrics-addr=127.0.0.1:{port}",
                    f"--health-addr=127.0.0.1:{free_port()}",
                    "--log-encoding=json",
                    *extra_args.get(package, ()),
                ],
                self.workdir / f"{name}.log",
            )
            self._processes[name] = process
            process.start()
            started.append(name)
        return started

    def stop(self) -> None:
        """Stop every process, newest first. Safe to call twice."""
        for process in reversed(list(self._processes.values())):
            process.stop()

    # etcd

    def _start_etcd(self) -> None:
        data_dir = self.workdir / "etcd"
        process = _Process(
            "etcd",
            [
                str(self._binaries["etcd"]),
                "--data-dir",
                str(data_dir),
                "--listen-client-urls",
                self.etcd_url,
                "--advertise-client-urls",
                self.etcd_url,
                "--listen-peer-urls",
                f"http://127.0.0.1:{free_port()}",
                "--log-level",
                "warn",
                "--logger",
                "zap",
            ],
            self.workdir / "etcd.log",
        )
        self._processes["etcd"] = process
        process.start()
        self._wait(lambda: self._etcd_healthy(), process, "etcd")

    def _etcd_healthy(self) -> bool:
        try:
            return httpx.get(self.etcd_url + "/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def etcd_revision(self) -> int:
        """The current etcd revision (the API server's newest resourceVersion)."""
        answer = httpx.post(self.etcd_url + "/v3/kv/range", json={"key": "AA=="}, timeout=5)
        answer.raise_for_status()
        return int(answer.json()["header"]["revision"])

    def compact_etcd(self) -> int:
        """Compact etcd to its current revision, so every older resourceVersion is gone."""
        revision = self.etcd_revision()
        answer = httpx.post(
            self.etcd_url + "/v3/kv/compaction",
            json={"revision": str(revision), "physical": True},
            timeout=30,
        )
        answer.raise_for_status()
        return revision

    # kube-apiserver

    def _apiserver_process(self, name: str, port: int) -> _Process:
        certs = self.certs
        argv = [
            str(self._binaries["kube-apiserver"]),
            f"--etcd-servers={self.etcd_url}",
            f"--secure-port={port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.workdir / name}",
            f"--tls-cert-file={certs.path('apiserver', 'crt')}",
            f"--tls-private-key-file={certs.path('apiserver', 'key')}",
            f"--client-ca-file={certs.path('ca', 'crt')}",
            f"--service-account-key-file={certs.root / 'sa.pub'}",
            f"--service-account-signing-key-file={certs.root / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--v=1",
        ]
        if not self.controller_manager:
            # Nothing would create the default ServiceAccount for pods to use.
            argv.append("--disable-admission-plugins=ServiceAccount")
        return _Process(name, argv, self.workdir / f"{name}.log")

    def wait_ready(self, server: str | None = None) -> None:
        """Wait until ``/readyz`` of the API server (the main one by default) answers ok."""
        process = self._processes.get("kube-apiserver")
        url = (server or self.server) + "/readyz"
        self._wait(lambda: self._get_ok(url), process, "kube-apiserver")

    def _client(self, timeout: float = 5.0) -> httpx.Client:
        certs = self.certs
        context = ssl.create_default_context(cafile=str(certs.path("ca", "crt")))
        context.load_cert_chain(certs.path(ADMIN_USER, "crt"), certs.path(ADMIN_USER, "key"))
        return httpx.Client(verify=context, timeout=timeout)

    def _get_ok(self, url: str) -> bool:
        try:
            with self._client(2) as client:
                return client.get(url).status_code == 200
        except httpx.HTTPError:
            return False

    def stop_apiserver(self, *, kill: bool = False) -> None:
        """Stop the main kube-apiserver (SIGTERM, or SIGKILL with ``kill``); etcd keeps running."""
        self._processes["kube-apiserver"].stop(kill=kill)

    def start_apiserver(self) -> None:
        """Start the main kube-apiserver again on the same port and wait until it is ready."""
        self._processes["kube-apiserver"].start()
        self.wait_ready()

    @contextlib.contextmanager
    def second_apiserver(self) -> Iterator[Path]:
        """A second kube-apiserver on the same etcd (an HA control plane); yields its kubeconfig."""
        port = free_port()
        name = f"kube-apiserver-{port}"
        process = self._apiserver_process(name, port)
        kubeconfig = self.workdir / f"{name}.kubeconfig"
        self.write_kubeconfig(kubeconfig, ADMIN_USER, server=f"https://127.0.0.1:{port}")
        process.start()
        try:
            url = f"https://127.0.0.1:{port}/readyz"
            self._wait(lambda: self._get_ok(url), process, name)
            yield kubeconfig
        finally:
            process.stop()

    # kube-controller-manager

    def _start_controller_manager(self) -> None:
        certs = self.certs
        process = _Process(
            "kube-controller-manager",
            [
                str(self._binaries["kube-controller-manager"]),
                f"--kubeconfig={self.admin_kubeconfig}",
                "--secure-port=0",
                "--leader-elect=false",
                f"--service-account-private-key-file={certs.root / 'sa.key'}",
                f"--root-ca-file={certs.path('ca', 'crt')}",
                "--use-service-account-credentials=false",
                # node-lifecycle stays: it lifts the not-ready taint off kwok's nodes.
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller,-route",
                # On a loaded machine kwok's node heartbeats can come late; past the default
                # 50s grace node-lifecycle marks every pod of the node not Ready, and kwok never
                # sets them Ready again, so Deployments stay unavailable for good.
                "--node-monitor-grace-period=1h",
                "--v=1",
            ],
            self.workdir / "kube-controller-manager.log",
        )
        self._processes["kube-controller-manager"] = process
        process.start()

    # Simulated nodes: kube-scheduler places pods, kwok plays the kubelet, so Deployments
    # become Available without running containers.

    def _start_nodes(self) -> None:
        binaries = self._binaries
        kubeconfig = f"--kubeconfig={self.admin_kubeconfig}"
        scheduler = _Process(
            "kube-scheduler",
            [
                str(binaries["kube-scheduler"]),
                kubeconfig,
                "--leader-elect=false",
                # Its default :10259 would collide with a second control plane on this machine.
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
            self.workdir / "kube-scheduler.log",
        )
        # kwok also serves the kubelet's API (on the nodes' address, with the API server's
        # serving pair, which names 127.0.0.1), so that pods/log reaches it; every container
        # of every pod "prints" pod_log, in the CRI log format a kubelet reads.
        kubelet_port = free_port()
        config = self.workdir / "kwok.yaml"
        config.write_text(yaml.safe_dump_all(_kwok_config(self.pod_log)))
        self.pod_log.touch()
        kwok = _Process(
            "kwok",
            [
                str(binaries["kwok"]),
                kubeconfig,
                "--manage-all-nodes=true",
                "--cidr=10.244.0.1/16",
                "--node-ip=127.0.0.1",
                f"--node-port={kubelet_port}",
                f"--server-address=127.0.0.1:{kubelet_port}",
                f"--tls-cert-file={self.certs.path('apiserver', 'crt')}",
                f"--tls-private-key-file={self.certs.path('apiserver', 'key')}",
                # No ~/.kwok/kwok.yaml: the built-in node stages, and the pod stages and
                # the log above.
                f"--config={config}",
            ],
            self.workdir / "kwok.log",
        )
        for process in (scheduler, kwok):
            self._processes[process.name] = process
            process.start()
        with self._client() as client:
            for index in range(self.nodes):
                name = f"kwok-node-{index}"
                answer = client.post(f"{self.server}/api/v1/nodes", json=_kwok_node(name))
                if answer.status_code not in (201, 409):
                    raise ControlPlaneError(f"node {name}: {answer.text[:500]}")

    # kubeconfig and CRDs

    def write_kubeconfig(self, path: Path, user: str, *, server: str | None = None) -> None:
        certs = self.certs

        def b64(p: Path) -> str:
            import base64

            return base64.b64encode(p.read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "weir-local",
                    "cluster": {
                        "server": server or self.server,
                        "certificate-authority-data": b64(certs.path("ca", "crt")),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(certs.path(user, "crt")),
                        "client-key-data": b64(certs.path(user, "key")),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": "weir-local", "user": user}}],
            "current-context": user,
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    def install_crds(self, files: list[Path]) -> None:
        """Server-side apply every CRD in ``files`` and wait until each is Established."""
        names = []
        base = self.server + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        with self._client(30) as client:
            for path in files:
                for doc in yaml.safe_load_all(path.read_text()):
                    if not doc:
                        continue
                    name = doc["metadata"]["name"]
                    answer = client.patch(
                        f"{base}/{name}",
                        params={"fieldManager": "weir-envtest", "force": "true"},
                        content=json.dumps(doc),
                        headers={"Content-Type": "application/apply-patch+yaml"},
                    )
                    if answer.status_code >= 300:
                        raise ControlPlaneError(f"CRD {name} from {path}: {answer.text[:1000]}")
                    names.append(name)

            def established() -> bool:
                for name in names:
                    conditions = client.get(f"{base}/{name}").json()["status"].get("conditions")
                    if not any(
                        c["type"] == "Established" and c["status"] == "True"
                        for c in conditions or []
                    ):
                        return False
                return True

            self._wait(established, None, "CRDs established")

    def _wait(self, ready: Any, process: _Process | None, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if process is not None:
                process.check_running()
            if ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(f"{what} not ready after {START_TIMEOUT_SECONDS:.0f}s")


def main(argv: list[str] | None = None) -> int:
    """``build``: make sure the binaries exist; ``up``: run a control plane until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m controllers.envtest")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="find, or build from Go, every binary weir's tests run")
    up = sub.add_parser("up", help="run a local control plane until interrupted")
    up.add_argument("--dir", type=Path, default=Path(".weir/cluster"))
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            for name, path in ensure_binaries().items():
                print(f"{name}: {path}")
            return 0
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        with ControlPlane(args.dir.resolve()) as plane:
            started = plane.start_controllers()
            print(f"control plane ready: {plane.server}", flush=True)
            print(f"controllers running: {', '.join(started) or 'none yet'}", flush=True)
            print(f"export KUBECONFIG={plane.admin_kubeconfig}", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
            print("stopping", flush=True)
        return 0
    except ControlPlaneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
