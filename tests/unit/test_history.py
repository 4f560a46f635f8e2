"""status.history: one snapshot per digest and outcome, newest first, five at most."""

from __future__ import annotations

from kustomize.history import MAX_SNAPSHOTS, digest, upsert


def test_same_digest_and_status_counts_up_and_keeps_first_time() -> None:
    first = upsert(None, "sha256:a", "ReconciliationSucceeded", 1.5, {"revision": "r1"})
    second = upsert(first, "sha256:a", "ReconciliationSucceeded", 0.25, {"revision": "r1"})
    assert len(second) == 1
    assert second[0].total_reconciliations == 2
    assert second[0].first_reconciled == first[0].first_reconciled
    assert second[0].last_reconciled_duration == "0.250s"


def test_new_outcome_leads_and_old_one_moves_back_up_when_seen_again() -> None:
    history = upsert(None, "sha256:a", "ReconciliationSucceeded", 1, {"revision": "r1"})
    history = upsert(history, "sha256:b", "HealthCheckFailed", 1, {"revision": "r2"})
    assert [s.digest for s in history] == ["sha256:b", "sha256:a"]
    history = upsert(history, "sha256:a", "ReconciliationSucceeded", 1, {"revision": "r1"})
    assert [(s.digest, s.total_reconciliations) for s in history] == [
        ("sha256:a", 2),
        ("sha256:b", 1),
    ]
    assert history[0].metadata == {"revision": "r1"}


def test_keeps_at_most_five() -> None:
    history = None
    for n in range(8):
        history = upsert(history, f"sha256:{n}", "ReconciliationSucceeded", 1, {})
    assert history is not None
    assert [s.digest for s in history] == [f"sha256:{n}" for n in range(7, 2, -1)]
    assert len(history) == MAX_SNAPSHOTS


def test_digest_depends_on_content_not_key_order() -> None:
    one = [{"kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}}]
    same = [{"metadata": {"namespace": "n", "name": "a"}, "kind": "ConfigMap"}]
    other = [{"kind": "ConfigMap", "metadata": {"name": "b", "namespace": "n"}}]
    assert digest(one) == digest(same) != digest(other)
    assert digest(one).startswith("sha256:")
