"""HelmRelease remediation end to end, as Flux's helm-controller does it (issue 12,
acceptance 2): failed upgrades rolled back or uninstalled, failed installs uninstalled and
retried, RetriesExceeded once the retries are spent, and RetryOnFailure retrying without
remediation. The rollback scenario fails for real: a post-upgrade hook Job whose pod kwok fails
(``weir.test/outcome: failed`` on its template), which the Job controller then fails. The others
fail with values the API server rejects; Helm stores either as a failed release. The Go-built
``helm history`` checks what weir's Helm did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controllers.envtest import TEST_OUTCOME_ANNOTATION, ControlPlane
from controllers.kinds import EVENT
from controllers.kube import KubeClient
from controllers.reconcile import REQUESTED_AT
from tests.integration.processes import Controllers
from tests.integration.test_envtest import JOB
from tests.integration.test_helmchart import refetch_index
from tests.integration.test_helmrelease import (
    HR,
    controllers,
    helm_cli,
    helmrelease,
    released,
    stalled,
)
from tests.integration.test_helmrepository import (
    HELMREPO,
    ChartRepository,
    charts,
    condition,
    helmrepository,
    plain,
    reasons_once,
)

pytestmark = pytest.mark.integration

# The fixtures this module shares with the HelmRelease and HelmRepository tests.
__all__ = ["charts", "controllers", "plain"]

GOOD = {"replicaCount": 1}
REJECTED = {"replicaCount": "many"}  # the API server refuses a string for replicas


def reason_of(obj: dict[str, Any], type_: str) -> tuple[str, str, str]:
    found = condition(obj, type_)
    assert found is not None, f"no {type_} condition"
    return found["status"], found["reason"], found["message"]


def history(control_plane: ControlPlane, home: Path, namespace: str) -> list[tuple[Any, ...]]:
    """``helm history`` of the release ``app``: revision, status, description."""
    found = helm_cli(control_plane, home, "history", "app", f"--namespace={namespace}")
    return [(h["revision"], h["status"], h["description"]) for h in found]


async def installed(
    kube: KubeClient, namespace: str, controllers: Controllers, **spec: Any
) -> None:
    await kube.create(HR, helmrelease("app", namespace, values=GOOD, **spec))
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm install succeeded for release {namespace}/app.v1 with chart podinfo@1.0.0"),
        "installed",
        timeout=150,
    )


def add_failing_hook(charts: ChartRepository, version: str) -> Path:
    """A ``post-upgrade`` hook Job (backoffLimit 0) whose pod kwok makes fail, in the chart
    at ``version``: Helm's hook wait sees the Job fail. The template's path is returned."""
    hook = charts.work / "podinfo" / "templates" / "migrate.yaml"
    hook.write_text(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n"
        '  name: "{{ include "podinfo.fullname" . }}-migrate"\n'
        "  annotations:\n"
        '    "helm.sh/hook": post-upgrade\n'
        "spec:\n  backoffLimit: 0\n  template:\n    metadata:\n      annotations:\n"
        f'        "{TEST_OUTCOME_ANNOTATION}": failed\n'
        "    spec:\n      restartPolicy: Never\n"
        "      containers:\n        - name: migrate\n          image: example.invalid/migrate:1\n"
    )
    charts.add("podinfo", version)
    return hook


async def test_an_upgrade_whose_hook_fails_is_rolled_back_until_the_retries_are_spent(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """retries 1, strategy rollback (remediateLastFailure then defaults to true): a chart
    whose post-upgrade hook Job fails is upgraded to, rolled back, upgraded to, rolled back,
    then RetriesExceeded and nothing more; a new chart version without the hook upgrades."""
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    # Helm's hook wait returns as soon as the Job fails; the timeout only bounds a stuck run.
    await installed(
        kube,
        namespace,
        controllers,
        timeout="1m",
        upgrade={"remediation": {"retries": 1, "strategy": "rollback"}},
    )
    hook = add_failing_hook(charts, "1.1.0")
    await refetch_index(kube, namespace, "1.1.0")
    obj = await controllers.wait_for(kube, HR, namespace, "app", stalled, "stalled", 180)

    assert reason_of(obj, "Stalled")[:2] == ("True", "RetriesExceeded")
    assert reason_of(obj, "Ready") == (
        "False",
        "RetriesExceeded",
        "Failed to upgrade after 2 attempt(s)",
    )
    assert reason_of(obj, "Remediated") == (
        "True",
        "RollbackSucceeded",
        f"Helm rollback to previous release {namespace}/app.v3 with chart podinfo@1.0.0 succeeded",
    )
    # Helm's words for the failure: its hook wait saw the Job fail (kstatus Failed).
    hook_failed = (
        f"post-upgrade hooks failed: resource Job/{namespace}/app-podinfo-migrate not ready. "
        "status: Failed, message: Job Failed. failed: 1/1"
    )
    upgrade_failed = (
        f"Helm upgrade failed for release {namespace}/app with chart podinfo@1.1.0: {hook_failed}"
    )
    assert reason_of(obj, "Released") == ("False", "UpgradeFailed", upgrade_failed)
    assert (obj["status"]["upgradeFailures"], obj["status"]["failures"]) == (2, 2)
    assert obj["status"]["lastAttemptedReleaseAction"] == "upgrade"
    assert obj["status"]["lastAttemptedRevision"] == "1.1.0"
    assert [
        (s["version"], s["status"], s["action"], s["chartVersion"])
        for s in obj["status"]["history"]
    ] == [
        (5, "deployed", "rollback", "1.0.0"),
        (4, "failed", "upgrade", "1.1.0"),
        (3, "superseded", "rollback", "1.0.0"),
    ]
    # The failed hook Job is still there (Helm's default delete policy, before-hook-creation,
    # removes it only when the hook runs again), failed by the Job controller.
    job = await kube.get(JOB, namespace, "app-podinfo-migrate")
    failed = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert [(c["status"], c["reason"]) for c in failed] == [("True", "BackoffLimitExceeded")]

    home = tmp_path / "helm-cli"
    found = helm_cli(control_plane, home, "history", "app", f"--namespace={namespace}")
    assert [(h["revision"], h["status"], h["chart"]) for h in found] == [
        (1, "superseded", "podinfo-1.0.0"),
        (2, "failed", "podinfo-1.1.0"),
        (3, "superseded", "podinfo-1.0.0"),
        (4, "failed", "podinfo-1.1.0"),
        (5, "deployed", "podinfo-1.0.0"),
    ]
    descriptions = [h["description"] for h in found]
    assert descriptions[0] == "Install complete"
    assert (descriptions[2], descriptions[4]) == ("Rollback to 1", "Rollback to 3")
    assert descriptions[1] == descriptions[3] == f'Upgrade "app" failed: {hook_failed}'

    reasons = await reasons_once(kube, namespace, "app", "RollbackSucceeded", 2)
    assert reasons.count("UpgradeFailed") == 2
    await reasons_once(kube, namespace, "app", "RetriesExceeded", 1)
    events = (await kube.list(EVENT, namespace))["items"]
    told = {(e["type"], e["reason"], e["message"]) for e in events}
    # Both UpgradeFailed events say the same: the hook Job failed.
    assert {(t, m) for t, r, m in told if r == "UpgradeFailed"} == {("Warning", upgrade_failed)}
    for target in (1, 3):
        assert (
            "Normal",
            "RollbackSucceeded",
            f"Helm rollback to previous release {namespace}/app.v{target} with chart "
            "podinfo@1.0.0 succeeded",
        ) in told
    assert ("Warning", "RetriesExceeded", "Failed to upgrade after 2 attempt(s)") in told

    # Stalled: reconciled again on request, no further attempt.
    await kube.patch(HR, namespace, "app", {"metadata": {"annotations": {REQUESTED_AT: "now"}}})
    await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        lambda o: (o.get("status") or {}).get("lastHandledReconcileAt") == "now" and stalled(o),
        "reconciled again",
    )
    assert len(history(control_plane, home, namespace)) == 5

    # A new chart version without the failing hook resets the counters and upgrades; the
    # Remediated condition goes.
    hook.unlink()
    charts.add("podinfo", "1.1.1")
    await refetch_index(kube, namespace, "1.1.1")
    fixed = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        released(f"Helm upgrade succeeded for release {namespace}/app.v6 with chart podinfo@1.1.1"),
        "upgraded",
        timeout=150,
    )
    assert condition(fixed, "Remediated") is None
    assert "upgradeFailures" not in fixed["status"]


async def test_strategy_uninstall_uninstalls_then_installs_again(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """A failed upgrade remediated by an uninstall: the next attempt is an install (which
    has no retries here, so its failure stalls)."""
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await installed(
        kube,
        namespace,
        controllers,
        upgrade={"remediation": {"retries": 1, "strategy": "uninstall"}},
    )
    await kube.patch(HR, namespace, "app", {"spec": {"values": REJECTED}})
    obj = await controllers.wait_for(kube, HR, namespace, "app", stalled, "stalled", 150)

    assert reason_of(obj, "Ready") == (
        "False",
        "RetriesExceeded",
        "Failed to install after 1 attempt(s)",
    )
    status = obj["status"]
    assert (status["upgradeFailures"], status["installFailures"], status["failures"]) == (1, 1, 2)
    assert status["lastAttemptedReleaseAction"] == "install"
    assert reason_of(obj, "Released")[:2] == ("False", "InstallFailed")
    # The install cleared the remediation's condition, as Flux's does.
    assert condition(obj, "Remediated") is None
    # The uninstall took the history with it: what is left is the failed install.
    found = history(control_plane, tmp_path / "helm-cli", namespace)
    assert [(h[0], h[1]) for h in found] == [(1, "failed")]
    reasons = await reasons_once(kube, namespace, "app", "RetriesExceeded", 1)
    assert {"UpgradeFailed", "UninstallSucceeded", "InstallFailed"} <= set(reasons)


async def test_a_failed_install_is_uninstalled_and_retried(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """install.remediation.retries 1: install, uninstall, install, then RetriesExceeded
    (remediateLastFailure is off for installs by default: the last failure stays)."""
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await kube.create(
        HR,
        helmrelease("app", namespace, values=REJECTED, install={"remediation": {"retries": 1}}),
    )
    obj = await controllers.wait_for(kube, HR, namespace, "app", stalled, "stalled", 150)
    assert reason_of(obj, "Ready") == (
        "False",
        "RetriesExceeded",
        "Failed to install after 2 attempt(s)",
    )
    assert (obj["status"]["installFailures"], obj["status"]["failures"]) == (2, 2)
    found = history(control_plane, tmp_path / "helm-cli", namespace)
    assert [(h[0], h[1]) for h in found] == [(1, "failed")]
    reasons = await reasons_once(kube, namespace, "app", "InstallFailed", 2)
    assert reasons.count("UninstallSucceeded") == 1


async def test_retry_on_failure_retries_after_the_interval_without_remediation(
    kube: KubeClient,
    namespace: str,
    controllers: Controllers,
    charts: ChartRepository,
    plain: str,
    control_plane: ControlPlane,
    tmp_path: Path,
) -> None:
    """upgrade.strategy RetryOnFailure: the failed release is upgraded again every
    retryInterval, never rolled back (the remediation settings beside it are not used), never
    stalled; a success clears the counters."""
    await kube.create(HELMREPO, helmrepository("charts", namespace, plain))
    await installed(
        kube,
        namespace,
        controllers,
        upgrade={
            "strategy": {"name": "RetryOnFailure", "retryInterval": "2s"},
            "remediation": {"retries": 5},
        },
    )
    await kube.patch(HR, namespace, "app", {"spec": {"values": REJECTED}})
    obj = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        lambda o: ((o.get("status") or {}).get("upgradeFailures") or 0) >= 3,
        "three failed upgrades",
        timeout=150,
    )
    assert not stalled(obj)
    assert condition(obj, "Remediated") is None
    assert reason_of(obj, "Reconciling")[:2] == ("True", "ProgressingWithRetry")
    assert reason_of(obj, "Ready")[:2] == ("False", "UpgradeFailed")
    found = history(control_plane, tmp_path / "helm-cli", namespace)
    # A failed upgrade leaves the revision before it deployed (Helm supersedes it on success).
    assert [(h[0], h[1]) for h in found][:4] == [
        (1, "deployed"),
        (2, "failed"),
        (3, "failed"),
        (4, "failed"),
    ]
    assert not [h for h in found if "Rollback" in h[2]]

    await kube.patch(HR, namespace, "app", {"spec": {"values": {"replicaCount": 2}}})
    fixed = await controllers.wait_for(
        kube,
        HR,
        namespace,
        "app",
        lambda o: (
            (condition(o, "Ready") or {}).get("status") == "True"
            and (o.get("status") or {}).get("observedGeneration") == o["metadata"]["generation"]
        ),
        "upgraded",
        timeout=150,
    )
    assert "upgradeFailures" not in fixed["status"]
    assert "failures" not in fixed["status"]
