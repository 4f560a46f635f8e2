"""The notification kinds on the command line, as a user runs it, against the real control
plane: ``create``/``get``/``export``/``suspend``/``resume`` of Receivers, Alerts and Providers,
``weir trigger receiver`` against the real notification controller (and against a loopback
server that records what it gets), and the judgement ``weir get`` gives Alerts and Providers,
which have no status. Tables and YAML are compared with golden files
(``WEIR_UPDATE_GOLDEN=1`` rewrites them)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import ControlPlane
from controllers.httpserver import HttpServer, Request, Response, serve_http
from controllers.kinds import SECRET
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from notification.api_v1 import Receiver, webhook_path
from notification.api_v1beta3 import Alert, Provider
from notification.webhooks import validate
from tests.gitserver import GitDaemon, GitRepos
from tests.integration.cli import Cli, golden
from tests.integration.kinds import GITREPO
from tests.integration.processes import running_controllers

pytestmark = pytest.mark.integration

TOKEN = "a-webhook-token-for-tests"
SLACK_URL = "https://hooks.slack.invalid/services/T000/B000/XXXX"
# The trigger is retried while the receiver server has not yet seen a Receiver created a
# moment ago (it answers 404 until then), as a user's would be.
QUICK_RETRIES = ("--retries=20", "--retry-delay=500ms")


def normalized(cli: Cli, text: str) -> str:
    """What changes from run to run replaced: the namespace, and the hook path made from it."""
    return re.sub(r"/hook/[0-9a-f]{64}", "/hook/HASH", cli.normalized(text))


async def secret(kube: KubeClient, namespace: str, name: str, **data: str) -> None:
    await kube.create(
        SECRET, {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
    )


def receiver(name: str, namespace: str, receiver_type: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": Receiver.info.api_version,
        "kind": "Receiver",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "type": receiver_type,
            "secretRef": {"name": "webhook-token"},
            "resources": [{"kind": "GitRepository", "name": "app"}],
            **spec,
        },
    }


async def test_create_export_prints_flux_manifests_and_bad_flags_are_usage_errors(
    cli: Cli,
) -> None:
    made = [
        await cli(
            "create",
            "receiver",
            "github",
            "--type=github",
            "--event=ping,push",
            "--secret-ref=webhook-token",
            "--resource=GitRepository/app",
            "--resource=kustomization/apps",
            "--export",
        ),
        await cli(
            "create",
            "alert",
            "apps",
            "--provider-ref=slack",
            "--event-source=Kustomization/*,GitRepository/app.sources",
            "--event-severity=error",
            "--export",
        ),
        await cli(
            "create",
            "alert-provider",
            "slack",
            "--type=slack",
            "--channel=general",
            "--secret-ref=slack-url",
            "--export",
        ),
    ]
    assert [result.code for result in made] == [0, 0, 0], [result.err for result in made]
    golden("create-notification-export.yaml", cli.normalized("".join(r.out for r in made)))

    unknown_kind = await cli(
        "create", "receiver", "x", "--type=github", "--secret-ref=t", "--resource=Pod/x", "--export"
    )
    assert unknown_kind.code == 2
    assert unknown_kind.err.startswith("✗ --resource 'Pod/x': expected KIND/NAME, KIND one of")
    no_resource = await cli("create", "receiver", "x", "--type=github", "--secret-ref=t")
    assert no_resource.code == 2
    assert no_resource.err.strip() == "✗ at least one --resource is required"
    no_source = await cli("create", "alert", "x", "--provider-ref=p", "--export")
    assert no_source.code == 2
    unknown_type = await cli("create", "alert-provider", "x", "--type=carrier-pigeon")
    assert unknown_type.code == 2


async def test_alerts_and_providers_are_judged_by_the_commands(
    cli: Cli, kube: KubeClient, namespace: str
) -> None:
    """No controller is needed: the commands tell whether each can be used."""
    await secret(kube, namespace, "slack-url", address=SLACK_URL)
    provider = await cli(
        "create", "alert-provider", "slack", "--type=slack", "--secret-ref=slack-url"
    )
    assert provider.code == 0, provider.err
    assert provider.err.splitlines()[-1] == f"✔ Provider {namespace}/slack: sends slack alerts"
    alert = await cli(
        "create", "alert", "apps", "--provider-ref=slack", "--event-source=Kustomization/*"
    )
    assert alert.code == 0, alert.err
    assert alert.err.splitlines()[-1] == f"✔ Alert {namespace}/apps: sends to provider 'slack'"

    # Applied, but not usable: the command says why and exits 1.
    unsupported = await cli("create", "alert-provider", "sentry", "--type=sentry")
    assert unsupported.code == 1
    assert unsupported.err.splitlines()[-1] == (
        f"✗ Provider {namespace}/sentry: provider type 'sentry' is not supported by weir"
    )
    orphan = await cli(
        "create", "alert", "orphan", "--provider-ref=nowhere", "--event-source=GitRepository/*"
    )
    assert orphan.code == 1
    assert orphan.err.splitlines()[-1] == (
        f"✗ Alert {namespace}/orphan: provider 'nowhere' not found"
    )
    await kube.create(
        Provider.info,
        {
            "apiVersion": Provider.info.api_version,
            "kind": "Provider",
            "metadata": {"name": "hooks", "namespace": namespace},
            "spec": {"type": "generic", "secretRef": {"name": "missing"}},
        },
    )
    await kube.create(
        Alert.info,
        {
            "apiVersion": Alert.info.api_version,
            "kind": "Alert",
            "metadata": {"name": "filtered", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "slack"},
                "eventSources": [{"kind": "Kustomization", "name": "*"}],
                # Valid for Python's re, not for RE2 (Go's syntax, which Flux compiles).
                "exclusionList": ["(?<=x)y"],
            },
        },
    )
    await kube.create(
        Alert.info,
        {
            "apiVersion": Alert.info.api_version,
            "kind": "Alert",
            "metadata": {"name": "hooked", "namespace": namespace},
            "spec": {
                "providerRef": {"name": "hooks"},
                "eventSources": [{"kind": "GitRepository", "name": "app"}],
            },
        },
    )

    providers = await cli("get", "alert-providers")
    assert providers.code == 0, providers.err
    golden("get-alert-providers.txt", normalized(cli, providers.out))
    alerts = await cli("get", "alerts")
    assert alerts.code == 0, alerts.err
    golden("get-alerts.txt", normalized(cli, alerts.out))
    everything = await cli("get", "all")
    assert "alert/filtered" in everything.out
    assert "provider/slack" in everything.out

    suspended = await cli("suspend", "alert", "apps")
    assert suspended.code == 0, suspended.err
    assert (await kube.get(Alert.info, namespace, "apps"))["spec"]["suspend"] is True
    assert (await cli("get", "alert", "apps")).out.split("\n")[1].split()[:2] == ["apps", "True"]
    resumed = await cli("resume", "alert", "apps")
    assert resumed.code == 0, resumed.err
    assert (await kube.get(Alert.info, namespace, "apps"))["spec"]["suspend"] is False

    exported = await cli("export", "alert-provider", "--all")
    assert exported.code == 0, exported.err
    golden("export-alert-providers.yaml", normalized(cli, exported.out))
    counted = await cli("stats")
    rows = {line.split()[0]: line.split()[1:4] for line in counted.out.splitlines()[1:]}
    # RUNNING, FAILING, SUSPENDED
    assert rows["Alert"] == ["1", "3", "0"]
    assert rows["Provider"] == ["1", "2", "0"]


async def test_a_receiver_is_created_shown_triggered_and_reconciles_its_source(
    cli: Cli,
    control_plane: ControlPlane,
    kube: KubeClient,
    namespace: str,
    tmp_path: Path,
    git_repos: GitRepos,
    git_daemon: GitDaemon,
) -> None:
    repo = f"receiver-{namespace}"
    git_repos.create(repo)
    git_repos.commit(repo, {"README.md": "app\n"}, "app")
    async with running_controllers(
        control_plane, namespace, tmp_path, notification=True
    ) as running:
        assert running.notification is not None
        url = f"--url={running.notification.receiver_url}"
        source = await cli(
            "create", "source", "git", "app", f"--url={git_daemon.url(repo)}", "--branch=main"
        )
        assert source.code == 0, source.err
        await secret(kube, namespace, "webhook-token", token=TOKEN)

        created = await cli(
            "create",
            "receiver",
            "github",
            "--type=github",
            "--event=push",
            "--secret-ref=webhook-token",
            "--resource=GitRepository/app",
        )
        assert created.code == 0, created.err + running.logs()
        path = webhook_path(TOKEN, "github", namespace)
        assert created.err.splitlines()[-1] == f"✔ webhook path: {path}"
        obj = await kube.get(Receiver.info, namespace, "github")
        assert obj["status"]["webhookPath"] == path
        listed = await cli("get", "receivers")
        assert listed.code == 0, listed.err
        golden("get-receivers.txt", normalized(cli, listed.out))

        triggered = await cli("trigger", "receiver", "github", url, *QUICK_RETRIES)
        assert triggered.code == 0, triggered.err + running.logs()
        assert triggered.err.splitlines()[-1] == f"✔ Receiver {namespace}/github triggered (200)"
        assert TOKEN not in triggered.err + triggered.out
        assert path not in triggered.err + triggered.out
        asked = await running.wait_for(
            kube,
            GITREPO,
            namespace,
            "app",
            lambda o: (
                (o["status"].get("lastHandledReconcileAt") or "")
                == (o["metadata"].get("annotations") or {}).get(REQUESTED_AT)
            ),
            "reconciled at the webhook's request",
        )
        stamp = asked["metadata"]["annotations"][REQUESTED_AT]

        # Another token makes another path: no Receiver has it, nothing is annotated.
        forged = await cli(
            "trigger", "receiver", "github", url, "--token=guessed", "--type=github", "--retries=0"
        )
        assert forged.code == 1
        assert forged.err.splitlines()[-1] == (
            f"✗ Receiver {namespace}/github: {running.notification.receiver_url} answered "
            "404 Not Found"
        )
        annotations = (await kube.get(GITREPO, namespace, "app"))["metadata"]["annotations"]
        assert annotations[REQUESTED_AT] == stamp

        reconciled = await cli("reconcile", "receiver", "github")
        assert reconciled.code == 0, reconciled.err
        assert reconciled.err.splitlines()[-1] == f"✔ Receiver {namespace}/github is ready"
        assert (await cli("suspend", "receiver", "github")).code == 0
        refused = await cli("trigger", "receiver", "github", url)
        assert refused.code == 1
        assert refused.err.strip() == (
            f"✗ Receiver {namespace}/github is suspended: resume it first (weir resume)"
        )
        resumed = await cli("resume", "receiver", "github")
        assert resumed.code == 0, resumed.err
        exported = await cli("export", "receiver", "github")
        golden("export-receiver.yaml", normalized(cli, exported.out))


class Recorder:
    """A loopback HTTP server that records each request and answers with the next status."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[Request] = []

    async def handle(self, request: Request) -> Response:
        self.requests.append(request)
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return Response(status, b"" if status < 300 else b"no such hook")


@pytest.fixture
async def recorder() -> AsyncIterator[tuple[Recorder, HttpServer]]:
    record = Recorder([200])
    async with serve_http("127.0.0.1:0", record.handle, name="recorder") as server:
        yield record, server


def server_url(server: HttpServer, base: str = "") -> str:
    host, port = server.addresses[0]
    return f"http://{host}:{port}{base}"


@pytest.mark.parametrize(
    ("receiver_type", "events", "event"),
    [
        pytest.param("github", ["ping", "push"], "push", id="github"),
        pytest.param("gitlab", ["Tag Push Hook"], "Tag Push Hook", id="gitlab"),
        pytest.param("bitbucket", [], "repo:refs_changed", id="bitbucket"),
        pytest.param("generic-hmac", [], "", id="generic-hmac"),
        pytest.param("harbor", [], "", id="harbor"),
        pytest.param("nexus", [], "", id="nexus"),
    ],
)
async def test_trigger_posts_to_the_hook_path_signed_for_the_receivers_type(
    cli: Cli,
    kube: KubeClient,
    namespace: str,
    recorder: tuple[Recorder, HttpServer],
    receiver_type: str,
    events: list[str],
    event: str,
) -> None:
    record, server = recorder
    await secret(kube, namespace, "webhook-token", token=TOKEN)
    await kube.create(Receiver.info, receiver("hooked", namespace, receiver_type, events=events))
    payload = '{"action": "CREATED", "repositoryName": "app"}'

    done = await cli(
        "trigger",
        "receiver",
        "hooked",
        f"--url={server_url(server, '/base/')}",
        f"--payload={payload}",
    )

    assert done.code == 0, done.err
    (request,) = record.requests
    assert request.method == "POST"
    assert request.path == "/base" + webhook_path(TOKEN, "hooked", namespace)
    assert request.body == payload.encode()
    verdict = validate(
        receiver_type, token=TOKEN, events=events, headers=request.headers, body=request.body
    )
    assert verdict.accepted, verdict
    assert verdict.event == event
    assert TOKEN not in done.err + done.out


async def test_trigger_retries_what_flux_retries_and_no_more(
    cli: Cli, kube: KubeClient, namespace: str, recorder: tuple[Recorder, HttpServer]
) -> None:
    record, server = recorder
    await secret(kube, namespace, "webhook-token", token=TOKEN)
    await kube.create(Receiver.info, receiver("hooked", namespace, "generic-hmac"))
    url = f"--url={server_url(server)}"

    record.statuses = [404, 503, 200]
    retried = await cli("trigger", "receiver", "hooked", url, "--retries=2", "--retry-delay=0s")
    assert retried.code == 0, retried.err
    assert len(record.requests) == 3
    assert "answered 404 Not Found: no such hook; trying again in 0s (1/2)" in retried.err

    record.requests.clear()
    record.statuses = [401]
    refused = await cli("trigger", "receiver", "hooked", url, "--retries=5", "--retry-delay=0s")
    assert refused.code == 1
    assert len(record.requests) == 1
    assert refused.err.splitlines()[-1] == (
        f"✗ Receiver {namespace}/hooked: {server_url(server)} answered 401 Unauthorized: "
        "no such hook"
    )

    record.requests.clear()
    record.statuses = [503]
    exhausted = await cli("trigger", "receiver", "hooked", url, "--retries=1", "--retry-delay=0s")
    assert exhausted.code == 1
    assert len(record.requests) == 2


async def test_trigger_with_a_token_needs_no_cluster_and_missing_things_are_said(
    cli: Cli,
    kube: KubeClient,
    namespace: str,
    recorder: tuple[Recorder, HttpServer],
    tmp_path: Path,
) -> None:
    record, server = recorder
    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text("apiVersion: v1\nkind: Config\ncurrent-context: none\n")
    offline = Cli(nowhere, namespace)

    done = await offline(
        "trigger", "receiver", "app", f"--url={server_url(server)}", "--token=t0k", "--type=github"
    )

    assert done.code == 0, done.err
    (request,) = record.requests
    assert request.path == webhook_path("t0k", "app", namespace)
    verdict = validate("github", token="t0k", events=[], headers=request.headers, body=b"{}")
    assert verdict.accepted

    missing = await cli("trigger", "receiver", "absent", f"--url={server_url(server)}")
    assert missing.code == 4
    await kube.create(Receiver.info, receiver("tokenless", namespace, "github"))
    tokenless = await cli("trigger", "receiver", "tokenless", f"--url={server_url(server)}")
    assert tokenless.code == 1
    assert tokenless.err.strip() == (
        f"✗ Receiver {namespace}/tokenless: unable to read token from secret "
        f"'{namespace}/webhook-token': not found"
    )
    not_json = await cli("trigger", "receiver", "x", "--url=http://h", "--payload={")
    assert not_json.code == 2
    assert len(record.requests) == 1
