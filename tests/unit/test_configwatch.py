"""Which objects a ConfigMap or Secret change requeues (Flux's config watchers)."""

from __future__ import annotations

from typing import Any

from controllers.configwatch import config_watches
from controllers.kinds import CONFIG_MAP, SECRET
from helm.helmrelease import configs_read as helm_configs
from kustomize.kustomization import configs_read as kustomize_configs


def obj(namespace: str, name: str, version: str = "1", **spec: Any) -> dict[str, Any]:
    meta = {"namespace": namespace, "name": name, "resourceVersion": version}
    return {"metadata": meta, "spec": spec}


RELEASES = [
    obj("a", "web", valuesFrom=[{"kind": "ConfigMap", "name": "settings"}]),
    obj("a", "db", valuesFrom=[{"kind": "Secret", "name": "settings"}]),
    obj("b", "web", valuesFrom=[{"kind": "ConfigMap", "name": "settings"}]),
    obj("a", "plain"),
]


def test_a_change_requeues_the_readers_of_that_kind_name_and_namespace() -> None:
    configmaps, secrets = config_watches(helm_configs)
    assert (configmaps.info, secrets.info) == (CONFIG_MAP, SECRET)
    assert configmaps.configs
    assert secrets.configs

    changed = configmaps.requeue(obj("a", "settings", "1"), obj("a", "settings", "2"), RELEASES)
    assert changed == ["a/web"]
    assert secrets.requeue(None, obj("a", "settings"), RELEASES) == ["a/db"]
    # A deletion too, as Flux: an optional reference's values go away.
    assert configmaps.requeue(obj("b", "settings"), None, RELEASES) == ["b/web"]


def test_a_resync_with_the_same_version_requeues_nothing() -> None:
    configmaps, _ = config_watches(helm_configs)
    same = obj("a", "settings", "7")
    assert configmaps.requeue(same, same, RELEASES) == []


def test_a_kustomization_reads_substitutions_decryption_and_kubeconfig() -> None:
    kustomization = obj(
        "a",
        "apps",
        postBuild={"substituteFrom": [{"kind": "ConfigMap", "name": "vars"}]},
        decryption={"provider": "sops", "secretRef": {"name": "sops-keys"}},
        kubeConfig={"secretRef": {"name": "remote"}},
    )
    assert kustomize_configs(kustomization) == [
        ("ConfigMap", "vars"),
        ("Secret", "sops-keys"),
        ("Secret", "remote"),
    ]
    assert kustomize_configs(obj("a", "bare")) == []
