"""``helm.client`` without a cluster: the options it sends Helm, checked by the library's own
strict decoder, and how the library's errors map onto weir's."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import helm_python
import pytest
from helm_python import _native

from helm.client import (
    HelmCancelled,
    HelmError,
    HelmTestOptions,
    HelmTimeout,
    InstallOptions,
    ReleaseConflict,
    ReleaseNotFound,
    RollbackOptions,
    UninstallOptions,
    UpgradeOptions,
    _translate,
    helm_test_options_json,
    install_options_json,
    rollback_options_json,
    uninstall_options_json,
    upgrade_options_json,
)

EVERYTHING_ON: dict[str, Any] = {
    "timeout": 61.4,
    "wait": False,
    "wait_for_jobs": True,
    "disable_hooks": True,
    "server_side_apply": False,
    "force": True,
}


def test_install_defaults_are_flux_helm_v4_defaults() -> None:
    assert json.loads(install_options_json("apps", InstallOptions())) == {
        "namespace": "apps",
        "timeout_seconds": 300,
        "wait": "watcher",
        "wait_for_jobs": False,
        "disable_hooks": False,
        "disable_openapi_validation": False,
        "skip_crds": False,
        "take_ownership": False,
        "skip_schema_validation": False,
        "create_namespace": False,
        "server_side_apply": True,
        "replace": False,
    }


def test_upgrade_defaults() -> None:
    assert json.loads(upgrade_options_json("apps", UpgradeOptions())) == {
        "namespace": "apps",
        "timeout_seconds": 300,
        "wait": "watcher",
        "wait_for_jobs": False,
        "disable_hooks": False,
        "disable_openapi_validation": False,
        "skip_crds": False,
        "take_ownership": False,
        "skip_schema_validation": False,
        "server_side_apply": "true",  # a string for upgrade, a bool for install
        "cleanup_on_fail": False,
        "max_history": 5,
        "reset_values": True,
        "reuse_values": False,
    }


@pytest.mark.parametrize(
    ("server_side_apply", "expected"),
    [
        pytest.param(True, {"force_conflicts": True}, id="ssa-takes-conflicting-fields"),
        pytest.param(False, {"force_replace": True}, id="client-side-replaces"),
    ],
)
def test_force(server_side_apply: bool, expected: dict[str, bool]) -> None:
    opts = json.loads(
        upgrade_options_json("a", UpgradeOptions(force=True, server_side_apply=server_side_apply))
    )
    assert {k: v for k, v in opts.items() if k.startswith("force")} == expected


@pytest.mark.parametrize(
    ("timeout", "seconds"),
    [
        pytest.param(0.2, 1, id="never-zero-which-is-helms-default"),
        pytest.param(90.6, 91, id="rounded"),
    ],
)
def test_timeout_in_whole_seconds(timeout: float, seconds: int) -> None:
    opts = json.loads(rollback_options_json(0, RollbackOptions(timeout=timeout)))
    assert opts["timeout_seconds"] == seconds


def test_post_renderer_by_name() -> None:
    options = InstallOptions(post_renderer="weir-kustomize", post_renderer_args=("--a", "b"))
    opts = json.loads(install_options_json("a", options))
    assert (opts["post_renderer"], opts["post_renderer_args"]) == ("weir-kustomize", ["--a", "b"])


@pytest.fixture(scope="module")
def config() -> helm_python.Config:
    # No cluster: the library decodes options before it contacts one.
    empty = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
    return helm_python.Config(kubeconfig_content=empty, namespace="default")


def _install(config: helm_python.Config, options: str) -> None:
    handle = _native.HANDLE(0)
    _native.call_string("helm_install", config._raw(), handle, handle, None, "r", None, options)


def _upgrade(config: helm_python.Config, options: str) -> None:
    handle = _native.HANDLE(0)
    _native.call_string("helm_upgrade", config._raw(), handle, handle, None, "r", None, options)


def _rollback(config: helm_python.Config, options: str) -> None:
    _native.call_status("helm_rollback", config._raw(), "r", options)


def _uninstall(config: helm_python.Config, options: str) -> None:
    _native.call_string("helm_uninstall", config._raw(), "r", options)


def _test(config: helm_python.Config, options: str) -> None:
    _native.call_string("helm_test_run", config._raw(), "r", options)


@pytest.mark.parametrize(
    ("call", "options"),
    [
        pytest.param(_install, install_options_json("a", InstallOptions()), id="install"),
        pytest.param(
            _install,
            install_options_json(
                "a",
                InstallOptions(
                    **EVERYTHING_ON,
                    skip_crds=True,
                    create_namespace=True,
                    take_ownership=True,
                    skip_schema_validation=True,
                    replace=True,
                    description="d",
                    post_renderer="p",
                    post_renderer_args=("x",),
                ),
            ),
            id="install-everything",
        ),
        pytest.param(_upgrade, upgrade_options_json("a", UpgradeOptions()), id="upgrade"),
        pytest.param(
            _upgrade,
            upgrade_options_json(
                "a",
                UpgradeOptions(
                    **EVERYTHING_ON,
                    skip_schema_validation=True,
                    reuse_values=True,
                    cleanup_on_fail=True,
                    max_history=0,
                    post_renderer="p",
                ),
            ),
            id="upgrade-everything",
        ),
        pytest.param(_rollback, rollback_options_json(0, RollbackOptions()), id="rollback"),
        pytest.param(
            _rollback,
            rollback_options_json(2, RollbackOptions(**EVERYTHING_ON, cleanup_on_fail=True)),
            id="rollback-everything",
        ),
        pytest.param(_uninstall, uninstall_options_json(UninstallOptions()), id="uninstall"),
        pytest.param(
            _uninstall,
            uninstall_options_json(
                UninstallOptions(
                    keep_history=True, deletion_propagation="foreground", description="d"
                )
            ),
            id="uninstall-everything",
        ),
        pytest.param(
            _test, helm_test_options_json(HelmTestOptions(logs=True, filters=("t",))), id="test"
        ),
    ],
)
def test_the_library_accepts_the_options(
    config: helm_python.Config, call: Callable[[helm_python.Config, str], None], options: str
) -> None:
    """The library refuses unknown keys and wrong types ("invalid <action> options JSON"); the
    call then fails for want of a chart or a cluster, never for its options."""
    with pytest.raises(helm_python.HelmError) as failed:
        call(config, options)
    assert "options JSON" not in str(failed.value)


def test_the_library_refuses_a_wrong_type(config: helm_python.Config) -> None:
    """What the test above relies on: the decoder is strict."""
    with pytest.raises(helm_python.HelmInvalidArgError, match="invalid upgrade options JSON"):
        _upgrade(config, json.dumps({"server_side_apply": True}))


@pytest.mark.parametrize(
    ("error", "cancelled", "expected"),
    [
        pytest.param(
            helm_python.HelmCancelledError("context canceled"), True, HelmCancelled, id="cancel"
        ),
        pytest.param(
            helm_python.HelmCancelledError("not ready\ncontext deadline exceeded"),
            False,
            HelmTimeout,
            id="timeout",
        ),
        pytest.param(
            helm_python.HelmNotFoundError("release: not found"), False, ReleaseNotFound, id="gone"
        ),
        pytest.param(
            helm_python.HelmReleaseError(
                "release name check failed: cannot reuse a name that is still in use"
            ),
            False,
            ReleaseConflict,
            id="name-in-use",
        ),
        pytest.param(
            helm_python.HelmReleaseError(
                "another operation (install/upgrade/rollback) is in progress"
            ),
            False,
            ReleaseConflict,
            id="pending",
        ),
        pytest.param(
            helm_python.HelmReleaseError("release: already exists"),
            False,
            ReleaseConflict,
            id="concurrent-writer",
        ),
        pytest.param(
            helm_python.HelmReleaseError("server-side apply failed"), False, HelmError, id="other"
        ),
    ],
)
def test_errors(error: helm_python.HelmError, cancelled: bool, expected: type[HelmError]) -> None:
    translated = _translate(error, cancelled=cancelled)
    assert type(translated) is expected
    assert str(translated) == str(error)
