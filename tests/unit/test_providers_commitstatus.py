"""notification.providers.commitstatus: the commit, state and key of a status, the repository
and API root from the address, the requests per host and the duplicate check."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from controllers.cel import compile_expression
from notification.api_v1beta3 import Alert
from notification.providers import DeliveryError, Target
from notification.providers.commitstatus import (
    StatusUpdate,
    api_root,
    commit_sha,
    default_status_key,
    is_duplicate,
    parse_git_address,
    plan_status,
    status_requests,
)

SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
UID = "0c9c2e41-1b2c-4d5e-8f90-123456789abc"
ALERT = Alert.model_validate(
    {
        "metadata": {"name": "status", "namespace": "flux-system"},
        "spec": {
            "providerRef": {"name": "git"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
            "eventMetadata": {"cluster": "prod"},
        },
    }
)


def event(
    severity: str = "info", reason: str = "ReconciliationSucceeded", **metadata: str
) -> dict[str, Any]:
    return {
        "involvedObject": {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": "Apps",
            "namespace": "flux-system",
        },
        "severity": severity,
        "timestamp": "2024-01-01T00:00:00Z",
        "message": "done",
        "reason": reason,
        "metadata": metadata or {"revision": f"main@sha1:{SHA}"},
        "reportingController": "kustomize-controller",
    }


def git_target(type_: str, address: str = "https://git.example/org/repo", **fields: Any) -> Target:
    defaults: dict[str, Any] = {"token": "user:t0ken", "provider_uid": UID}
    return Target(type=type_, provider="flux-system/git", address=address, **(defaults | fields))


@pytest.mark.parametrize(
    ("revision", "expected"),
    [
        (f"main@sha1:{SHA}", SHA),
        (f"feature/branch@sha1:{SHA}", SHA),
        (f"refs/tags/v1.0@sha1:{SHA}", SHA),
        (f"sha1:{SHA}", SHA),
        (f"main/{SHA}", SHA),
        (f"feature/branch/{SHA}", SHA),
        (SHA, SHA),
        (SHA.upper(), SHA),
        ("latest@sha256:" + "a" * 64, None),
        (f"main@sha1:{SHA[:12]}", None),
        (f"main@sha1:{SHA[:-1]}/", None),
        ("main", None),
    ],
)
def test_the_commit_sha_in_a_revision(revision: str, expected: str | None) -> None:
    assert commit_sha(revision) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("https://github.com/org/repo", ("https://github.com", "org/repo")),
        ("https://github.com/org/repo.git", ("https://github.com", "org/repo")),
        ("https://github.com/org/repo/", ("https://github.com", "org/repo")),
        ("http://127.0.0.1:3000/o/r", ("http://127.0.0.1:3000", "o/r")),
        (
            "https://gitlab.example/group/sub/project",
            ("https://gitlab.example", "group/sub/project"),
        ),
        ("https://gitlab.com/1234", ("https://gitlab.com", "1234")),
        ("ssh://git@github.com/org/repo.git", ("https://github.com", "org/repo")),
        ("ssh://git@git.example:2222/org/repo", ("https://git.example", "org/repo")),
        ("git@github.com:org/repo.git", ("https://github.com", "org/repo")),
        ("github.com:org/repo", ("https://github.com", "org/repo")),
        ("https://user:pw@ghe.example/org/repo", ("https://ghe.example", "org/repo")),
    ],
)
def test_the_repository_from_the_address(address: str, expected: tuple[str, str]) -> None:
    assert parse_git_address(address) == expected


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("file:///srv/repo", "scheme 'file' is not http, https or ssh"),
        ("https:///org/repo", "it has no host"),
        ("https://github.com/", "it names no repository"),
        ("https://github.com:x/o/r", "the port is not a number"),
        ("not an address", "it is not a URL"),
    ],
)
def test_an_address_that_names_no_repository(address: str, problem: str) -> None:
    with pytest.raises(ValueError, match=r".") as caught:
        parse_git_address(address)

    assert str(caught.value).startswith(problem)


@pytest.mark.parametrize(
    ("type_", "host", "expected"),
    [
        ("github", "https://github.com", "https://api.github.com"),
        ("github", "https://ghe.example", "https://ghe.example/api/v3"),
        ("github", "http://127.0.0.1:8080", "http://127.0.0.1:8080/api/v3"),
        ("gitlab", "https://gitlab.com", "https://gitlab.com/api/v4"),
        ("gitlab", "https://gitlab.example:8443", "https://gitlab.example:8443/api/v4"),
        ("gitea", "https://gitea.example", "https://gitea.example/api/v1"),
        ("bitbucket", "https://bitbucket.org", "https://api.bitbucket.org/2.0"),
    ],
)
def test_the_api_root(type_: str, host: str, expected: str) -> None:
    assert api_root(type_, host) == expected


def test_the_default_status_key_is_kind_name_and_the_provider_uid_prefix() -> None:
    assert default_status_key(UID, event()) == "kustomization/apps/0c9c2e41"
    assert default_status_key("", event()) == "kustomization/apps/"


@pytest.mark.parametrize(
    ("type_", "severity", "reason", "state"),
    [
        ("github", "info", "ReconciliationSucceeded", "success"),
        ("github", "error", "HealthCheckFailed", "failure"),
        ("github", "info", "Progressing", None),
        ("gitea", "info", "ReconciliationSucceeded", "success"),
        ("gitea", "error", "BuildFailed", "failure"),
        ("gitea", "info", "Progressing", "pending"),
        ("gitlab", "info", "ReconciliationSucceeded", "success"),
        ("gitlab", "error", "BuildFailed", "failed"),
        ("gitlab", "info", "Progressing", None),
        ("bitbucket", "info", "ReconciliationSucceeded", "SUCCESSFUL"),
        ("bitbucket", "error", "BuildFailed", "FAILED"),
        ("bitbucket", "info", "Progressing", None),
        ("github", "trace", "Whatever", None),
    ],
)
def test_the_state_of_each_host(type_: str, severity: str, reason: str, state: str | None) -> None:
    update = plan_status(git_target(type_), event(severity, reason), ALERT)

    assert (update.state if update else None) == state


def test_a_status_update_for_an_info_event() -> None:
    update = plan_status(git_target("github"), event(), ALERT)

    assert update == StatusUpdate(
        sha=SHA,
        state="success",
        key="kustomization/apps/0c9c2e41",
        description="reconciliation succeeded",
        name="kustomization/apps",
    )


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"originRevision": f"main@sha1:{SHA}", "revision": "x"}, id="origin-first"),
        pytest.param({"revision": f"main@sha1:{SHA}"}, id="stripped"),
        pytest.param({"kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{SHA}"}, id="prefixed"),
    ],
)
def test_the_revision_is_read_as_flux_reads_it(metadata: dict[str, str]) -> None:
    update = plan_status(git_target("gitea"), event(**metadata), ALERT)

    assert update is not None
    assert update.sha == SHA


def test_an_event_without_a_revision_sets_no_status() -> None:
    assert plan_status(git_target("github"), event(other="x"), ALERT) is None


def test_a_revision_without_a_commit_sha_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError, match="no commit SHA in revision 'latest@sha256:"):
        plan_status(git_target("gitea"), event(revision="latest@sha256:" + "b" * 64), ALERT)


def test_bitbucket_keys_are_the_sha1_of_the_status_key() -> None:
    update = plan_status(git_target("bitbucket"), event(), ALERT)

    assert update is not None
    assert (
        update.key
        == hashlib.sha1(b"kustomization/apps/0c9c2e41", usedforsecurity=False).hexdigest()
    )


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        pytest.param(
            "(event.involvedObject.kind + '/' + event.involvedObject.name + '/' + "
            "event.metadata.cluster + '/' + provider.metadata.uid.split('-').first().value())"
            ".lowerAscii()",
            "kustomization/apps/prod/0c9c2e41",
            id="flux-docs-example",
        ),
        pytest.param(
            "alert.metadata.name + '/' + alert.spec.eventMetadata.cluster + '/' "
            "+ provider.spec.type",
            "status/prod/github",
            id="alert-and-provider",
        ),
    ],
)
def test_the_commit_status_expression_gives_the_key(expression: str, expected: str) -> None:
    provider = {
        "metadata": {"name": "git", "namespace": "flux-system", "uid": UID},
        "spec": {"type": "github", "commitStatusExpr": expression},
    }
    tgt = git_target(
        "github", provider_object=provider, commit_status_expr=compile_expression(expression)
    )

    update = plan_status(tgt, event(revision=f"main@sha1:{SHA}", cluster="prod"), ALERT)

    assert update is not None
    assert update.key == expected


def test_a_commit_status_expression_that_fails_on_the_event_is_a_delivery_error() -> None:
    tgt = git_target("gitea", commit_status_expr=compile_expression("event.metadata.missing"))

    with pytest.raises(
        DeliveryError, match=r"spec\.commitStatusExpr of Provider 'flux-system/git'"
    ):
        plan_status(tgt, event(), ALERT)


def test_a_commit_status_expression_that_is_not_a_string_is_a_delivery_error() -> None:
    tgt = git_target("gitea", commit_status_expr=compile_expression("1 + 2"))

    with pytest.raises(DeliveryError, match="as string"):
        plan_status(tgt, event(), ALERT)


UPDATE = StatusUpdate(
    SHA, "success", "kustomization/apps/0c9c2e41", "reconciliation succeeded", "kustomization/apps"
)


@pytest.mark.parametrize(
    ("tgt", "lookup", "create", "auth", "body"),
    [
        pytest.param(
            git_target("github", "https://github.com/org/repo", token="ghp"),
            f"GET https://api.github.com/repos/org/repo/commits/{SHA}/statuses?per_page=50",
            f"POST https://api.github.com/repos/org/repo/statuses/{SHA}",
            ("Authorization", "Bearer ghp"),
            {"state": "success", "description": "reconciliation succeeded", "context": UPDATE.key},
            id="github",
        ),
        pytest.param(
            git_target("github", "https://ghe.example/org/repo", token="ghp"),
            f"GET https://ghe.example/api/v3/repos/org/repo/commits/{SHA}/statuses?per_page=50",
            f"POST https://ghe.example/api/v3/repos/org/repo/statuses/{SHA}",
            ("Authorization", "Bearer ghp"),
            {"state": "success", "description": "reconciliation succeeded", "context": UPDATE.key},
            id="github-enterprise",
        ),
        pytest.param(
            git_target("gitlab", "https://gitlab.example/group/sub/project", token="glpat"),
            "GET https://gitlab.example/api/v4/projects/group%2Fsub%2Fproject/repository/commits/"
            f"{SHA}/statuses?name=kustomization%2Fapps%2F0c9c2e41",
            f"POST https://gitlab.example/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}",
            ("PRIVATE-TOKEN", "glpat"),
            {"state": "success", "name": UPDATE.key, "description": "reconciliation succeeded"},
            id="gitlab",
        ),
        pytest.param(
            git_target("gitea", "https://gitea.example/org/repo.git", token="gt"),
            f"GET https://gitea.example/api/v1/repos/org/repo/commits/{SHA}/statuses?page=0&limit=50",
            f"POST https://gitea.example/api/v1/repos/org/repo/statuses/{SHA}",
            ("Authorization", "token gt"),
            {
                "state": "success",
                "target_url": "",
                "description": "reconciliation succeeded",
                "context": UPDATE.key,
            },
            id="gitea",
        ),
        pytest.param(
            git_target("bitbucket", "https://bitbucket.org/org/repo", token="u:p"),
            f"GET https://api.bitbucket.org/2.0/repositories/org/repo/commit/{SHA}/statuses/build/"
            + UPDATE.key.replace("/", "%2F"),
            f"POST https://api.bitbucket.org/2.0/repositories/org/repo/commit/{SHA}/statuses/build",
            ("Authorization", "Basic dTpw"),
            {
                "key": UPDATE.key,
                "url": "https://bitbucket.org",
                "state": "success",
                "name": "kustomization/apps",
                "description": "reconciliation succeeded",
            },
            id="bitbucket",
        ),
    ],
)
def test_the_requests_of_each_host(
    tgt: Target, lookup: str, create: str, auth: tuple[str, str], body: dict[str, Any]
) -> None:
    get, post = status_requests(tgt, UPDATE)

    assert f"{get.method} {get.url}" == lookup
    assert f"{post.method} {post.url}" == create
    assert get.header(auth[0]) == auth[1]
    assert post.header(auth[0]) == auth[1]
    assert post.json == body
    assert list(post.json) == list(body)
    assert post.header("Content-Type") == "application/json"


def test_github_requests_carry_the_api_version_headers() -> None:
    _, post = status_requests(git_target("github", token="t"), UPDATE)

    assert post.header("Accept") == "application/vnd.github.v3+json"
    assert post.header("X-GitHub-Api-Version") == "2022-11-28"


def test_a_missing_bitbucket_status_is_no_failure() -> None:
    get, _ = status_requests(git_target("bitbucket", token="u:p"), UPDATE)

    assert get.accept == frozenset({404})


SAME = {"context": UPDATE.key, "description": UPDATE.description}


@pytest.mark.parametrize(
    ("type_", "answer", "duplicate"),
    [
        pytest.param("github", [SAME | {"state": "success"}], True, id="github-same"),
        pytest.param("github", [SAME | {"state": "failure"}], False, id="github-other-state"),
        pytest.param(
            "github",
            [SAME | {"state": "failure", "id": 2}, SAME | {"state": "success", "id": 1}],
            False,
            id="github-newest-differs",
        ),
        pytest.param(
            "github",
            [{"context": "other", "state": "success", "description": UPDATE.description}],
            False,
            id="github-other-context",
        ),
        pytest.param(
            "gitea",
            [SAME | {"status": "success", "id": 1}, SAME | {"status": "failure", "id": 3}],
            False,
            id="gitea-newest-by-id",
        ),
        pytest.param("gitea", [SAME | {"status": "success", "id": 5}], True, id="gitea-same"),
        pytest.param(
            "gitlab",
            [{"name": UPDATE.key, "status": "success", "description": UPDATE.description}],
            True,
            id="gitlab-same",
        ),
        pytest.param(
            "bitbucket",
            {"state": "success", "description": UPDATE.description},
            True,
            id="bitbucket-same",
        ),
        pytest.param("bitbucket", None, False, id="bitbucket-none"),
        pytest.param("github", {"message": "Not Found"}, False, id="not-a-list"),
        pytest.param("github", [], False, id="none-yet"),
    ],
)
def test_a_status_already_set_is_not_set_again(type_: str, answer: Any, duplicate: bool) -> None:
    assert is_duplicate(type_, answer, UPDATE) is duplicate
