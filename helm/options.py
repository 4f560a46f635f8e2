"""Helm's action options from a HelmRelease's ``spec.install``, ``spec.upgrade`` and
``spec.uninstall``, as Flux's helm-controller builds them (``internal/action``)."""

from __future__ import annotations

from helm.api_v2 import HelmRelease
from helm.client import InstallOptions, UninstallOptions, UpgradeOptions

__all__ = ["SKIP_OPENAPI_PROBE", "install_options", "uninstall_options", "upgrade_options"]

# Helm's OpenAPI "validation" of an install or upgrade is kubectl's field validation probe: it
# downloads and parses the OpenAPI v3 document of every group-version the release touches, on
# every action (a new verifier each time), to learn whether the API server checks fields
# itself, and when it does, as every Kubernetes weir supports does, nothing is validated on
# the client. The server checks the objects either way (Helm v4's server-side apply asks for
# fieldValidation=Strict whatever the option says). Measured: the probe was three quarters of
# the CPU of an install. So it is always skipped, and ``disableOpenAPIValidation`` has nothing
# left to turn off.
SKIP_OPENAPI_PROBE = True


def install_options(obj: HelmRelease) -> InstallOptions:
    """Helm's install options from ``spec.install`` (Flux's ``newInstall``)."""
    install = obj.install
    crds = install.crds or ("Skip" if install.skip_crds else "Create")
    server_side_apply = True if install.server_side_apply is None else install.server_side_apply
    return InstallOptions(
        timeout=install.timeout_seconds(obj.timeout_seconds),
        wait=not install.disable_wait,
        wait_for_jobs=not install.disable_wait_for_jobs,
        disable_hooks=bool(install.disable_hooks),
        disable_openapi_validation=SKIP_OPENAPI_PROBE,
        skip_crds=crds == "Skip",
        # Flux creates the namespace only for a targetNamespace.
        create_namespace=bool(install.create_namespace and obj.spec.target_namespace),
        server_side_apply=server_side_apply,
        # As Flux, conflicts are always forced with server-side apply: a field a hand-run
        # `helm upgrade` (manager "helm") took is taken back.
        force=server_side_apply,
        take_ownership=not install.disable_take_ownership,
        skip_schema_validation=bool(install.disable_schema_validation),
        replace=bool(install.replace),
    )


def upgrade_options(obj: HelmRelease) -> UpgradeOptions:
    """Helm's upgrade options from ``spec.upgrade`` (Flux's ``newUpgrade``)."""
    upgrade = obj.upgrade
    # "auto" (the default) keeps the release's apply method: weir installs with server-side
    # apply, so auto is server-side apply here.
    server_side_apply = upgrade.server_side_apply != "disabled"
    return UpgradeOptions(
        timeout=upgrade.timeout_seconds(obj.timeout_seconds),
        wait=not upgrade.disable_wait,
        wait_for_jobs=not upgrade.disable_wait_for_jobs,
        disable_hooks=bool(upgrade.disable_hooks),
        disable_openapi_validation=SKIP_OPENAPI_PROBE,
        skip_crds=(upgrade.crds or "Skip") == "Skip",
        server_side_apply=server_side_apply,
        # As Flux: conflicts always forced with server-side apply; without it, `force`
        # replaces (delete and create) what cannot be updated.
        force=server_side_apply or bool(upgrade.force),
        take_ownership=not upgrade.disable_take_ownership,
        skip_schema_validation=bool(upgrade.disable_schema_validation),
        reuse_values=bool(upgrade.preserve_values),
        cleanup_on_fail=bool(upgrade.cleanup_on_fail),
        max_history=obj.max_history,
    )


def uninstall_options(obj: HelmRelease) -> UninstallOptions:
    """Helm's uninstall options from ``spec.uninstall`` (deletion and remediation alike)."""
    uninstall = obj.uninstall
    return UninstallOptions(
        timeout=uninstall.timeout_seconds(obj.timeout_seconds),
        wait=not uninstall.disable_wait,
        keep_history=bool(uninstall.keep_history),
        disable_hooks=bool(uninstall.disable_hooks),
        deletion_propagation=uninstall.deletion_propagation,
    )
