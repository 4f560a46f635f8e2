"""notification.providers against real endpoints: a loopback HTTP server that records what it
gets (plain, and behind a TLS front that requires a client certificate), a real forward proxy
(tinyproxy), and a real Gitea for commit statuses (Acceptance 4).

``deliver`` is called directly, with Targets resolved from Provider objects and Secret data as
the controller resolves them; the retry policy is Flux's with a short backoff."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import free_port
from controllers.events import flux_event
from controllers.httpserver import Request, Response, serve_http
from controllers.secrets import SecretData
from kustomize.api_v1 import Kustomization
from notification.api_v1beta3 import Alert, Provider
from notification.providers import (
    DeliveryError,
    RetryPolicy,
    Target,
    deliver,
    resolve_target,
)
from notification.providers.event import event_json
from tests.gitea import GiteaServer
from tests.proxyserver import TinyProxy
from tests.testpki import TLSFiles
from tests.tlsfront import MutualTLSFront

SHORT_RETRY = RetryPolicy(retries=4, min_wait=0.01, max_wait=0.05)
UID = "5f3e8a10-2b4c-4d6e-8f00-0123456789ab"
SHA = "731f7eaddfb6af01cb2173e18f0f75b0ba780ef1"
TOKEN = "s3cr3t-t0ken-value"
ALERT = Alert.model_validate(
    {
        "metadata": {"name": "all", "namespace": "apps"},
        "spec": {
            "providerRef": {"name": "hook"},
            "eventSources": [{"kind": "Kustomization", "name": "*"}],
        },
    }
)
KUSTOMIZATION = Kustomization.model_validate(
    {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": "webapp",
            "namespace": "apps",
            "uid": "c0ffee00-1111-2222-3333-444455556666",
        },
        "spec": {
            "interval": "1h",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "repo"},
        },
    }
)


def kustomization_event(
    severity: str = "error",
    reason: str = "HealthCheckFailed",
    message: str = "Health check failed after 30s",
    revision: str | None = f"main@sha1:{SHA}",
    **metadata: str,
) -> dict[str, Any]:
    """The event kustomize-controller forwards, with an Alert's metadata merged in."""
    event = flux_event(
        KUSTOMIZATION,
        "Warning" if severity == "error" else "Normal",
        reason,
        message,
        controller="kustomize-controller",
        instance="kustomize-controller-0",
        revision=revision,
    )
    event["metadata"] |= metadata
    return event


def provider(type_: str, **spec: Any) -> Provider:
    return Provider.model_validate(
        {
            "apiVersion": "notification.toolkit.fluxcd.io/v1beta3",
            "kind": "Provider",
            "metadata": {"name": "hook", "namespace": "apps", "uid": UID},
            "spec": {"type": type_, **spec},
        }
    )


def secret(name: str = "creds", **data: str) -> SecretData:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    return SecretData("apps", name, encoded)


def resolved(
    prov: Provider,
    creds: SecretData | None = None,
    cert: SecretData | None = None,
    proxy: SecretData | None = None,
) -> Target:
    return replace(resolve_target(prov, creds, cert, proxy), retry=SHORT_RETRY)


Answer = Callable[[Request], Awaitable[Response]]


@dataclass
class Recorder:
    """A loopback HTTP endpoint that keeps every request and answers as ``answers`` say
    (in turn; the last one from then on)."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        if not self.answers:
            return Response(200, b"ok")
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return await answer(request)


def status(code: int, body: Any = b"", **headers: str) -> Answer:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def answer(request: Request) -> Response:
        return Response(code, content, content_type="application/json", headers=headers)

    return answer


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    async with serve_http("127.0.0.1:0", rec.handle, name="recorder") as server:
        rec.port = server.addresses[0][1]
        yield rec


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return TLSFiles.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def tls_front(pki: TLSFiles, recorder: Recorder) -> AsyncIterator[MutualTLSFront]:
    """HTTPS with a test CA's certificate, requiring a client certificate, in front of the
    recorder."""
    front = MutualTLSFront(pki, ("127.0.0.1", recorder.port))
    await front.start()
    try:
        yield front
    finally:
        await front.close()


def body_json(request: Request) -> Any:
    return json.loads(request.body)


# The alerting types: what the endpoint receives


async def test_generic_posts_the_event_json_with_the_secrets_headers(recorder: Recorder) -> None:
    event = kustomization_event()
    target = resolved(
        provider("generic", address=f"{recorder.url}/hooks/flux"),
        secret(headers="Authorization: my-api-token\nX-Forwarded-Proto: https\n"),
    )

    await deliver(target, event, ALERT)

    (request,) = recorder.requests
    assert (request.method, request.path) == ("POST", "/hooks/flux")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["gotk-component"] == "kustomize-controller"
    assert request.headers["authorization"] == "my-api-token"
    assert request.headers["x-forwarded-proto"] == "https"
    assert "x-signature" not in request.headers
    assert request.body == event_json(event)
    received = body_json(request)
    assert received["involvedObject"]["name"] == "webapp"
    assert received["severity"] == "error"
    assert received["metadata"] == {"kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{SHA}"}


async def test_generic_hmac_signs_the_body_with_the_token(recorder: Recorder) -> None:
    target = resolved(provider("generic-hmac", address=recorder.url), secret(token=TOKEN))

    await deliver(target, kustomization_event(), ALERT)

    (request,) = recorder.requests
    algorithm, _, digest = request.headers["x-signature"].partition("=")
    expected = hmac.new(TOKEN.encode(), request.body, hashlib.sha256).hexdigest()
    assert algorithm == "sha256"
    assert hmac.compare_digest(digest, expected)
    wrong = hmac.new(b"another-token", request.body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(digest, wrong)


async def test_slack_gets_an_attachment_message(recorder: Recorder) -> None:
    target = resolved(
        provider("slack", channel="alerts", username="flux"),
        secret(address=f"{recorder.url}/services/T0/B0/XXXX"),
    )

    await deliver(target, kustomization_event(env="prod"), ALERT)

    (request,) = recorder.requests
    assert request.path == "/services/T0/B0/XXXX"
    payload = body_json(request)
    assert (payload["channel"], payload["username"]) == ("alerts", "flux")
    (attachment,) = payload["attachments"]
    assert attachment["color"] == "danger"
    assert attachment["author_name"] == "kustomization/webapp.apps"
    assert attachment["text"] == "Health check failed after 30s"
    assert attachment["mrkdwn_in"] == ["text"]
    assert {f["title"]: f["value"] for f in attachment["fields"]} == {
        "env": "prod",
        "kustomize.toolkit.fluxcd.io/revision": f"main@sha1:{SHA}",
    }


async def test_slack_web_api_uses_the_token_and_a_refusal_is_a_failure(recorder: Recorder) -> None:
    recorder.answers = [status(200, {"ok": False, "error": "channel_not_found"})]
    target = resolved(
        provider("slack", address=f"{recorder.url}/api/chat.postMessage", channel="nope"),
        secret(token=f"xoxb-{TOKEN}"),
    )

    with pytest.raises(DeliveryError) as caught:
        await deliver(target, kustomization_event(), ALERT)

    (request,) = recorder.requests  # a refusal is not retried
    assert request.headers["authorization"] == f"Bearer xoxb-{TOKEN}"
    assert "channel_not_found" in str(caught.value)
    assert TOKEN not in str(caught.value)


async def test_msteams_gets_an_adaptive_card(recorder: Recorder) -> None:
    target = resolved(
        provider("msteams"), secret(address=f"{recorder.url}/workflows/abc/triggers/manual?sig=x")
    )

    await deliver(target, kustomization_event(summary="prod cluster"), ALERT)

    (request,) = recorder.requests
    assert (request.path, request.query) == ("/workflows/abc/triggers/manual", "sig=x")
    payload = body_json(request)
    assert payload["type"] == "message"
    (attachment,) = payload["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, message, facts = card["body"][0]["items"]
    assert title["text"] == "kustomization/webapp.apps"
    assert (message["text"], message["color"]) == ("Health check failed after 30s", "attention")
    assert facts["facts"][0] == {"title": "summary", "value": "prod cluster"}


async def test_discord_gets_a_slack_message_at_the_slack_endpoint(recorder: Recorder) -> None:
    target = resolved(provider("discord"), secret(address=f"{recorder.url}/api/webhooks/1/tok"))

    await deliver(target, kustomization_event("info", "ReconciliationSucceeded", "Applied"), ALERT)

    (request,) = recorder.requests
    assert request.path == "/api/webhooks/1/tok/slack"
    payload = body_json(request)
    assert payload["username"] == "kustomize-controller"
    assert payload["attachments"][0]["color"] == "good"
    assert payload["attachments"][0]["text"] == "Applied"


# Retries, failures and the timeout


async def test_a_500_is_retried_and_the_same_body_sent_again(recorder: Recorder) -> None:
    recorder.answers = [status(500, b"busy"), status(200)]
    target = resolved(provider("generic-hmac", address=recorder.url), secret(token=TOKEN))

    await deliver(target, kustomization_event(), ALERT)

    first, second = recorder.requests
    assert first.body == second.body
    assert first.headers["x-signature"] == second.headers["x-signature"]


async def test_a_429_is_retried_after_its_retry_after(recorder: Recorder) -> None:
    recorder.answers = [status(429, b"slow down", **{"Retry-After": "0"}), status(204)]
    target = resolved(provider("generic", address=recorder.url))

    await deliver(target, kustomization_event(), ALERT)

    assert len(recorder.requests) == 2


async def test_a_server_that_keeps_failing_is_a_delivery_error_after_the_retries(
    recorder: Recorder,
) -> None:
    recorder.answers = [status(503, f"upstream down for {TOKEN}".encode())]
    path = "/services/T0/B0/SECRETPATH"
    target = resolved(provider("slack"), secret(address=recorder.url + path, token=TOKEN))

    with pytest.raises(DeliveryError) as caught:
        await deliver(target, kustomization_event(), ALERT)

    message = str(caught.value)
    assert len(recorder.requests) == 5  # Flux's 4 retries
    assert message.startswith(f"POST to {recorder.url} failed after 5 attempts: HTTP 503")
    assert "upstream down for ***" in message
    assert TOKEN not in message
    assert "SECRETPATH" not in message


async def test_a_refusal_is_not_retried(recorder: Recorder) -> None:
    recorder.answers = [status(400, b"bad payload")]
    target = resolved(provider("generic", address=recorder.url))

    with pytest.raises(DeliveryError, match=r"failed: HTTP 400 Bad Request: bad payload$"):
        await deliver(target, kustomization_event(), ALERT)

    assert len(recorder.requests) == 1


async def test_a_closed_port_is_retried_then_a_delivery_error() -> None:
    port = free_port()  # nothing listens there
    target = replace(
        resolved(provider("generic", address=f"http://127.0.0.1:{port}/hook")),
        retry=RetryPolicy(retries=2, min_wait=0.01, max_wait=0.01),
    )

    with pytest.raises(DeliveryError) as caught:
        await deliver(target, kustomization_event(), ALERT)

    assert str(caught.value).startswith(f"POST to http://127.0.0.1:{port} failed after 3 attempts")


async def test_an_endpoint_that_never_answers_times_out_at_the_providers_timeout(
    recorder: Recorder,
) -> None:
    never = asyncio.Event()

    async def hold(request: Request) -> Response:
        await never.wait()
        return Response(200)

    recorder.answers = [hold]
    target = resolved(provider("generic", address=recorder.url, timeout="300ms"))
    started = time.monotonic()

    with pytest.raises(DeliveryError, match=r"did not finish within 0\.3s"):
        await deliver(target, kustomization_event(), ALERT)

    assert time.monotonic() - started < 5.0
    assert target.timeout == 0.3


# TLS and the proxy


async def test_https_with_the_cert_secrets_ca_and_client_certificate(
    tls_front: MutualTLSFront, recorder: Recorder, pki: TLSFiles
) -> None:
    cert = secret("tls", **pki.secret_data(client=True))
    target = resolved(
        provider("generic", address=f"https://127.0.0.1:{tls_front.port}/hook"), cert=cert
    )

    await deliver(target, kustomization_event(), ALERT)

    (request,) = recorder.requests
    assert request.path == "/hook"
    assert tls_front.clients == ["127.0.0.1"]


async def test_legacy_cert_secret_keys_work_too(
    tls_front: MutualTLSFront, recorder: Recorder, pki: TLSFiles
) -> None:
    cert = secret(
        "tls",
        caFile=pki.ca.read_text(),
        certFile=pki.client_cert.read_text(),
        keyFile=pki.client_key.read_text(),
    )
    target = resolved(
        provider("msteams", address=f"https://127.0.0.1:{tls_front.port}/w"), cert=cert
    )

    await deliver(target, kustomization_event(), ALERT)

    assert len(recorder.requests) == 1


async def test_a_server_certificate_the_target_does_not_trust_fails_at_once(
    tls_front: MutualTLSFront, recorder: Recorder, pki: TLSFiles
) -> None:
    # The client pair but not the CA: the server's certificate does not verify.
    cert = secret(
        "tls", **{"tls.crt": pki.client_cert.read_text(), "tls.key": pki.client_key.read_text()}
    )
    target = resolved(
        provider("generic", address=f"https://127.0.0.1:{tls_front.port}/"), cert=cert
    )

    with pytest.raises(DeliveryError) as caught:
        await deliver(target, kustomization_event(), ALERT)

    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert "attempts" not in str(caught.value)  # not retried
    assert recorder.requests == []


async def test_through_the_proxy_secrets_proxy(recorder: Recorder, http_proxy: TinyProxy) -> None:
    proxy = secret(
        "proxy",
        address=http_proxy.address,
        username=http_proxy.username,
        password=http_proxy.password,
    )
    before = http_proxy.requests_to(recorder.port)
    target = resolved(provider("generic", address=f"{recorder.url}/via-proxy"), proxy=proxy)

    await deliver(target, kustomization_event(), ALERT)

    (request,) = recorder.requests
    assert request.path == "/via-proxy"
    assert http_proxy.requests_to(recorder.port) == before + 1


async def test_a_proxy_that_refuses_the_credentials_is_a_delivery_error_without_them(
    recorder: Recorder, http_proxy: TinyProxy
) -> None:
    proxy = secret(
        "proxy", address=http_proxy.address, username=http_proxy.username, password="wrong-pass"
    )
    target = resolved(provider("generic", address=recorder.url), proxy=proxy)

    with pytest.raises(DeliveryError) as caught:
        await deliver(target, kustomization_event(), ALERT)

    # tinyproxy closes the connection on bad credentials.
    assert str(caught.value).startswith(f"POST to {recorder.url} failed")
    assert "wrong-pass" not in str(caught.value)
    assert recorder.requests == []


# Commit statuses: Gitea for real (Acceptance 4), GitHub's and GitLab's APIs at the recorder


def _git(cwd: Path, *args: str) -> str:
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
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout.strip()


def push_two_commits(clone_url: str, workdir: Path) -> tuple[str, str]:
    """Two commits on ``main``, pushed; their SHAs, oldest first."""
    workdir.mkdir(parents=True)
    _git(workdir, "init", "--quiet", "--initial-branch=main")
    shas = []
    for content in ("one", "two"):
        (workdir / "README").write_text(content)
        _git(workdir, "add", "README")
        _git(workdir, "commit", "--quiet", "-m", content)
        shas.append(_git(workdir, "rev-parse", "HEAD"))
    _git(workdir, "push", "--quiet", clone_url, "main")
    return shas[0], shas[1]


async def test_gitea_commit_statuses_on_the_right_commit(
    gitea: GiteaServer, tmp_path: Path
) -> None:
    name = f"status-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(gitea.create_repository, name)
    first, second = await asyncio.to_thread(push_two_commits, gitea.clone_url(name), tmp_path / "w")
    await asyncio.to_thread(gitea.wait_for_push, name, second)
    target = resolved(
        provider("gitea", address=f"{gitea.url}/{gitea.owner}/{name}.git"),
        secret(token=gitea.token),
    )
    revision = f"main@sha1:{first}"
    context = f"kustomization/webapp/{UID.split('-')[0]}"

    async def statuses(sha: str) -> list[tuple[str, str, str]]:
        """Oldest first: Gitea lists a commit's statuses by ascending ID."""
        found = await asyncio.to_thread(gitea.commit_statuses, name, sha)
        ordered = sorted(found, key=lambda s: s["id"])
        return [(s["status"], s["context"], s["description"]) for s in ordered]

    await deliver(target, kustomization_event("info", "Progressing", "Applying", revision), ALERT)
    await deliver(
        target, kustomization_event("info", "ReconciliationSucceeded", "ok", revision), ALERT
    )
    assert (await statuses(first))[-1] == ("success", context, "reconciliation succeeded")

    # The same status again sets nothing new; a failure is set on top.
    await deliver(
        target, kustomization_event("info", "ReconciliationSucceeded", "ok", revision), ALERT
    )
    await deliver(target, kustomization_event("error", "HealthCheckFailed", "bad", revision), ALERT)

    assert await statuses(first) == [
        ("pending", context, "progressing"),
        ("success", context, "reconciliation succeeded"),
        ("failure", context, "health check failed"),
    ]
    # A success after the failure is set again: only the newest status counts as the same.
    await deliver(
        target, kustomization_event("info", "ReconciliationSucceeded", "ok", revision), ALERT
    )
    assert (await statuses(first))[-1] == ("success", context, "reconciliation succeeded")
    assert len(await statuses(first)) == 4
    assert await statuses(second) == []


async def test_gitea_commit_status_key_from_the_commit_status_expression(
    gitea: GiteaServer, tmp_path: Path
) -> None:
    name = f"expr-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(gitea.create_repository, name)
    _, second = await asyncio.to_thread(push_two_commits, gitea.clone_url(name), tmp_path / "w")
    await asyncio.to_thread(gitea.wait_for_push, name, second)
    expression = "event.involvedObject.name + '@' + event.metadata.cluster"
    target = resolved(
        provider(
            "gitea",
            address=f"http://127.0.0.1:{gitea.port}/{gitea.owner}/{name}",
            commitStatusExpr=expression,
        ),
        secret(token=gitea.token),
    )

    event = kustomization_event(
        "info", "ReconciliationSucceeded", "ok", f"main@sha1:{second}", cluster="prod"
    )
    await deliver(target, event, ALERT)

    (found,) = await asyncio.to_thread(gitea.commit_statuses, name, second)
    assert (found["status"], found["context"]) == ("success", "webapp@prod")


async def test_an_event_without_a_revision_sets_no_commit_status(recorder: Recorder) -> None:
    target = resolved(provider("github", address=f"{recorder.url}/org/repo"), secret(token=TOKEN))

    await deliver(target, kustomization_event(revision=None), ALERT)

    assert recorder.requests == []


async def test_github_commit_status_requests_follow_its_api(recorder: Recorder) -> None:
    created = {"id": 1, "state": "failure", "context": "x", "description": "y"}
    recorder.answers = [status(200, []), status(201, created)]
    target = resolved(provider("github", address=f"{recorder.url}/org/repo"), secret(token=TOKEN))

    await deliver(target, kustomization_event(), ALERT)

    lookup, create = recorder.requests
    assert (lookup.method, lookup.path, lookup.query) == (
        "GET",
        f"/api/v3/repos/org/repo/commits/{SHA}/statuses",
        "per_page=50",
    )
    assert (create.method, create.path) == ("POST", f"/api/v3/repos/org/repo/statuses/{SHA}")
    for request in (lookup, create):
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/vnd.github.v3+json"
    assert create.headers["content-type"] == "application/json"
    assert body_json(create) == {
        "state": "failure",
        "description": "health check failed",
        "context": f"kustomization/webapp/{UID.split('-')[0]}",
    }


async def test_github_sets_no_status_the_commit_already_has(recorder: Recorder) -> None:
    context = f"kustomization/webapp/{UID.split('-')[0]}"
    existing = [
        {"id": 7, "state": "failure", "context": context, "description": "health check failed"}
    ]
    recorder.answers = [status(200, existing)]
    target = resolved(provider("github", address=f"{recorder.url}/org/repo"), secret(token=TOKEN))

    await deliver(target, kustomization_event(), ALERT)

    assert [r.method for r in recorder.requests] == ["GET"]


async def test_gitlab_commit_status_requests_follow_its_api(recorder: Recorder) -> None:
    recorder.answers = [status(200, []), status(201, {"id": 1})]
    target = resolved(
        provider("gitlab", address=f"{recorder.url}/group/sub/project.git"),
        secret(token=TOKEN),
    )

    await deliver(target, kustomization_event("info", "ReconciliationSucceeded", "ok"), ALERT)

    lookup, create = recorder.requests
    key = f"kustomization/webapp/{UID.split('-')[0]}"
    assert (lookup.method, lookup.path) == (
        "GET",
        f"/api/v4/projects/group%2Fsub%2Fproject/repository/commits/{SHA}/statuses",
    )
    assert lookup.query == "name=" + key.replace("/", "%2F")
    assert (create.method, create.path) == (
        "POST",
        f"/api/v4/projects/group%2Fsub%2Fproject/statuses/{SHA}",
    )
    for request in (lookup, create):
        assert request.headers["private-token"] == TOKEN
        assert "authorization" not in request.headers
    assert body_json(create) == {
        "state": "success",
        "name": key,
        "description": "reconciliation succeeded",
    }


async def test_a_commit_status_api_refusal_is_a_delivery_error_without_the_token(
    recorder: Recorder,
) -> None:
    recorder.answers = [status(401, {"message": "Bad credentials"})]
    target = resolved(provider("github", address=f"{recorder.url}/org/repo"), secret(token=TOKEN))

    with pytest.raises(DeliveryError) as caught:
        await deliver(target, kustomization_event(), ALERT)

    assert "HTTP 401" in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert len(recorder.requests) == 1
