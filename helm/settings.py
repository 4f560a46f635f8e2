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
    # CRDs: Helm's library installs a chart's crds/ only when absent (Create) and never
    # updates them; Flux's CreateReplace is not Helm's but its own code, which applies the CRDs
    # before the action (Helm told to skip them). helm-python-sdk 0.2.2 has no option for it,
    # and weir does not apply a chart's CRDs itself yet.
    check(obj.install.crds == "CreateReplace", "install.crds")
    check(obj.upgrade.crds == "CreateReplace", "upgrade.crds")
    return found
