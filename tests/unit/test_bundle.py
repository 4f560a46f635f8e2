"""The install bundle's shape: what every object, container and ServiceAccount must have, for
every choice of components and options, and the controllers' own parsers taking its flags."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import pytest
import yaml

import helm.__main__
import image_automation.__main__
import kustomize.__main__
import notification.__main__
import source.__main__
from hack.generate_crds import CRDS_DIR
from helm.launch import HELM_HOME_VARIABLES
from weir.bundle import (
    COMPONENTS,
    DEFAULT_COMPONENTS,
    EXTRA_COMPONENTS,
    INSTANCE_LABEL,
    PART_OF,
    PART_OF_LABEL,
    BundleOptions,
    component_named,
    crds,
    render,
)

SOURCE = ("source-controller",)
BOTH = ("source-controller", "kustomize-controller")
NOTIFICATION = ("notification-controller",)
HELM = ("helm-controller",)
IMAGE = ("image-automation-controller",)
EVERY = tuple(COMPONENTS)
LOCKED = BundleOptions(
    no_cross_namespace_refs=True, no_remote_bases=True, default_service_account="default"
)

OPTIONS = [
    pytest.param(BundleOptions(), id="defaults"),
    pytest.param(BundleOptions(components=SOURCE), id="source-only"),
    pytest.param(BundleOptions(components=("kustomize-controller",)), id="kustomize-only"),
    pytest.param(BundleOptions(components=BOTH), id="without-notification"),
    pytest.param(BundleOptions(components=HELM), id="helm-only"),
    pytest.param(BundleOptions(components=(*SOURCE, *HELM)), id="source-and-helm"),
    pytest.param(BundleOptions(components=NOTIFICATION), id="notification-only"),
    pytest.param(BundleOptions(namespace="weir-system", concurrent=8), id="other-namespace"),
    pytest.param(BundleOptions(watch_all_namespaces=False, network_policy=False), id="scoped"),
    pytest.param(LOCKED, id="lockdown"),
    pytest.param(BundleOptions(components=IMAGE), id="image-only"),
    pytest.param(BundleOptions(components=EVERY), id="every-component"),
    pytest.param(
        BundleOptions(
            components=EVERY,
            no_cross_namespace_refs=True,
            no_remote_bases=True,
            default_service_account="default",
        ),
        id="every-component-lockdown",
    ),
]


PARSERS: dict[str, Callable[[], argparse.ArgumentParser]] = {
    "source-controller": source.__main__.parser,
    "kustomize-controller": kustomize.__main__.parser,
    # helm.__main__.parser: the lockdown flags the bundle gives it (see the report).
    "helm-controller": lambda: helm.__main__.parser(),
    "notification-controller": notification.__main__.parser,
    "image-automation-controller": image_automation.__main__.parser,
}


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = (obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name)
    return found


def container(objects: list[dict[str, Any]], component: str) -> dict[str, Any]:
    deployment = named(objects, "Deployment", component)
    manager: dict[str, Any]
    (manager,) = deployment["spec"]["template"]["spec"]["containers"]
    return manager


def parsed_args(objects: list[dict[str, Any]], component: str, ns: str) -> argparse.Namespace:
    """The container's args as the controller's own parser reads them, once the kubelet has
    expanded $(RUNTIME_NAMESPACE)."""
    args = [
        arg.replace("$(RUNTIME_NAMESPACE)", ns) for arg in container(objects, component)["args"]
    ]
    return PARSERS[component]().parse_args(args)


@pytest.mark.parametrize("options", OPTIONS)
def test_every_container_is_locked_down(options: BundleOptions) -> None:
    objects = render(options)

    for name in options.components:
        pod = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert container(objects, name)["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        mounts = {m["mountPath"]: m["name"] for m in container(objects, name)["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert all("emptyDir" in volumes[volume] for volume in mounts.values())
        assert "/tmp" in mounts
        assert ("/data" in mounts) == (name == "source-controller")
    deployments = {obj["metadata"]["name"] for obj in of_kind(objects, "Deployment")}
    assert deployments == set(options.components)


@pytest.mark.parametrize("options", OPTIONS)
def test_every_service_account_is_bound_and_every_subject_exists(options: BundleOptions) -> None:
    objects = render(options)
    accounts = {obj["metadata"]["name"] for obj in of_kind(objects, "ServiceAccount")}
    bindings = of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding")
    subjects = {
        subject["name"]
        for binding in bindings
        for subject in binding["subjects"]
        if subject["namespace"] == options.namespace
    }
    roles = {obj["metadata"]["name"] for obj in of_kind(objects, "ClusterRole")} | {"cluster-admin"}

    assert accounts == set(options.components)
    assert subjects == accounts
    for binding in of_kind(objects, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] in roles
    for name in options.components:
        pod = named(objects, "Deployment", name)["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == name


def cluster_roles_of(objects: list[dict[str, Any]], account: str) -> set[str]:
    return {
        binding["roleRef"]["name"]
        for binding in of_kind(objects, "ClusterRoleBinding")
        if any(subject["name"] == account for subject in binding["subjects"])
    }


@pytest.mark.parametrize("options", OPTIONS)
def test_only_the_kustomize_and_helm_controllers_are_cluster_admin(
    options: BundleOptions,
) -> None:
    objects = render(options)

    for name in options.components:
        roles = cluster_roles_of(objects, name)
        admin = "cluster-admin" in roles
        assert admin == (name in ("kustomize-controller", "helm-controller")), name
        # As Flux binds them: cluster-admin alone, no role of their own beside it.
        assert roles == ({"cluster-admin"} if admin else {f"{name}-{options.namespace}"}), name


def test_the_source_controller_gets_its_own_kinds_and_reads_secrets_one_by_one() -> None:
    objects = render(BundleOptions(components=SOURCE))
    (role_name,) = cluster_roles_of(objects, "source-controller")
    role = named(objects, "ClusterRole", role_name)
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", ["<none>"])
        for resource in rule.get("resources", rule.get("nonResourceURLs", []))
        for verb in rule["verbs"]
    }

    assert not [g for g in granted if "*" in g]
    assert {group for group, _, _ in granted} == {"source.toolkit.fluxcd.io", "", "<none>"}
    assert ("", "secrets", "get") in granted
    assert not [g for g in granted if g[1] == "secrets" and g[2] != "get"]
    assert ("source.toolkit.fluxcd.io", "gitrepositories/status", "patch") in granted
    assert ("", "events", "create") in granted
    assert not [g for g in granted if g[2] in ("delete", "create") and g[1] != "events"]
    leader = named(objects, "Role", "leader-election")
    assert leader["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "verbs": ["get", "create", "update"],
        }
    ]


@pytest.mark.parametrize("options", OPTIONS)
def test_every_object_is_labelled_as_the_install_and_in_its_namespace(
    options: BundleOptions,
) -> None:
    for obj in render(options):
        labels = obj["metadata"]["labels"]
        assert labels[PART_OF_LABEL] == PART_OF
        assert labels[INSTANCE_LABEL] == options.namespace
        namespace = obj["metadata"].get("namespace")
        cluster_wide = obj["kind"] in (
            "Namespace",
            "CustomResourceDefinition",
            "ClusterRole",
            "ClusterRoleBinding",
        )
        assert namespace == (None if cluster_wide else options.namespace), obj["kind"]
        if obj["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["name"].endswith(f"-{options.namespace}")


@pytest.mark.parametrize("options", OPTIONS)
def test_the_controllers_parse_their_args(options: BundleOptions) -> None:
    objects = render(options)

    for name in options.components:
        args = parsed_args(objects, name, options.namespace)
        assert args.watch_all_namespaces is options.watch_all_namespaces
        assert args.enable_leader_election is True
        assert args.log_encoding == "json"
        if options.concurrent is not None:
            assert args.concurrent == options.concurrent
        manager = container(objects, name)
        ports = {port["name"]: port["containerPort"] for port in manager["ports"]}
        assert args.metrics_addr == f":{ports['http-prom']}"
        assert args.health_addr == f":{ports['healthz']}"
        assert manager["command"] == ["python", "-m", COMPONENTS[name].package]
        fields = {
            item["name"]: item["valueFrom"]["fieldRef"]["fieldPath"]
            for item in manager["env"]
            if "valueFrom" in item
        }
        assert fields == {"RUNTIME_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
        values = {item["name"] for item in manager["env"] if "value" in item}
        assert values == (set(HELM_HOME_VARIABLES) if name == "helm-controller" else set())


def test_helms_homes_are_in_the_pods_tmp_volume() -> None:
    """Helm reads them from the environment at exec (helm.launch), and writes there: the root
    filesystem is read-only, /tmp an emptyDir."""
    objects = render(BundleOptions(components=HELM))
    manager = container(objects, "helm-controller")
    env = {item["name"]: item["value"] for item in manager["env"] if "value" in item}
    pod = named(objects, "Deployment", "helm-controller")["spec"]["template"]["spec"]

    assert env == {
        "HELM_CACHE_HOME": "/tmp/helm/cache",
        "HELM_CONFIG_HOME": "/tmp/helm/config",
        "HELM_DATA_HOME": "/tmp/helm/data",
        "HELM_PLUGINS": "/tmp/helm/data/plugins",
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in manager["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]
    assert manager["securityContext"]["readOnlyRootFilesystem"] is True


def test_artifact_urls_name_the_artifact_service() -> None:
    objects = render(BundleOptions(namespace="weir-system"))
    service = named(objects, "Service", "source-controller")
    args = parsed_args(objects, "source-controller", "weir-system")
    ports = {
        p["name"]: p["containerPort"] for p in container(objects, "source-controller")["ports"]
    }

    assert args.storage_adv_addr == "source-controller.weir-system.svc.cluster.local."
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
    ]
    assert args.storage_addr == f":{ports['http']}"
    assert service["spec"]["selector"] == {"app": "source-controller"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(BundleOptions(), (False, False, ""), id="off"),
        pytest.param(LOCKED, (True, True, "default"), id="lockdown"),
    ],
)
def test_the_lockdown_flags_reach_the_kustomize_controller(
    options: BundleOptions, expected: tuple[bool, bool, str]
) -> None:
    objects = render(options)
    args = parsed_args(objects, "kustomize-controller", options.namespace)

    assert (args.no_cross_namespace_refs, args.no_remote_bases, args.default_service_account) == (
        expected
    )


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(BundleOptions(), (False, ""), id="off"),
        pytest.param(LOCKED, (True, "default"), id="lockdown"),
    ],
)
def test_the_lockdown_flags_but_no_remote_bases_reach_the_helm_controller(
    options: BundleOptions, expected: tuple[bool, str]
) -> None:
    objects = render(options)
    args = parsed_args(objects, "helm-controller", options.namespace)

    assert (args.no_cross_namespace_refs, args.default_service_account) == expected
    # Charts have no remote bases: Flux's helm-controller has no such flag.
    assert not [a for a in container(objects, "helm-controller")["args"] if "remote-bases" in a]


@pytest.mark.parametrize(
    ("components", "kinds"),
    [
        pytest.param(HELM, {"HelmRelease"}, id="helm"),
        pytest.param(
            SOURCE,
            {"GitRepository", "OCIRepository", "Bucket", "HelmRepository", "HelmChart"},
            id="source",
        ),
        pytest.param(("kustomize-controller",), {"Kustomization"}, id="kustomize"),
        pytest.param(
            BOTH,
            {
                "GitRepository",
                "OCIRepository",
                "Bucket",
                "HelmRepository",
                "HelmChart",
                "Kustomization",
            },
            id="both",
        ),
        pytest.param(NOTIFICATION, {"Receiver", "Alert", "Provider"}, id="notification"),
        pytest.param(
            IMAGE, {"ImageRepository", "ImagePolicy", "ImageUpdateAutomation"}, id="image"
        ),
    ],
)
def test_the_crds_are_those_of_the_chosen_components(
    components: tuple[str, ...], kinds: set[str]
) -> None:
    rendered = crds(BundleOptions(components=components))

    assert {crd["spec"]["names"]["kind"] for crd in rendered} == kinds


def test_the_crds_are_those_of_crds_dir_with_the_install_labels() -> None:
    on_disk = {
        crd["metadata"]["name"]: crd
        for crd in (yaml.safe_load(path.read_text()) for path in CRDS_DIR.glob("*.yaml"))
    }
    rendered = {crd["metadata"]["name"]: crd for crd in crds(BundleOptions(components=EVERY))}

    assert rendered.keys() == on_disk.keys()
    for name, crd in rendered.items():
        assert crd["metadata"].pop("labels")[PART_OF_LABEL] == PART_OF
        assert crd == on_disk[name], name


def test_objects_come_in_an_order_that_applies() -> None:
    kinds = [obj["kind"] for obj in render(BundleOptions())]

    assert kinds[0] == "Namespace"
    assert kinds.index("ServiceAccount") > max(
        i for i, kind in enumerate(kinds) if kind == "CustomResourceDefinition"
    )
    first_deployment = kinds.index("Deployment")
    assert all(kind == "Deployment" for kind in kinds[first_deployment:])
    assert "ResourceQuota" in kinds[:first_deployment]


@pytest.mark.parametrize(
    ("network_policy", "names"),
    [
        pytest.param(True, ["allow-egress", "allow-scraping", "allow-webhooks"], id="on"),
        pytest.param(False, [], id="off"),
    ],
)
def test_network_policies_as_flux_ships_them(network_policy: bool, names: list[str]) -> None:
    objects = render(BundleOptions(network_policy=network_policy))

    assert [obj["metadata"]["name"] for obj in of_kind(objects, "NetworkPolicy")] == names


def test_the_bundle_is_fresh_each_time_and_dumps_without_anchors() -> None:
    first = render(BundleOptions())
    first[0]["metadata"]["labels"]["changed"] = "yes"
    role = next(obj for obj in first if obj["kind"] == "ClusterRole")
    role["rules"][0]["verbs"].append("delete")

    assert render(BundleOptions()) != first
    assert "&id" not in yaml.safe_dump_all(render(BundleOptions()))


def test_an_unknown_component_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown component 'source-watcher'"):
        render(BundleOptions(components=("source-watcher",)))


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) for each permission of ``role``; ``<none>`` for URLs."""
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule.get("apiGroups", ["<none>"])
        for resource in rule.get("resources", rule.get("nonResourceURLs", []))
        for verb in rule["verbs"]
    }


def test_the_notification_controller_gets_its_kinds_secrets_one_by_one_and_the_flux_kinds() -> None:
    objects = render(BundleOptions(components=NOTIFICATION))
    (role_name,) = cluster_roles_of(objects, "notification-controller")
    permissions = granted(named(objects, "ClusterRole", role_name))
    notification = "notification.toolkit.fluxcd.io"
    flux_groups = {
        "source.toolkit.fluxcd.io",
        "kustomize.toolkit.fluxcd.io",
        "helm.toolkit.fluxcd.io",
        "image.toolkit.fluxcd.io",
        "source.extensions.fluxcd.io",
    }

    assert {(group, resource, verb) for group, resource, verb in permissions if group == ""} == {
        ("", "secrets", "get"),
        ("", "events", "create"),
    }
    own = {(resource, verb) for group, resource, verb in permissions if group == notification}
    for plural in ("receivers", "alerts", "providers"):
        assert {(plural, verb) for verb in ("get", "list", "watch", "patch")} <= own
    # Only Receivers have a status (Flux's v1beta3 Alerts and Providers have none).
    assert {resource for resource, _ in own if resource.endswith("/status")} == {"receivers/status"}
    assert not [p for p in own if p[1] in ("create", "delete", "update") and "/" not in p[0]]
    # Every Flux kind a Receiver may name: read, listed by labels, and annotated (patch).
    for group in flux_groups:
        assert {(group, "*", verb) for verb in ("get", "list", "watch", "patch")} <= permissions
    wildcards = {group for group, resource, _ in permissions if "*" in resource}
    assert wildcards == flux_groups
    assert not [p for p in permissions if p[2] in ("delete", "create") and p[1] != "events"]


def test_the_other_controllers_send_their_events_to_the_notification_service() -> None:
    objects = render(BundleOptions(namespace="weir-system", cluster_domain="cluster.example"))
    service = named(objects, "Service", "notification-controller")
    notifier = parsed_args(objects, "notification-controller", "weir-system")
    ports = {
        p["name"]: p["containerPort"]
        for p in container(objects, "notification-controller")["ports"]
    }

    for name in ("source-controller", "kustomize-controller", "helm-controller"):
        args = parsed_args(objects, name, "weir-system")
        assert (
            args.events_addr == "http://notification-controller.weir-system.svc.cluster.example./"
        )
    assert service["spec"]["selector"] == {"app": "notification-controller"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}
    ]
    assert notifier.events_listen_addr == f":{ports['http']}"


def test_webhooks_reach_the_receiver_through_its_service_and_network_policy() -> None:
    objects = render(BundleOptions())
    service = named(objects, "Service", "webhook-receiver")
    notifier = parsed_args(objects, "notification-controller", "flux-system")
    ports = {
        p["name"]: p["containerPort"]
        for p in container(objects, "notification-controller")["ports"]
    }
    policy = named(objects, "NetworkPolicy", "allow-webhooks")
    pod_labels = named(objects, "Deployment", "notification-controller")["spec"]["template"][
        "metadata"
    ]["labels"]

    assert service["spec"]["selector"] == {"app": "notification-controller"}
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http-webhook"}
    ]
    assert notifier.receiver_addr == f":{ports['http-webhook']}" == ":9292"
    assert policy["spec"] == {
        "policyTypes": ["Ingress"],
        "ingress": [
            {"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 9292}]}
        ],
        "podSelector": {"matchLabels": {"app": "notification-controller"}},
    }
    assert pod_labels["app"] == "notification-controller"


def test_without_the_notification_controller_no_events_address_service_or_policy() -> None:
    objects = render(BundleOptions(components=BOTH))

    for name in BOTH:
        assert not [a for a in container(objects, name)["args"] if a.startswith("--events-addr")]
        assert parsed_args(objects, name, "flux-system").events_addr == ""
    assert [obj["metadata"]["name"] for obj in of_kind(objects, "Service")] == ["source-controller"]
    assert [obj["metadata"]["name"] for obj in of_kind(objects, "NetworkPolicy")] == [
        "allow-egress",
        "allow-scraping",
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(BundleOptions(), False, id="off"),
        pytest.param(LOCKED, True, id="lockdown"),
    ],
)
def test_no_cross_namespace_refs_reaches_the_notification_controller(
    options: BundleOptions, expected: bool
) -> None:
    objects = render(options)
    args = container(objects, "notification-controller")["args"]

    assert (
        parsed_args(objects, "notification-controller", options.namespace).no_cross_namespace_refs
        is expected
    )
    # The other lockdown flags are the kustomize and helm controllers'.
    assert not [a for a in args if a.startswith(("--no-remote-bases", "--default-service-account"))]


def test_the_defaults_are_flux_installs_four_and_the_image_controller_is_an_extra() -> None:
    assert DEFAULT_COMPONENTS == (
        "source-controller",
        "kustomize-controller",
        "helm-controller",
        "notification-controller",
    )
    assert EXTRA_COMPONENTS == IMAGE
    kinds = {crd["spec"]["names"]["kind"] for crd in crds(BundleOptions())}
    assert not [kind for kind in kinds if kind.startswith("Image")]


@pytest.mark.parametrize(
    ("name", "component"),
    [
        pytest.param("image-reflector-controller", "image-automation-controller", id="reflector"),
        pytest.param("image-automation-controller", "image-automation-controller", id="automation"),
        pytest.param("source-controller", "source-controller", id="own-name"),
    ],
)
def test_flux_names_choose_weirs_image_controller(name: str, component: str) -> None:
    found = component_named(name)

    assert found is not None
    assert found.name == component
    assert component_named("source-watcher") is None


def test_the_image_controller_gets_its_kinds_and_what_it_reads_writes_only_its_configmaps() -> None:
    objects = render(BundleOptions(components=(*SOURCE, *IMAGE)))
    (role_name,) = cluster_roles_of(objects, "image-automation-controller")
    permissions = granted(named(objects, "ClusterRole", role_name))
    image = "image.toolkit.fluxcd.io"

    assert not [p for p in permissions if "*" in p[1]]
    assert {group for group, _, _ in permissions} == {
        image,
        "",
        "source.toolkit.fluxcd.io",
        "<none>",
    }
    own = {(resource, verb) for group, resource, verb in permissions if group == image}
    for plural in ("imagerepositories", "imagepolicies", "imageupdateautomations"):
        assert {(plural, verb) for verb in ("get", "list", "watch", "patch")} <= own
        assert (f"{plural}/status", "patch") in own
    core = {(resource, verb) for group, resource, verb in permissions if group == ""}
    assert core == {
        ("secrets", "get"),
        ("serviceaccounts", "get"),
        ("namespaces", "get"),
        ("configmaps", "get"),
        ("configmaps", "create"),
        ("configmaps", "update"),
        ("configmaps", "delete"),
        ("events", "create"),
    }
    # It reads GitRepositories; their status is the source controller's.
    source = {(r, v) for g, r, v in permissions if g == "source.toolkit.fluxcd.io"}
    assert source == {("gitrepositories", verb) for verb in ("get", "list", "watch")}
    assert "image-automation-controller" not in {
        s["name"]
        for s in named(objects, "ClusterRoleBinding", "source-controller-flux-system")["subjects"]
    }


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param(BundleOptions(components=IMAGE), False, id="off"),
        pytest.param(
            BundleOptions(
                components=IMAGE,
                no_cross_namespace_refs=True,
                no_remote_bases=True,
                default_service_account="default",
            ),
            True,
            id="lockdown",
        ),
    ],
)
def test_no_cross_namespace_refs_reaches_the_image_controller(
    options: BundleOptions, expected: bool
) -> None:
    objects = render(options)
    args = container(objects, "image-automation-controller")["args"]

    parsed = parsed_args(objects, "image-automation-controller", options.namespace)

    assert parsed.no_cross_namespace_refs is expected
    assert not [a for a in args if a.startswith(("--no-remote-bases", "--default-service-account"))]
    assert not [a for a in args if a.startswith("--events-addr")]


def test_with_the_notification_controller_the_image_controller_sends_it_events() -> None:
    objects = render(BundleOptions(components=EVERY))
    args = parsed_args(objects, "image-automation-controller", "flux-system")

    assert args.events_addr == "http://notification-controller.flux-system.svc.cluster.local./"
