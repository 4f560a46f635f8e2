"""weir's install bundle: every object ``weir install`` applies, as manifest dicts.

``render(options)`` is a pure function of ``BundleOptions``. It lays the objects out as Flux's
own install does (fluxcd/flux2 ``manifests/``, each controller's ``config/``): the namespace,
the CRDs of the chosen controllers, a ServiceAccount, RBAC and a Deployment per controller (and
the source controller's artifact Service), a leader-election Role, the aggregated edit/view
ClusterRoles, the ``critical-pods`` ResourceQuota and the NetworkPolicies; in an order that
applies.

Every object carries ``PART_OF_LABEL: weir`` and ``INSTANCE_LABEL: <namespace>``, so that
``weir uninstall`` and ``weir check`` find what an install made. Cluster-scoped RBAC names end
in ``-<namespace>``, as ``flux install`` names them, so that installs in two namespaces do not
overwrite each other's bindings.

A controller is added with one more ``Component`` in ``COMPONENTS``. The notification
controller brings what Flux gives it: its two Services (``notification-controller`` for events,
``webhook-receiver`` for webhooks), ``--events-addr`` naming the first on every other controller
of the install, and the ``allow-webhooks`` NetworkPolicy for the receiver port. The helm
controller is ``cluster_admin`` and takes the lockdown flags but ``--no-remote-bases``, and
keeps Helm's homes in its ``/tmp``. The image automation controller (Flux's
image-reflector-controller and image-automation-controller in one process) is an ``extra``: as
``flux install`` leaves Flux's image controllers out unless ``--components-extra`` names them,
the default components are Flux's four, and ``flux_names`` lets Flux's two names choose it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

from controllers.api import CustomResource
from controllers.crd import render_crd
from helm.api_v2 import HelmRelease
from image_automation.api_v1 import ImagePolicy, ImageRepository, ImageUpdateAutomation
from kustomize.api_v1 import Kustomization
from notification.api_v1 import Receiver
from notification.api_v1beta3 import Alert, Provider
from source.api_v1 import Bucket, GitRepository, HelmChart, HelmRepository, OCIRepository

__all__ = [
    "COMPONENTS",
    "COMPONENT_LABEL",
    "DEFAULT_COMPONENTS",
    "DEFAULT_IMAGE_REPOSITORY",
    "EXTRA_COMPONENTS",
    "INSTANCE_LABEL",
    "LOCKDOWN_FLAGS",
    "PART_OF",
    "PART_OF_LABEL",
    "WEIR_VERSION",
    "BundleOptions",
    "Component",
    "Server",
    "component_named",
    "crds",
    "render",
]

PART_OF_LABEL = "app.kubernetes.io/part-of"
PART_OF = "weir"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
VERSION_LABEL = "app.kubernetes.io/version"

WEIR_VERSION = version("weir")
# No image is published yet: a cluster runs the one it is given (--image-repository), or an
# image of that name loaded into its nodes (kind load, minikube image load).
DEFAULT_IMAGE_REPOSITORY = "weir"

METRICS_PORT = 8080
HEALTH_PORT = 9440
STORAGE_PORT = 9090
EVENTS_PORT = 9090
RECEIVER_PORT = 9292

LOCKDOWN_FLAGS = ("no_cross_namespace_refs", "no_remote_bases", "default_service_account")
"""The ``BundleOptions`` fields of Flux's multi-tenancy lockdown."""


@dataclass(frozen=True)
class Server:
    """A server of a controller's own (beyond metrics and health), and the Service in front of
    it: Service port 80, named ``http``, to the container port ``port_name``."""

    service: str
    port_name: str
    port: int
    flag: str
    """The controller's flag for the address it listens on."""
    network_policy: str | None = None
    """A NetworkPolicy of that name lets every namespace reach the port (Flux's
    ``allow-webhooks``: Git hosts come in through an ingress controller's pods)."""


@dataclass(frozen=True)
class Component:
    """One controller process, and what its Deployment and RBAC need."""

    name: str
    """Of its Deployment, ServiceAccount and pods (``app`` label)."""
    package: str
    """The container runs ``python -m <package>``."""
    kinds: tuple[type[CustomResource], ...]
    """The kinds it reconciles: their CRDs are installed with it, its RBAC covers them."""
    reads: tuple[dict[str, Any], ...] = ()
    """RBAC rules beyond its own kinds, events and leader election."""
    cluster_admin: bool = False
    """Bound to cluster-admin instead of a role of its own: it applies objects of any kind."""
    lockdown: tuple[str, ...] = ()
    """Which of ``LOCKDOWN_FLAGS`` it takes."""
    artifact_storage: bool = False
    """Serves artifacts: a storage volume, the storage port and the artifact Service."""
    servers: tuple[Server, ...] = ()
    events_endpoint: bool = False
    """Takes the events of the other controllers: with it installed, each of them gets
    ``--events-addr`` naming its first server's Service."""
    cpu_request: str = "100m"
    env: tuple[tuple[str, str], ...] = ()
    """Environment variables of its container beyond the runtime's, (name, value)."""
    extra: bool = False
    """Installed only when asked for (Flux's ``--components-extra``), not by default."""
    flux_names: tuple[str, ...] = ()
    """Flux's names of the controllers this one stands for, when they are not its own: a
    Flux user's ``--components-extra`` names them."""


def _rule(group: str, resources: Sequence[str], verbs: Sequence[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": list(resources), "verbs": list(verbs)}


# The API groups of every Flux kind a Receiver may name and an Alert may watch: their objects'
# owners are other controllers, so the notification controller reaches them by group.
_FLUX_GROUPS = (
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
    "image.toolkit.fluxcd.io",
    "source.extensions.fluxcd.io",
)


COMPONENTS: dict[str, Component] = {
    component.name: component
    for component in (
        Component(
            "source-controller",
            "source",
            (GitRepository, OCIRepository, Bucket, HelmRepository, HelmChart),
            reads=(
                # The Secrets a source names (secretRef, certSecretRef, proxySecretRef), read
                # one at a time, never listed.
                _rule("", ["secrets"], ["get"]),
                # An OCIRepository's serviceAccountName, for its imagePullSecrets.
                _rule("", ["serviceaccounts"], ["get"]),
            ),
            artifact_storage=True,
            cpu_request="50m",
        ),
        Component(
            "kustomize-controller",
            "kustomize",
            (Kustomization,),
            cluster_admin=True,
            lockdown=LOCKDOWN_FLAGS,
        ),
        Component(
            "helm-controller",
            "helm",
            (HelmRelease,),
            # As Flux binds it: a chart holds objects of any kind. cluster-admin also covers
            # what it reads (valuesFrom Secrets and ConfigMaps, kubeConfig Secrets, its
            # HelmCharts and OCIRepositories) and the HelmCharts it creates and deletes.
            cluster_admin=True,
            # Charts have no remote bases.
            lockdown=("no_cross_namespace_refs", "default_service_account"),
            # Helm reads its homes from the environment at exec (helm.launch); in the pod's
            # /tmp emptyDir, as the root filesystem is read-only. Post-renderer plugins are
            # installed under HELM_PLUGINS.
            env=(
                ("HELM_CACHE_HOME", "/tmp/helm/cache"),  # noqa: S108 - the pod's own emptyDir
                ("HELM_CONFIG_HOME", "/tmp/helm/config"),  # noqa: S108
                ("HELM_DATA_HOME", "/tmp/helm/data"),  # noqa: S108
                ("HELM_PLUGINS", "/tmp/helm/data/plugins"),  # noqa: S108
            ),
        ),
        Component(
            "notification-controller",
            "notification",
            (Receiver, Alert, Provider),
            reads=(
                # A Receiver's token, a Provider's credentials, certificates and proxy: read
                # one at a time, never listed.
                _rule("", ["secrets"], ["get"]),
                # A Receiver asks for a reconcile of the objects it names (an annotation,
                # patched); both it and the Alerts select objects by labels (listed and
                # watched), and an Alert reads the object of an event for its labels.
                {
                    "apiGroups": list(_FLUX_GROUPS),
                    "resources": ["*"],
                    "verbs": ["get", "list", "watch", "patch"],
                },
            ),
            lockdown=("no_cross_namespace_refs",),
            servers=(
                Server("notification-controller", "http", EVENTS_PORT, "--events-addr"),
                Server(
                    "webhook-receiver",
                    "http-webhook",
                    RECEIVER_PORT,
                    "--receiver-addr",
                    network_policy="allow-webhooks",
                ),
            ),
            events_endpoint=True,
        ),
        Component(
            "image-automation-controller",
            "image_automation",
            (ImageRepository, ImagePolicy, ImageUpdateAutomation),
            reads=(
                # Registry credentials and TLS, Git credentials, signing keys and Git host
                # tokens: read one at a time, never listed.
                _rule("", ["secrets"], ["get"]),
                # An ImageRepository's serviceAccountName, for its imagePullSecrets.
                _rule("", ["serviceaccounts"], ["get"]),
                # Each ImageRepository's full tag list, in a ConfigMap of its own
                # (image_automation.tags): written whole (update) and deleted with it.
                _rule("", ["configmaps"], ["get", "create", "update", "delete"]),
                # The GitRepository an automation clones and pushes to: watched, to run again
                # when it changes.
                _rule("source.toolkit.fluxcd.io", ["gitrepositories"], ["get", "list", "watch"]),
                # An ImageRepository's accessFrom selects the namespaces by their labels.
                _rule("", ["namespaces"], ["get"]),
            ),
            lockdown=("no_cross_namespace_refs",),
            extra=True,
            flux_names=("image-reflector-controller", "image-automation-controller"),
        ),
    )
}
DEFAULT_COMPONENTS = tuple(name for name, component in COMPONENTS.items() if not component.extra)
"""``flux install``'s: every component but the extras."""
EXTRA_COMPONENTS = tuple(name for name, component in COMPONENTS.items() if component.extra)


def component_named(name: str) -> Component | None:
    """The component of that name, weir's or Flux's (``image-reflector-controller``); None
    when there is none."""
    if name in COMPONENTS:
        return COMPONENTS[name]
    for component in COMPONENTS.values():
        if name in component.flux_names:
            return component
    return None


@dataclass(frozen=True)
class BundleOptions:
    """What ``weir install`` takes; the defaults are ``flux install``'s."""

    namespace: str = "flux-system"
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    image_repository: str = DEFAULT_IMAGE_REPOSITORY
    image_tag: str = WEIR_VERSION
    log_level: str = "info"
    concurrent: int | None = None
    """Workers per kind; None leaves each controller's own default."""
    watch_all_namespaces: bool = True
    network_policy: bool = True
    cluster_domain: str = "cluster.local"
    no_cross_namespace_refs: bool = False
    no_remote_bases: bool = False
    default_service_account: str = ""

    def chosen(self) -> list[Component]:
        """The chosen components, in ``COMPONENTS`` order; ``ValueError`` names an unknown one."""
        unknown = [name for name in self.components if name not in COMPONENTS]
        if unknown:
            known = ", ".join(COMPONENTS)
            raise ValueError(f"unknown component {unknown[0]!r} (known: {known})")
        return [component for name, component in COMPONENTS.items() if name in self.components]


def render(options: BundleOptions) -> list[dict[str, Any]]:
    """Every object of the install, in an order that applies: the namespace and CRDs before
    what lives in them, RBAC before the Deployments that use it."""
    components = options.chosen()
    ns = options.namespace
    labels = _labels(options)
    events_addr = _events_addr(components, options)
    accounts: list[dict[str, Any]] = []
    roles: list[dict[str, Any]] = []
    bindings: list[dict[str, Any]] = []
    services: list[dict[str, Any]] = []
    deployments: list[dict[str, Any]] = []
    for component in components:
        own = {**labels, COMPONENT_LABEL: component.name}
        accounts.append(_object("v1", "ServiceAccount", component.name, ns, own))
        if not component.cluster_admin:
            name = f"{component.name}-{ns}"
            role = _object(RBAC, "ClusterRole", name, None, own)
            role["rules"] = _controller_rules(component)
            roles.append(role)
            binding = _object(RBAC, "ClusterRoleBinding", name, None, own)
            bindings.append(_bound(binding, "ClusterRole", name, [component], ns))
        if component.artifact_storage:
            # The artifact server: artifact URLs name this Service (--storage-adv-addr).
            services.append(_service(component.name, component, "http", ns, own))
        for server in component.servers:
            services.append(_service(server.service, component, server.port_name, ns, own))
        deployments.append(_deployment(component, options, own, events_addr))
    admins = [component for component in components if component.cluster_admin]
    if admins:
        # Flux's name for it: these controllers apply what the sources hold, of any kind.
        binding = _object(RBAC, "ClusterRoleBinding", f"cluster-reconciler-{ns}", None, labels)
        bindings.append(_bound(binding, "ClusterRole", "cluster-admin", admins, ns))
    leader = _object(RBAC, "Role", "leader-election", ns, labels)
    # The runtime's leader election reads, creates and renews one Lease (controllers.leader).
    leader["rules"] = [_rule("coordination.k8s.io", ["leases"], ["get", "create", "update"])]
    binding = _object(RBAC, "RoleBinding", "leader-election", ns, labels)
    bindings.append(_bound(binding, "Role", "leader-election", components, ns))
    roles += [leader, *_user_roles(components, ns, labels)]
    objects = [
        _namespace(ns, labels),
        *crds(options),
        *accounts,
        *roles,
        *bindings,
        _critical_pods_quota(ns, labels),
        *(_network_policies(components, ns, labels) if options.network_policy else []),
        *services,
        *deployments,
    ]
    # Objects that share no list or dict with each other or with COMPONENTS: safe for the
    # caller to change, and dumped as YAML without anchors.
    fresh: list[dict[str, Any]] = json.loads(json.dumps(objects))
    return fresh


def crds(options: BundleOptions) -> list[dict[str, Any]]:
    """The CRDs of the chosen components, rendered from their models as ``crds/`` is."""
    labels = _labels(options)
    rendered = []
    for component in options.chosen():
        for versions in _versions_by_kind(component.kinds):
            crd = render_crd(versions)
            crd["metadata"]["labels"] = {**labels, COMPONENT_LABEL: component.name}
            rendered.append(crd)
    return rendered


RBAC = "rbac.authorization.k8s.io/v1"


def _labels(options: BundleOptions) -> dict[str, str]:
    return {
        PART_OF_LABEL: PART_OF,
        INSTANCE_LABEL: options.namespace,
        VERSION_LABEL: WEIR_VERSION,
    }


def _object(
    api_version: str, kind: str, name: str, namespace: str | None, labels: dict[str, str]
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    metadata["labels"] = dict(labels)
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata}


def _namespace(ns: str, labels: dict[str, str]) -> dict[str, Any]:
    namespace = _object("v1", "Namespace", ns, None, labels)
    # Flux's: warn (not refuse) when a pod in the namespace breaks the restricted policy.
    namespace["metadata"]["labels"].update(
        {
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "latest",
        }
    )
    return namespace


def _versions_by_kind(
    models: Sequence[type[CustomResource]],
) -> list[list[type[CustomResource]]]:
    """The models grouped into one list of versions per kind, in the order given."""
    by_kind: dict[tuple[str, str], list[type[CustomResource]]] = {}
    for model in models:
        by_kind.setdefault((model.info.group, model.info.kind), []).append(model)
    return list(by_kind.values())


def _controller_rules(component: Component) -> list[dict[str, Any]]:
    """Its own kinds (read, watched, finalizers and status patched), what it ``reads``,
    events, and the API server's flow-control probe."""
    rules = []
    for group in dict.fromkeys(model.info.group for model in component.kinds):
        models = [model for model in component.kinds if model.info.group == group]
        plurals = [model.info.plural for model in models]
        rules.append(_rule(group, plurals, ["get", "list", "watch", "patch"]))
        # Alerts and Providers have no status (Flux's v1beta3).
        statuses = [f"{model.info.plural}/status" for model in models if _has_status(model)]
        if statuses:
            rules.append(_rule(group, statuses, ["get", "patch"]))
        # Checked by the OwnerReferencesPermissionEnforcement admission plugin, where it
        # runs, when an object names one of these as a blocking owner.
        rules.append(_rule(group, [f"{plural}/finalizers" for plural in plurals], ["update"]))
    rules += [
        *component.reads,
        _rule("", ["events"], ["create"]),
        # GET /livez/ping tells whether the API server has flow control (controllers.manager).
        {"nonResourceURLs": ["/livez/ping"], "verbs": ["get"]},
    ]
    return rules


def _has_status(model: type[CustomResource]) -> bool:
    """Whether the kind has a status (and its CRD the status subresource, ``render_crd``)."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return "status" in schema["properties"]


def _bound(
    binding: dict[str, Any],
    role_kind: str,
    role: str,
    components: Sequence[Component],
    ns: str,
) -> dict[str, Any]:
    """``binding`` granting ``role`` to the ServiceAccounts of ``components``."""
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role}
    binding["subjects"] = [
        {"kind": "ServiceAccount", "name": component.name, "namespace": ns}
        for component in components
    ]
    return binding


def _user_roles(
    components: Sequence[Component], ns: str, labels: dict[str, str]
) -> list[dict[str, Any]]:
    """Flux's ``flux-edit`` and ``flux-view``: weir's kinds added to the built-in admin, edit
    and view roles, so that namespace users can work with them."""
    groups = sorted({model.info.group for c in components for model in c.kinds})
    edit = _object(RBAC, "ClusterRole", f"weir-edit-{ns}", None, labels)
    edit["metadata"]["labels"].update(
        {
            "rbac.authorization.k8s.io/aggregate-to-admin": "true",
            "rbac.authorization.k8s.io/aggregate-to-edit": "true",
        }
    )
    edit["rules"] = [
        {
            "apiGroups": groups,
            "resources": ["*"],
            "verbs": ["create", "delete", "deletecollection", "patch", "update"],
        }
    ]
    view = _object(RBAC, "ClusterRole", f"weir-view-{ns}", None, labels)
    view["metadata"]["labels"].update(
        {
            "rbac.authorization.k8s.io/aggregate-to-admin": "true",
            "rbac.authorization.k8s.io/aggregate-to-edit": "true",
            "rbac.authorization.k8s.io/aggregate-to-view": "true",
        }
    )
    view["rules"] = [{"apiGroups": groups, "resources": ["*"], "verbs": ["get", "list", "watch"]}]
    return [edit, view]


def _critical_pods_quota(ns: str, labels: dict[str, str]) -> dict[str, Any]:
    """Flux's: where the API server limits critical priority classes to namespaces with a
    quota for them (GKE), this lets the controllers' pods be system-cluster-critical."""
    quota = _object("v1", "ResourceQuota", "critical-pods", ns, labels)
    quota["spec"] = {
        "hard": {"pods": "1000"},
        "scopeSelector": {
            "matchExpressions": [
                {
                    "operator": "In",
                    "scopeName": "PriorityClass",
                    "values": ["system-node-critical", "system-cluster-critical"],
                }
            ]
        },
    }
    return quota


def _network_policies(
    components: Sequence[Component], ns: str, labels: dict[str, str]
) -> list[dict[str, Any]]:
    """Flux's: the namespace's pods reach each other (the artifact Service) and anything
    outside; only Prometheus scrapes, and webhooks to the receiver, come in from other
    namespaces."""
    egress = _object("networking.k8s.io/v1", "NetworkPolicy", "allow-egress", ns, labels)
    egress["spec"] = {
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
        "egress": [{}],
        "podSelector": {},
    }
    scraping = _object("networking.k8s.io/v1", "NetworkPolicy", "allow-scraping", ns, labels)
    scraping["spec"] = {
        "policyTypes": ["Ingress"],
        "ingress": [
            {
                "from": [{"namespaceSelector": {}}],
                "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
            }
        ],
        "podSelector": {},
    }
    policies = [egress, scraping]
    for component in components:
        for server in component.servers:
            if server.network_policy is None:
                continue
            policy = _object(
                "networking.k8s.io/v1", "NetworkPolicy", server.network_policy, ns, labels
            )
            policy["spec"] = {
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [{"namespaceSelector": {}}],
                        "ports": [{"protocol": "TCP", "port": server.port}],
                    }
                ],
                "podSelector": {"matchLabels": {"app": component.name}},
            }
            policies.append(policy)
    return policies


def _service(
    name: str, component: Component, target_port: str, ns: str, labels: dict[str, str]
) -> dict[str, Any]:
    """A Service on port 80 to the container port ``target_port`` of the component's pods."""
    service = _object("v1", "Service", name, ns, labels)
    service["spec"] = {
        "type": "ClusterIP",
        "selector": {"app": component.name},
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target_port}],
    }
    return service


def _events_addr(components: Sequence[Component], options: BundleOptions) -> str | None:
    """Where the controllers send their events: the events Service by its full name, as Flux
    names it (a proxy's ``no_proxy`` then covers it with ``.cluster.local``); None when no
    component takes events. The kubelet expands $(RUNTIME_NAMESPACE)."""
    for component in components:
        if component.events_endpoint:
            service = component.servers[0].service
            return f"http://{service}.$(RUNTIME_NAMESPACE).svc.{options.cluster_domain}./"
    return None


def _args(component: Component, options: BundleOptions, events_addr: str | None) -> list[str]:
    """The controller's own flags (controllers.cmd and each package's __main__.py)."""
    args = []
    if events_addr is not None and not component.events_endpoint:
        args.append(f"--events-addr={events_addr}")
    args += [
        f"--watch-all-namespaces={str(options.watch_all_namespaces).lower()}",
        f"--log-level={options.log_level}",
        "--log-encoding=json",
        "--enable-leader-election",
        f"--metrics-addr=:{METRICS_PORT}",
        f"--health-addr=:{HEALTH_PORT}",
    ]
    args += [f"{server.flag}=:{server.port}" for server in component.servers]
    if options.concurrent is not None:
        args.append(f"--concurrent={options.concurrent}")
    if component.artifact_storage:
        args += [
            "--storage-path=/data",
            f"--storage-addr=:{STORAGE_PORT}",
            # The artifact Service's name, as Flux advertises it: artifact URLs then work
            # from any pod of the cluster. The kubelet expands $(RUNTIME_NAMESPACE).
            f"--storage-adv-addr={component.name}.$(RUNTIME_NAMESPACE).svc."
            f"{options.cluster_domain}.",
        ]
    if "no_cross_namespace_refs" in component.lockdown and options.no_cross_namespace_refs:
        args.append("--no-cross-namespace-refs")
    if "no_remote_bases" in component.lockdown and options.no_remote_bases:
        args.append("--no-remote-bases")
    if "default_service_account" in component.lockdown and options.default_service_account:
        args.append(f"--default-service-account={options.default_service_account}")
    return args


def _container(
    component: Component, options: BundleOptions, events_addr: str | None
) -> dict[str, Any]:
    ports = [
        *(
            {"containerPort": server.port, "name": server.port_name, "protocol": "TCP"}
            for server in component.servers
        ),
        {"containerPort": METRICS_PORT, "name": "http-prom", "protocol": "TCP"},
        {"containerPort": HEALTH_PORT, "name": "healthz", "protocol": "TCP"},
    ]
    mounts = [{"name": "tmp", "mountPath": "/tmp"}]  # noqa: S108 - an emptyDir of the pod's own
    if component.artifact_storage:
        ports.insert(0, {"containerPort": STORAGE_PORT, "name": "http", "protocol": "TCP"})
        mounts.insert(0, {"name": "data", "mountPath": "/data"})
    return {
        "name": "manager",
        "image": f"{options.image_repository}:{options.image_tag}",
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", component.package],
        "args": _args(component, options, events_addr),
        "env": [
            # The leader-election namespace and, without --watch-all-namespaces, the one
            # watched (controllers.cmd).
            _field_env("RUNTIME_NAMESPACE", "metadata.namespace"),
            # The leader-election identity.
            _field_env("POD_NAME", "metadata.name"),
            *({"name": name, "value": value} for name, value in component.env),
        ],
        "ports": ports,
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "healthz"}},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "healthz"}},
        "resources": {
            "limits": {"cpu": "1000m", "memory": "1Gi"},
            "requests": {"cpu": component.cpu_request, "memory": "64Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": mounts,
    }


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _deployment(
    component: Component, options: BundleOptions, labels: dict[str, str], events_addr: str | None
) -> dict[str, Any]:
    deployment = _object("apps/v1", "Deployment", component.name, options.namespace, labels)
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    if component.artifact_storage:
        volumes.insert(0, {"name": "data", "emptyDir": {}})
    deployment["spec"] = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": component.name}},
        # Artifacts live in the pod's storage: two pods would serve different ones.
        **({"strategy": {"type": "Recreate"}} if component.artifact_storage else {}),
        "template": {
            "metadata": {
                "labels": {"app": component.name, **labels},
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(METRICS_PORT),
                },
            },
            "spec": {
                "serviceAccountName": component.name,
                "priorityClassName": "system-cluster-critical",
                # Longer than the runtime's --graceful-shutdown-timeout (30s), so that it
                # ends its reconciles before the kubelet kills it.
                "terminationGracePeriodSeconds": 60,
                "nodeSelector": {"kubernetes.io/os": "linux"},
                # Flux's: a non-root process can read projected service account tokens
                # (AWS IAM roles for service accounts).
                "securityContext": {"fsGroup": 1337},
                "containers": [_container(component, options, events_addr)],
                "volumes": volumes,
            },
        },
    }
    return deployment
