"""The target's rules that need no cluster: which account, which Secret key, which kubeconfigs."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from controllers.conditions import FAILED
from controllers.kube import KubeClient, KubeConfigError, current_cluster_and_user
from controllers.reconcile import ReconcileError
from controllers.target import (
    TargetOptions,
    check_kubeconfig,
    kubeconfig_from_secret,
    self_contained_kubeconfig,
    service_account_for,
    service_account_user,
)
from kustomize.api_v1 import Kustomization

ADMIN = "admin"
USER = "user"
CA_DATA = base64.b64encode(b"not used by these tests").decode()


def kubeconfig(
    *, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One context, ``c``, of cluster ``k`` and user ``u``."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
        "clusters": [
            {"name": "k", "cluster": {"server": "https://127.0.0.1:6443", **(cluster or {})}}
        ],
        "users": [{"name": "u", "user": {"token": "t0ken", **(user or {})}}],
    }


def secret(**values: str) -> dict[str, Any]:
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    return {"metadata": {"name": "remote", "namespace": "apps"}, "data": data}


def kustomization(**spec: Any) -> Kustomization:
    return Kustomization.from_dict(
        {
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "metadata": {"name": "app", "namespace": "apps"},
            "spec": {
                "interval": "10m",
                "prune": True,
                "sourceRef": {"kind": "GitRepository", "name": "repo"},
                **spec,
            },
        }
    )


def test_a_service_account_user_is_named_as_kubernetes_names_it() -> None:
    assert service_account_user("apps", "deployer") == "system:serviceaccount:apps:deployer"


@pytest.mark.parametrize(
    ("spec", "default", "account"),
    [
        pytest.param({}, "", None, id="none"),
        pytest.param({"serviceAccountName": "deployer"}, "", "deployer", id="spec"),
        pytest.param({}, "tenant", "tenant", id="controller-default"),
        pytest.param({"serviceAccountName": "deployer"}, "tenant", "deployer", id="spec-wins"),
        pytest.param(
            {"kubeConfig": {"secretRef": {"name": "remote"}}},
            "tenant",
            "tenant",
            id="default-on-remote-too",
        ),
    ],
)
def test_the_account_is_the_specs_else_the_controller_default(
    spec: dict[str, Any], default: str, account: str | None
) -> None:
    assert service_account_for(kustomization(**spec), default) == account


@pytest.mark.parametrize(
    ("values", "key", "user"),
    [
        pytest.param({"value": USER}, None, USER, id="value"),
        pytest.param({"value.yaml": USER}, None, USER, id="value.yaml"),
        pytest.param({"value": ADMIN, "value.yaml": USER}, None, ADMIN, id="value-first"),
        pytest.param({"value": ADMIN, "cluster": USER}, "cluster", USER, id="named-key"),
    ],
)
def test_the_kubeconfig_key_is_the_named_one_else_value_else_value_yaml(
    values: dict[str, str], key: str | None, user: str
) -> None:
    contents = {k: yaml.safe_dump(kubeconfig(user={"token": v})) for k, v in values.items()}

    config = kubeconfig_from_secret(secret(**contents), key)

    assert current_cluster_and_user(config)[1]["token"] == user


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        pytest.param(
            {"value": "x"},
            "cluster",
            "KubeConfig secret 'apps/remote' does not contain a 'cluster' key with a kubeconfig",
            id="named-key-missing",
        ),
        pytest.param(
            {"kubeconfig": "x"},
            None,
            "KubeConfig secret 'apps/remote' does not contain a 'value' key with a kubeconfig",
            id="no-default-key",
        ),
        pytest.param(
            {"value": "token: s3cr3t\n  bad: [indent"},
            None,
            "KubeConfig secret 'apps/remote' key 'value' does not hold a YAML kubeconfig",
            id="not-yaml",
        ),
    ],
)
def test_a_missing_or_broken_kubeconfig_is_a_retried_error(
    values: dict[str, str], key: str | None, message: str
) -> None:
    with pytest.raises(ReconcileError) as caught:
        kubeconfig_from_secret(secret(**values), key)

    assert type(caught.value) is ReconcileError
    assert (caught.value.reason, caught.value.message) == (FAILED, message)
    assert "s3cr3t" not in caught.value.message


EXEC = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "aws"}}
INSECURE = {"insecure-skip-tls-verify": True}


@pytest.mark.parametrize(
    ("config", "options", "flag"),
    [
        pytest.param(
            kubeconfig(user=EXEC), TargetOptions(), "--insecure-kubeconfig-exec", id="exec"
        ),
        pytest.param(
            kubeconfig(cluster=INSECURE), TargetOptions(), "--insecure-kubeconfig-tls", id="tls"
        ),
        pytest.param(
            kubeconfig(user=EXEC, cluster=INSECURE),
            TargetOptions(insecure_kubeconfig_exec=True),
            "--insecure-kubeconfig-tls",
            id="tls-with-exec-allowed",
        ),
    ],
)
def test_exec_and_insecure_tls_are_refused_naming_the_flag(
    config: dict[str, Any], options: TargetOptions, flag: str
) -> None:
    with pytest.raises(KubeConfigError, match=flag):
        check_kubeconfig(config, options)


@pytest.mark.parametrize(
    ("config", "options"),
    [
        pytest.param(kubeconfig(), TargetOptions(), id="self-contained"),
        pytest.param(
            kubeconfig(cluster={"insecure-skip-tls-verify": False}),
            TargetOptions(),
            id="tls-verified-explicitly",
        ),
        pytest.param(
            kubeconfig(user=EXEC, cluster=INSECURE),
            TargetOptions(insecure_kubeconfig_exec=True, insecure_kubeconfig_tls=True),
            id="both-allowed",
        ),
        pytest.param(
            {
                **kubeconfig(),
                "users": [
                    {"name": "u", "user": {"token": "t"}},
                    {"name": "other", "user": EXEC},
                ],
            },
            TargetOptions(),
            id="exec-outside-the-current-context",
        ),
    ],
)
def test_what_the_flags_allow_passes(config: dict[str, Any], options: TargetOptions) -> None:
    check_kubeconfig(config, options)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param([], "kubeconfig is not a mapping", id="not-a-mapping"),
        pytest.param(
            {**kubeconfig(), "current-context": ""}, "has no current-context", id="no-context"
        ),
        pytest.param(
            {**kubeconfig(), "current-context": "elsewhere"},
            'has no context named "elsewhere"',
            id="unknown-context",
        ),
        pytest.param({**kubeconfig(), "clusters": []}, 'has no cluster named "k"', id="no-cluster"),
        pytest.param({**kubeconfig(), "users": []}, 'has no user named "u"', id="no-user"),
    ],
)
def test_a_malformed_kubeconfig_says_what_is_missing(config: Any, message: str) -> None:
    with pytest.raises(KubeConfigError, match=message):
        current_cluster_and_user(config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param(
            kubeconfig(cluster={"certificate-authority": "/etc/ssl/ca.pem"}),
            r"local files \(certificate-authority\)",
            id="ca-file",
        ),
        pytest.param(
            kubeconfig(user={"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}),
            r"local files \(tokenFile\)",
            id="token-file",
        ),
        pytest.param(
            kubeconfig(user={"client-certificate": "c.pem", "client-key": "k.pem"}),
            r"local files \(client-certificate, client-key\)",
            id="client-files",
        ),
        pytest.param(
            kubeconfig(user={"auth-provider": {"name": "oidc"}}),
            "auth-provider plugins are not supported",
            id="auth-provider",
        ),
        pytest.param(kubeconfig(user={"as": "admin"}), r"impersonation \(as\)", id="as"),
        pytest.param(kubeconfig(cluster={"server": ""}), "cluster has no server", id="no-server"),
        pytest.param(
            kubeconfig(cluster={"certificate-authority-data": "%%%"}),
            "certificate-authority-data is not valid base64",
            id="bad-base64",
        ),
        pytest.param(
            kubeconfig(user={"client-certificate-data": CA_DATA}),
            "client certificate without its key",
            id="certificate-without-key",
        ),
    ],
)
async def test_a_kubeconfig_that_is_not_self_contained_is_refused(
    config: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubeConfigError, match=message):
        await KubeClient.from_kubeconfig(config)


def test_a_self_contained_kubeconfig_keeps_only_what_weirs_client_reads() -> None:
    config = kubeconfig(
        cluster={"certificate-authority-data": CA_DATA, "extensions": [{"name": "x"}]},
        user={"exec": {"command": "cred"}, "extensions": [{"name": "x"}]},
    )
    config["contexts"][0]["context"]["namespace"] = "apps"
    config["contexts"].append({"name": "other", "context": {"cluster": "k", "user": "u"}})

    contained = self_contained_kubeconfig(config)

    assert current_cluster_and_user(contained) == (
        {"server": "https://127.0.0.1:6443", "certificate-authority-data": CA_DATA},
        {"token": "t0ken", "exec": {"command": "cred"}},
    )
    assert [context["name"] for context in contained["contexts"]] == ["target"]
