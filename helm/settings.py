"""The HelmRelease settings weir does not implement yet.

Each one set to anything but its "off" default is named, so that the reconciler stalls instead
of ignoring it (a setting accepted but ignored would deploy something other than what was
declared).
"""

from __future__ import annotations

from helm.api_v2 import HelmRelease

__all__ = ["unsupported_settings"]


def unsupported_settings(obj: HelmRelease) -> list[str]:
    """The ``spec`` paths of the settings set in ``obj`` that weir does not implement yet."""
    spec = obj.spec
    found: list[str] = []

    def check(condition: object, path: str) -> None:
        if condition:
            found.append(f"spec.{path}")

    # helm-python-sdk 0.2.2 stores a release in the namespace it installs into and refuses to
    # upgrade into another namespace than its configuration's (see helm.client): they must agree.
    check(
        obj.release_namespace != obj.storage_namespace,
        "targetNamespace (other than the storage namespace)",
    )
    # Cloud workload identity (Flux's providers for AWS, Azure, GCP): weir has none.
    check(spec.kube_config and spec.kube_config.config_map_ref, "kubeConfig.configMapRef")
    check(spec.wait_strategy and spec.wait_strategy.name == "legacy", "waitStrategy.name")
    install, upgrade = obj.install, obj.upgrade
    check(install.disable_schema_validation, "install.disableSchemaValidation")
    check(install.replace, "install.replace")
    check(install.crds == "CreateReplace", "install.crds")
    check(upgrade.disable_schema_validation, "upgrade.disableSchemaValidation")
    check(upgrade.preserve_values, "upgrade.preserveValues")
    check(upgrade.crds == "CreateReplace", "upgrade.crds")
    check(upgrade.chart_name_change_strategy == "Reinstall", "upgrade.chartNameChangeStrategy")
    return found
