"""The image automation kinds on the command line, without a cluster: the manifests
``weir create image ...`` builds from Flux's flags (printed with ``--export``, checked by the
kinds' models), the flags Flux refuses, the columns ``weir get images`` shows, and
``--components-extra`` with Flux's names of its image controllers."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from controllers import goregexp
from image_automation.api_v1 import ImagePolicy, ImageRepository, ImageUpdateAutomation
from weir.cli import main
from weir.cli.create_image import extract_problem
from weir.cli.kinds import find_kind

Manifest = dict[str, Any]


def run(*args: str) -> tuple[int, str]:
    """``weir ARGS`` in the default namespace: exit code, and stdout (or the error)."""
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout if result.exit_code == 0 else result.output


def exported(*args: str) -> Manifest:
    code, out = run(*args, "--export")
    assert code == 0, out
    (manifest,) = yaml.safe_load_all(out)
    return dict(manifest)


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        pytest.param(
            ["alpine", "--image=alpine", "--interval=20m"],
            {"image": "alpine", "interval": "20m"},
            id="docker-hub",
        ),
        pytest.param(
            [
                "app",
                "--image=registry.example.com:5000/team/app",
                "--secret-ref=image-pull",
                "--cert-ref=registry-ca",
                "--scan-timeout=30s",
            ],
            {
                "image": "registry.example.com:5000/team/app",
                "interval": "1m",
                "timeout": "30s",
                "secretRef": {"name": "image-pull"},
                "certSecretRef": {"name": "registry-ca"},
            },
            id="flux-flags",
        ),
        pytest.param(
            [
                "app",
                "--image=localhost:5000/app",
                "--cert-secret-ref=ca",
                "--exclusion-list=^.*\\.sig$",
                "--exclusion-list=^dev-",
                "--insecure",
            ],
            {
                "image": "localhost:5000/app",
                "interval": "1m",
                "certSecretRef": {"name": "ca"},
                "exclusionList": ["^.*\\.sig$", "^dev-"],
                "insecure": True,
            },
            id="weir-flags",
        ),
    ],
)
def test_create_image_repository(args: list[str], spec: Manifest) -> None:
    manifest = exported("create", "image", "repository", *args)

    assert manifest == {
        "apiVersion": "image.toolkit.fluxcd.io/v1",
        "kind": "ImageRepository",
        "metadata": {"name": args[0], "namespace": "flux-system"},
        "spec": spec,
    }
    ImageRepository.from_dict(manifest)


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        pytest.param(
            ["--select-semver=>=1.0.0"],
            {"policy": {"semver": {"range": ">=1.0.0"}}},
            id="semver",
        ),
        pytest.param(
            ["--select-alpha=desc"], {"policy": {"alphabetical": {"order": "desc"}}}, id="alpha"
        ),
        pytest.param(
            [
                "--select-numeric=asc",
                "--filter-regex=^main-[a-f0-9]+-(?P<ts>[0-9]+)",
                "--filter-extract=$ts",
            ],
            {
                "policy": {"numerical": {"order": "asc"}},
                "filterTags": {"pattern": "^main-[a-f0-9]+-(?P<ts>[0-9]+)", "extract": "$ts"},
            },
            id="numeric-filtered",
        ),
        pytest.param(
            ["--select-semver=1.x", "--filter-regex=^v"],
            {"policy": {"semver": {"range": "1.x"}}, "filterTags": {"pattern": "^v"}},
            id="filter-without-extract",
        ),
        pytest.param(
            ["--select-semver=1.x", "--reflect-digest=IfNotPresent"],
            {"policy": {"semver": {"range": "1.x"}}, "digestReflectionPolicy": "IfNotPresent"},
            id="reflect-once",
        ),
        pytest.param(
            ["--select-semver=1.x", "--reflect-digest=Always"],
            {
                "policy": {"semver": {"range": "1.x"}},
                "digestReflectionPolicy": "Always",
                "interval": "10m",
            },
            id="reflect-always-default-interval",
        ),
        pytest.param(
            ["--select-semver=1.x", "--reflect-digest=Always", "--interval=5m"],
            {
                "policy": {"semver": {"range": "1.x"}},
                "digestReflectionPolicy": "Always",
                "interval": "5m",
            },
            id="reflect-always",
        ),
    ],
)
def test_create_image_policy(args: list[str], spec: Manifest) -> None:
    manifest = exported("create", "image", "policy", "app", "--image-ref=app", *args)

    assert manifest["kind"] == "ImagePolicy"
    assert manifest["spec"] == {"imageRepositoryRef": {"name": "app"}, **spec}
    ImagePolicy.from_dict(manifest)


UPDATE_FLAGS = (
    "--git-repo-ref=flux-system",
    "--checkout-branch=main",
    "--author-name=weir",
    "--author-email=weir@example.com",
)
COMMIT = {"author": {"name": "weir", "email": "weir@example.com"}}
CHECKOUT = {"ref": {"branch": "main"}}


@pytest.mark.parametrize(
    ("args", "spec"),
    [
        pytest.param(
            [],
            {
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                "git": {"checkout": CHECKOUT, "commit": COMMIT},
                "interval": "1m",
            },
            id="least",
        ),
        pytest.param(
            [
                "--git-repo-namespace=flux-system",
                "--git-repo-path=./clusters/dev",
                "--push-branch=image-updates",
                "--commit-template={{range .Changed.Changes}}{{println .NewValue}}{{end}}",
                "--signing-key-secret=signing",
                "--signing-key-type=ssh",
                "--interval=30m",
            ],
            {
                "sourceRef": {
                    "kind": "GitRepository",
                    "name": "flux-system",
                    "namespace": "flux-system",
                },
                "git": {
                    "checkout": CHECKOUT,
                    "commit": {
                        **COMMIT,
                        "messageTemplate": (
                            "{{range .Changed.Changes}}{{println .NewValue}}{{end}}"
                        ),
                        "signingKey": {"secretRef": {"name": "signing"}, "type": "ssh"},
                    },
                    "push": {"branch": "image-updates"},
                },
                "interval": "30m",
                "update": {"path": "./clusters/dev", "strategy": "Setters"},
            },
            id="flux-flags",
        ),
        pytest.param(
            [
                "--pull-request-provider=gitea",
                "--pull-request-secret-ref=gitea-token",
                "--pull-request-base=release",
            ],
            {
                "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
                "git": {
                    "checkout": CHECKOUT,
                    "commit": COMMIT,
                    "push": {
                        "pullRequest": {
                            "provider": "gitea",
                            "secretRef": {"name": "gitea-token"},
                            "base": "release",
                        }
                    },
                },
                "interval": "1m",
            },
            id="pull-requests",
        ),
    ],
)
def test_create_image_update(args: list[str], spec: Manifest) -> None:
    manifest = exported("create", "image", "update", "apps", *UPDATE_FLAGS, *args)

    assert manifest["kind"] == "ImageUpdateAutomation"
    assert manifest["spec"] == spec
    ImageUpdateAutomation.from_dict(manifest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["repository", "x", "--image=alpine:3.19"],
            "✗ --image: image 'alpine:3.19' should not include a tag; remove ':3.19'",
            id="image-with-tag",
        ),
        pytest.param(
            ["repository", "x", "--image=https://ghcr.io/app"],
            "✗ --image: image 'https://ghcr.io/app' should not include URL scheme",
            id="image-with-scheme",
        ),
        pytest.param(
            ["repository", "x", "--image=app", "--exclusion-list=(unclosed"],
            "✗ --exclusion-list '(unclosed'",
            id="exclusion-not-a-regexp",
        ),
        pytest.param(
            ["policy", "x", "--image-ref=r"],
            "✗ a policy is required: --select-semver, --select-alpha or --select-numeric",
            id="no-policy",
        ),
        pytest.param(
            ["policy", "x", "--image-ref=r", "--select-semver=1.x", "--select-numeric=asc"],
            "✗ only one of --select-semver, --select-alpha or --select-numeric",
            id="two-policies",
        ),
        pytest.param(
            ["policy", "x", "--image-ref=r", "--select-alpha=up"],
            "Invalid value for '--select-alpha'",
            id="no-such-order",
        ),
        pytest.param(
            ["policy", "x", "--image-ref=r", "--select-alpha=asc", "--filter-regex=(?P<x"],
            "✗ --filter-regex is an invalid regex pattern",
            id="regexp-does-not-compile",
        ),
        pytest.param(
            ["policy", "x", "--image-ref=r", "--select-alpha=asc", "--filter-extract=$ts"],
            "✗ --filter-extract needs --filter-regex",
            id="extract-without-regexp",
        ),
        pytest.param(
            [
                "policy",
                "x",
                "--image-ref=r",
                "--select-alpha=asc",
                "--filter-regex=(?P<ts>[0-9]+)",
                "--filter-extract=$when",
            ],
            "✗ capture group $when used in --filter-extract not found in --filter-regex",
            id="extract-names-a-missing-group",
        ),
        pytest.param(
            ["policy", "x", "--image-ref=r", "--select-semver=1.x", "--interval=5m"],
            "✗ --interval is only for --reflect-digest=Always",
            id="interval-without-always",
        ),
        pytest.param(
            ["update", "x", *UPDATE_FLAGS, "--signing-key-type=ssh"],
            "✗ --signing-key-type requires --signing-key-secret",
            id="key-type-without-key",
        ),
        pytest.param(
            ["update", "x", *UPDATE_FLAGS, "--pull-request-provider=gitea"],
            "✗ --pull-request-provider and --pull-request-secret-ref go together",
            id="provider-without-token",
        ),
        pytest.param(
            ["update", "x", "--git-repo-ref=r", "--checkout-branch=main", "--author-name=a"],
            "Missing option '--author-email'",
            id="no-author-email",
        ),
        pytest.param(
            ["update", "x", *UPDATE_FLAGS, "--interval=soon"],
            "✗ invalid ImageUpdateAutomation: spec.interval",
            id="interval-not-a-duration",
        ),
    ],
)
def test_flags_flux_refuses_are_usage_errors(args: list[str], message: str) -> None:
    code, out = run("create", "image", *args, "--export")

    assert code == 2
    assert message in out


@pytest.mark.parametrize(
    ("extract", "problem"),
    [
        pytest.param("$ts", None, id="named"),
        pytest.param("${ts}-$1", None, id="braced-and-numbered"),
        pytest.param("$$ts", None, id="escaped-dollar"),
        pytest.param("$", "--filter-extract is malformed", id="lone-dollar"),
        pytest.param("${ts", "--filter-extract is malformed", id="unclosed-brace"),
        pytest.param("$other", "capture group $other", id="missing-group"),
    ],
)
def test_extract_is_checked_against_the_patterns_groups(extract: str, problem: str | None) -> None:
    found = extract_problem(goregexp.compile_pattern(r"^main-(?P<ts>[0-9]+)$"), extract)

    if problem is None:
        assert found is None
    else:
        assert (found or "").startswith(problem), found


IMAGE_REPOSITORY = {
    "spec": {"image": "alpine", "interval": "1m", "suspend": True},
    "status": {"lastScanResult": {"tagCount": 3, "scanTime": "2025-01-02T03:04:05Z"}},
}
IMAGE_POLICY = {
    "spec": {"imageRepositoryRef": {"name": "alpine"}},
    "status": {"latestRef": {"name": "alpine", "tag": "3.20.1"}},
}
IMAGE_UPDATE = {"spec": {}, "status": {"lastAutomationRunTime": "2025-01-02T03:04:05Z"}}


@pytest.mark.parametrize(
    ("kind", "obj", "columns"),
    [
        pytest.param(
            "ImageRepository",
            IMAGE_REPOSITORY,
            [("LAST SCAN", "2025-01-02T03:04:05Z"), ("SUSPENDED", "True")],
            id="repository",
        ),
        pytest.param(
            "ImagePolicy", IMAGE_POLICY, [("IMAGE", "alpine"), ("TAG", "3.20.1")], id="policy"
        ),
        pytest.param(
            "ImageUpdateAutomation",
            IMAGE_UPDATE,
            [("LAST RUN", "2025-01-02T03:04:05Z"), ("SUSPENDED", "False")],
            id="update",
        ),
        pytest.param(
            "ImagePolicy", {"spec": {}}, [("IMAGE", ""), ("TAG", "")], id="policy-not-run-yet"
        ),
        pytest.param(
            "GitRepository",
            {"spec": {}, "status": {"artifact": {"revision": "main@sha1:abc"}}},
            [("REVISION", "main@sha1:abc"), ("SUSPENDED", "False")],
            id="the-others-unchanged",
        ),
    ],
)
def test_get_shows_fluxs_columns(kind: str, obj: Manifest, columns: list[tuple[str, str]]) -> None:
    found = find_kind(kind)
    assert found is not None

    assert [(header, value(obj)) for header, value in found.table_columns] == columns


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(["get", "images", "all"], id="get-images-all"),
        pytest.param(["get", "image", "policy"], id="get-image-policy"),
        pytest.param(["get", "sources", "all"], id="get-sources-all"),
        pytest.param(["reconcile", "image", "repository"], id="reconcile-repository"),
        pytest.param(["reconcile", "image", "update"], id="reconcile-update"),
        pytest.param(["suspend", "image", "update"], id="suspend-update"),
        pytest.param(["resume", "image", "policy"], id="resume-policy"),
        pytest.param(["export", "image", "repository"], id="export-repository"),
        pytest.param(["create", "images", "policy"], id="create-alias"),
    ],
)
def test_the_image_commands_exist(path: list[str]) -> None:
    code, out = run(*path, "--help")

    assert code == 0, out


def deployments(*args: str) -> list[str]:
    code, out = run("install", *args, "--export")
    assert code == 0, out
    return [
        doc["metadata"]["name"] for doc in yaml.safe_load_all(out) if doc["kind"] == "Deployment"
    ]


FLUX_FOUR = [
    "source-controller",
    "kustomize-controller",
    "helm-controller",
    "notification-controller",
]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], FLUX_FOUR, id="flux-installs-four"),
        pytest.param(
            ["--components-extra=image-reflector-controller,image-automation-controller"],
            [*FLUX_FOUR, "image-automation-controller"],
            id="fluxs-command-line",
        ),
        pytest.param(
            ["--components-extra=image-reflector-controller"],
            [*FLUX_FOUR, "image-automation-controller"],
            id="reflector-alone",
        ),
        pytest.param(
            ["--components=source-controller", "--components-extra=image-automation-controller"],
            ["source-controller", "image-automation-controller"],
            id="with-components",
        ),
        pytest.param(
            ["--components=source-controller,image-reflector-controller"],
            ["source-controller", "image-automation-controller"],
            id="in-components",
        ),
    ],
)
def test_components_extra_takes_fluxs_image_controllers(
    args: list[str], expected: list[str]
) -> None:
    assert deployments(*args) == expected


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--components-extra=source-controller"], id="a-default-as-extra"),
        pytest.param(["--components-extra=source-watcher"], id="not-weirs"),
        pytest.param(["--components=source-controller,nope"], id="unknown"),
    ],
)
def test_unknown_components_are_refused(args: list[str]) -> None:
    code, out = run("install", *args, "--export")

    assert code == 2
    assert "choose among" in out


@pytest.mark.parametrize("command", ["install", "check"])
def test_install_and_check_take_components_extra(command: str) -> None:
    code, out = run(command, "--help")

    assert code == 0
    assert "--components-extra" in out
    code, out = run("bootstrap", "git", "--help")
    assert "--components-extra" in out
