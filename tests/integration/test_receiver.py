"""Receivers, end to end: ``python -m notification`` as a process, the real API server, and
Gitea's own webhooks. A push is applied through the Receiver with every interval at 1h; bad
requests change nothing and leave no secret in the log; the Receiver's status says what is
wrong with it."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from controllers.envtest import ControlPlane
from controllers.kinds import CONFIG_MAP, SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from notification.api_v1 import Receiver, webhook_path
from tests.gitea import GiteaServer
from tests.integration.harness import is_ready, wait_for_object
from tests.integration.kinds import GITREPO, KS, git_repository, kustomization
from tests.integration.processes import (
    NotificationProcess,
    notification_controller,
    running_controllers,
)
from tests.oidc_issuer import SigningKey, running_issuer

pytestmark = pytest.mark.integration

RECEIVER = Receiver.info
MAX_BODY = 3 * 1024 * 1024


# Objects


def receiver(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": RECEIVER.api_version,
        "kind": RECEIVER.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"type": "generic", "secretRef": {"name": "webhook-token"}, **spec},
    }


def token_secret(namespace: str, token: str, name: str = "webhook-token") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": namespace}, "stringData": {"token": token}}


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def ready_with_path(obj: dict[str, Any]) -> bool:
    return is_ready(obj) and bool((obj.get("status") or {}).get("webhookPath"))


def stalled(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        ready, stall = condition(obj, "Ready"), condition(obj, "Stalled")
        return (ready.get("status"), ready.get("reason"), stall.get("status")) == (
            "False",
            reason,
            "True",
        )

    return check


def requested(obj: dict[str, Any] | None) -> str | None:
    """The object's ``reconcile.fluxcd.io/requestedAt``, if it has one."""
    annotations = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get(REQUESTED_AT)
    return str(value) if value is not None else None


def sign(body: bytes, token: str) -> str:
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


@asynccontextmanager
async def notifier(
    control_plane: ControlPlane, namespace: str, workdir: Path, *flags: str
) -> AsyncIterator[NotificationProcess]:
    """The notification controller alone, as a process watching ``namespace``."""
    process = notification_controller(control_plane, namespace, workdir / "notification", *flags)
    try:
        await process.start()
        yield process
    finally:
        code = await process.stop() if process.process is not None else 0
        print(process.log_tail())
    assert code == 0


async def wait_receiver(
    kube: KubeClient,
    process: NotificationProcess,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = 30.0,
) -> dict[str, Any]:
    try:
        return await wait_for_object(kube, RECEIVER, namespace, name, predicate, timeout)
    except TimeoutError:
        last = await kube.get_or_none(RECEIVER, namespace, name)
        raise AssertionError(
            f"Receiver {namespace}/{name} not {what}: {json.dumps((last or {}).get('status'))}\n"
            f"{process.log_tail()}"
        ) from None


# Git, as a user runs it


def git(cwd: Path, *args: str) -> str:
    # The caller's ~/.gitconfig and /etc/gitconfig must not change what is committed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Weir Test",
        "GIT_AUTHOR_EMAIL": "test@weir.invalid",
        "GIT_COMMITTER_NAME": "Weir Test",
        "GIT_COMMITTER_EMAIL": "test@weir.invalid",
    }
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return out.stdout.strip()


def commit_config_map(workdir: Path, remote: str, greeting: str) -> str:
    """Commit ``deploy/`` with the ConfigMap ``greeting`` saying ``greeting`` and push it to
    ``main`` at ``remote``; the commit's SHA."""
    if not (workdir / ".git").exists():
        workdir.mkdir(parents=True)
        git(workdir, "init", "--quiet", "--initial-branch=main")
    deploy = workdir / "deploy"
    deploy.mkdir(exist_ok=True)
    (deploy / "kustomization.yaml").write_text(yaml.safe_dump({"resources": ["configmap.yaml"]}))
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "greeting"},
        "data": {"greeting": greeting},
    }
    (deploy / "configmap.yaml").write_text(yaml.safe_dump(config_map))
    git(workdir, "add", "deploy")
    git(workdir, "commit", "--quiet", "-m", f"greeting: {greeting}")
    git(workdir, "push", "--quiet", remote, "main")
    return git(workdir, "rev-parse", "HEAD")


# Acceptance 1: a push to Gitea is applied through the Receiver, no interval involved


async def test_a_push_to_gitea_is_applied_through_a_github_receiver(
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    gitea: GiteaServer,
    tmp_path: Path,
) -> None:
    repo = f"receiver-{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    work = tmp_path / "work"
    await asyncio.to_thread(gitea.create_repository, repo)
    first = await asyncio.to_thread(commit_config_map, work, gitea.clone_url(repo), "hello")
    await asyncio.to_thread(gitea.wait_for_push, repo, first)

    async with running_controllers(
        control_plane, namespace, tmp_path, notification=True
    ) as controllers:
        assert controllers.notification is not None
        await kube.create(SECRET, token_secret(namespace, token))
        await kube.create(
            RECEIVER,
            receiver(
                "gitea",
                namespace,
                type="github",
                events=["push"],
                resources=[{"kind": "GitRepository", "name": "app"}],
            ),
        )
        obj = await wait_receiver(
            kube, controllers.notification, namespace, "gitea", ready_with_path, "Ready"
        )
        path = obj["status"]["webhookPath"]
        await asyncio.to_thread(
            gitea.add_webhook, repo, controllers.notification.receiver_url + path, token
        )
        # Anonymous HTTP clone: the repository is public, no credentials in the URL.
        url = f"{gitea.url}/{gitea.owner}/{repo}.git"
        await kube.create(
            GITREPO,
            git_repository("app", namespace, url=url, interval="1h", ref={"branch": "main"}),
        )
        await kube.create(
            KS,
            kustomization("app", namespace, "./deploy", interval="1h", targetNamespace=namespace),
        )
        await controllers.wait_for(
            kube, KS, namespace, "app", applied(f"main@sha1:{first}"), "applied at first"
        )

        second = await asyncio.to_thread(commit_config_map, work, gitea.clone_url(repo), "bye")
        ks = await controllers.wait_for(
            kube, KS, namespace, "app", applied(f"main@sha1:{second}"), "applied at second", 30
        )
        config_map = await kube.get(CONFIG_MAP, namespace, "greeting")
        source = await kube.get(GITREPO, namespace, "app")

    assert config_map["data"] == {"greeting": "bye"}
    # The Receiver asked for it; the source controller handled that request.
    assert requested(source) is not None
    assert source["status"]["lastHandledReconcileAt"] == requested(source)
    assert ks["spec"]["interval"] == "1h"


def applied(revision: str) -> Callable[[dict[str, Any]], bool]:
    def check(obj: dict[str, Any]) -> bool:
        return (obj.get("status") or {}).get("lastAppliedRevision") == revision and is_ready(obj)

    return check


# Acceptance 2: bad requests are refused, change nothing and leave no secret in the log


async def test_bad_requests_are_refused_change_nothing_and_log_no_secret(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    body = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()
    forged = sign(body, "not-the-token")
    good = sign(body, token)
    json_type = {"Content-Type": "application/json"}
    await kube.create(GITREPO, git_repository("app", namespace))
    async with notifier(control_plane, namespace, tmp_path) as process:
        await kube.create(SECRET, token_secret(namespace, token))
        await kube.create(
            RECEIVER,
            receiver(
                "github",
                namespace,
                type="github",
                events=["push"],
                resources=[{"kind": "GitRepository", "name": "app"}],
            ),
        )
        obj = await wait_receiver(kube, process, namespace, "github", ready_with_path, "Ready")
        path = obj["status"]["webhookPath"]
        assert path == webhook_path(token, "github", namespace)
        wrong_token_path = webhook_path("wrong", "github", namespace)
        unknown = "/hook/" + "0" * 64
        oversized = b"x" * (MAX_BODY + 1)

        async with httpx.AsyncClient(base_url=process.receiver_url, timeout=30) as http:

            async def post(
                target: str, content: bytes, signature: str, event: str = "push"
            ) -> httpx.Response:
                headers = {**json_type, "X-GitHub-Event": event, "X-Hub-Signature-256": signature}
                return await http.post(target, content=content, headers=headers)

            answers = {
                "forged signature": (await post(path, body, forged)).status_code,
                "unsigned": (await http.post(path, content=body, headers=json_type)).status_code,
                "wrong token": (await post(wrong_token_path, body, good)).status_code,
                "unknown path": (await post(unknown, body, good)).status_code,
                "not a hook path": (await post("/hooks", body, good)).status_code,
                "oversized": (await post(path, oversized, sign(oversized, token))).status_code,
                "oversized to an unknown path": (
                    await post(unknown, oversized, sign(oversized, token))
                ).status_code,
                "wrong event type": (await post(path, body, good, event="issues")).status_code,
                "ping": (await post(path, body, good, event="ping")).status_code,
                "GET": (await http.get(path)).status_code,
            }
            untouched = await kube.get(GITREPO, namespace, "app")
            refused_bodies = (await post(path, body, forged)).content
            accepted = await post(path, body, good)

        annotated = await kube.get(GITREPO, namespace, "app")

    assert answers == {
        "forged signature": 401,
        "unsigned": 401,
        "wrong token": 404,
        "unknown path": 404,
        "not a hook path": 404,
        "oversized": 413,
        "oversized to an unknown path": 413,
        "wrong event type": 200,
        "ping": 200,
        "GET": 405,
    }
    assert requested(untouched) is None
    assert refused_bodies == b""
    # The same request, signed with the token, is what changes the object.
    assert (accepted.status_code, accepted.content) == (200, b"")
    assert requested(annotated) is not None
    log = process.log_path.read_text()
    assert "webhook refused" in log
    assert "webhook handled" in log
    for secret in (token, forged.removeprefix("sha256="), good.removeprefix("sha256=")):
        assert secret not in log


async def test_each_path_is_rate_limited_on_its_own(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(SECRET, token_secret(namespace, uuid.uuid4().hex))
    await kube.create(GITREPO, git_repository("app", namespace))
    async with notifier(control_plane, namespace, tmp_path) as process:
        for name in ("busy", "quiet"):
            resources = [{"kind": "GitRepository", "name": "app"}]
            await kube.create(
                RECEIVER, receiver(name, namespace, type="generic-hmac", resources=resources)
            )
        paths = {}
        for name in ("busy", "quiet"):
            obj = await wait_receiver(kube, process, namespace, name, ready_with_path, "Ready")
            paths[name] = obj["status"]["webhookPath"]
        async with httpx.AsyncClient(base_url=process.receiver_url, timeout=30) as http:
            burst = [
                (await http.post(paths["busy"], content=b"{}", headers={"X-Signature": "x"}))
                for _ in range(30)
            ]
            other = await http.post(paths["quiet"], content=b"{}", headers={"X-Signature": "x"})

    codes = [answer.status_code for answer in burst]
    # A burst of 10, refilled at 2 per second: most requests after it are refused unread.
    assert codes[:10] == [401] * 10
    assert codes.count(429) >= 10
    assert other.status_code == 401
    assert requested(await kube.get(GITREPO, namespace, "app")) is None


# 3. What the Receiver's status says, and which objects a request reaches


async def test_a_receiver_without_its_secret_becomes_ready_once_the_secret_exists(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    resources = [{"kind": "GitRepository", "name": "app"}]
    async with notifier(control_plane, namespace, tmp_path) as process:
        await kube.create(RECEIVER, receiver("hook", namespace, resources=resources))
        waiting = await wait_receiver(
            kube,
            process,
            namespace,
            "hook",
            lambda obj: condition(obj, "Ready").get("reason") == "TokenNotFound",
            "waiting for its token",
        )
        await kube.create(SECRET, token_secret(namespace, token))
        ready = await wait_receiver(kube, process, namespace, "hook", ready_with_path, "Ready")

    not_ready = condition(waiting, "Ready")
    assert not_ready["status"] == "False"
    assert not_ready["message"] == (
        f"unable to read token from secret '{namespace}/webhook-token': not found"
    )
    assert condition(waiting, "Reconciling")["reason"] == "ProgressingWithRetry"
    assert "webhookPath" not in waiting["status"]
    path = webhook_path(token, "hook", namespace)
    assert ready["status"]["webhookPath"] == path
    assert condition(ready, "Ready")["message"] == f"Receiver initialized for path: {path}"
    assert token not in process.log_path.read_text()


NAMES = ("a1", "a2", "b1")


async def test_star_and_match_labels_select_and_filters_narrow(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex
    await kube.create(SECRET, token_secret(namespace, token))
    for name, team in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        await kube.create(GITREPO, git_repository(name, namespace, labels={"team": team}))
    await kube.create(KS, kustomization("apps", namespace, "./apps"))
    team_a = [{"kind": "GitRepository", "name": "*", "matchLabels": {"team": "a"}}]
    async with notifier(control_plane, namespace, tmp_path) as process:
        await kube.create(
            RECEIVER,
            receiver(
                "team-a",
                namespace,
                # No apiVersion: weir knows the Kustomization's group.
                resources=[*team_a, {"kind": "Kustomization", "name": "apps"}],
            ),
        )
        await kube.create(
            RECEIVER,
            receiver(
                "filtered",
                namespace,
                resourceFilter="res.metadata.name != 'a2'",
                resources=[
                    *team_a,
                    {
                        "kind": "GitRepository",
                        "name": "b1",
                        "filter": "req.ref == 'refs/heads/main'",
                    },
                ],
            ),
        )
        paths = {}
        for name in ("team-a", "filtered"):
            obj = await wait_receiver(kube, process, namespace, name, ready_with_path, "Ready")
            paths[name] = obj["status"]["webhookPath"]

        async def annotations() -> dict[str, str | None]:
            values = {n: requested(await kube.get(GITREPO, namespace, n)) for n in NAMES}
            return {**values, "apps": requested(await kube.get(KS, namespace, "apps"))}

        async with httpx.AsyncClient(base_url=process.receiver_url, timeout=30) as http:
            first = await http.post(paths["team-a"], content=b"")
            after_first = await annotations()
            second = await http.post(paths["filtered"], json={"ref": "refs/heads/dev"})
            after_second = await annotations()

    assert (first.status_code, second.status_code) == (200, 200)
    assert {name: value is not None for name, value in after_first.items()} == {
        "a1": True,
        "a2": True,
        "b1": False,
        "apps": True,
    }
    # resourceFilter drops a2 (it keeps the first request's value); b1's own filter wants
    # main and the request says dev.
    assert after_second["a1"] != after_first["a1"]
    assert after_second["a2"] == after_first["a2"]
    assert after_second["b1"] is None


async def test_a_suspended_receiver_answers_503_and_requests_nothing(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(SECRET, token_secret(namespace, uuid.uuid4().hex))
    await kube.create(GITREPO, git_repository("app", namespace))
    resources = [{"kind": "GitRepository", "name": "app"}]
    async with notifier(control_plane, namespace, tmp_path) as process:
        await kube.create(RECEIVER, receiver("hook", namespace, resources=resources))
        obj = await wait_receiver(kube, process, namespace, "hook", ready_with_path, "Ready")
        path = obj["status"]["webhookPath"]
        await kube.patch(RECEIVER, namespace, "hook", {"spec": {"suspend": True}})
        async with httpx.AsyncClient(base_url=process.receiver_url, timeout=30) as http:
            # Until the server's cache has the change, requests still go through.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            while (await http.post(path, content=b"")).status_code != 503:
                assert loop.time() < deadline, "still served after suspend"
                await asyncio.sleep(0.05)
            before = requested(await kube.get(GITREPO, namespace, "app"))
            answer = await http.post(path, content=b"")
            after = requested(await kube.get(GITREPO, namespace, "app"))
            # Resumed, it is reconciled again (and its status is current for kstatus).
            await kube.patch(RECEIVER, namespace, "hook", {"spec": {"suspend": False}})
            await wait_receiver(kube, process, namespace, "hook", ready_with_path, "resumed")

    assert (answer.status_code, answer.content) == (503, b"")
    assert after == before


async def test_receivers_that_cannot_work_stall_with_the_reason(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(SECRET, token_secret(namespace, uuid.uuid4().hex))
    cases: dict[str, tuple[dict[str, Any], str, str]] = {
        "cross-namespace": (
            {"resources": [{"kind": "GitRepository", "name": "app", "namespace": "default"}]},
            "AccessDenied",
            "can't access 'GitRepository/default/app', cross-namespace references have been "
            "blocked",
        ),
        "bad-filter": (
            {
                "resourceFilter": "res.metadata.name ==",
                "resources": [{"kind": "GitRepository", "name": "app"}],
            },
            "InvalidCELExpression",
            "invalid resourceFilter expression: failed to parse the CEL expression",
        ),
        "gcr": (
            {"type": "gcr", "resources": [{"kind": "OCIRepository", "name": "app"}]},
            "ValidationFailed",
            "receiver type 'gcr' is not supported by weir",
        ),
        "star-without-labels": (
            {"resources": [{"kind": "GitRepository", "name": "*"}]},
            "ValidationFailed",
            "matchLabels is required when the name is '*'",
        ),
    }
    seen = {}
    async with notifier(control_plane, namespace, tmp_path, "--no-cross-namespace-refs") as process:
        for name, (spec, _, _) in cases.items():
            await kube.create(RECEIVER, receiver(name, namespace, **spec))
        for name, (_, reason, _) in cases.items():
            seen[name] = await wait_receiver(
                kube, process, namespace, name, stalled(reason), f"stalled with {reason}"
            )

    for name, (_, reason, message) in cases.items():
        ready = condition(seen[name], "Ready")
        assert ready["message"].startswith(
            "Reconciliation failed terminally due to configuration error: "
        ), name
        assert message in ready["message"], name
        assert condition(seen[name], "Stalled")["reason"] == reason
        assert "webhookPath" not in seen[name]["status"]


# generic-oidc, with a real issuer on loopback


async def test_a_generic_oidc_receiver_accepts_only_tokens_whose_every_claim_checks_out(
    control_plane: ControlPlane, kube: KubeClient, namespace: str, tmp_path: Path
) -> None:
    await kube.create(GITREPO, git_repository("app", namespace))
    main = "repo:weir/app:ref:refs/heads/main"
    async with running_issuer() as issuer, notifier(control_plane, namespace, tmp_path) as process:
        provider = {
            "issuerURL": issuer.url,
            "validations": [{"expression": f"claims.sub == '{main}'", "message": "main only"}],
        }
        await kube.create(
            RECEIVER,
            receiver(
                "ci",
                namespace,
                type="generic-oidc",
                secretRef=None,
                oidcProviders=[provider],
                resourceFilter="claims.aud == 'notification-controller'",
                resources=[{"kind": "GitRepository", "name": "app"}],
            ),
        )
        # No Secret: the path is the Receiver's name and namespace alone.
        spec = (await kube.get(RECEIVER, namespace, "ci"))["spec"]
        assert "secretRef" not in spec
        obj = await wait_receiver(kube, process, namespace, "ci", ready_with_path, "Ready")
        path = obj["status"]["webhookPath"]
        assert path == webhook_path("", "ci", namespace)
        tokens = {
            "other audience": issuer.token(aud="someone-else"),
            "expired": issuer.token(lifetime=-60),
            "another branch": issuer.token(sub="repo:weir/app:ref:refs/heads/dev"),
            "another issuer's key": SigningKey.new("rsa-1").sign(
                {"iss": issuer.url, "aud": "notification-controller", "sub": main, "exp": 2**31}
            ),
        }
        good = issuer.token(sub=main)
        async with httpx.AsyncClient(base_url=process.receiver_url, timeout=30) as http:
            refused = {
                what: (
                    await http.post(path, content=b"{}", headers={"Authorization": f"Bearer {t}"})
                ).status_code
                for what, t in tokens.items()
            }
            refused["no token"] = (await http.post(path, content=b"{}")).status_code
            untouched = requested(await kube.get(GITREPO, namespace, "app"))
            accepted = await http.post(path, json={}, headers={"Authorization": f"Bearer {good}"})
        annotated = requested(await kube.get(GITREPO, namespace, "app"))

    assert refused == {
        "other audience": 401,
        "expired": 401,
        "another branch": 401,
        "another issuer's key": 401,
        "no token": 401,
    }
    assert untouched is None
    assert accepted.status_code == 200
    assert annotated is not None
    log = process.log_path.read_text()
    for token in (good, *tokens.values()):
        for part in token.split("."):
            assert part not in log
