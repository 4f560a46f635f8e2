"""The runtime's public surface, and the layers between the runtime and the controllers.

The layering check duplicates the import-linter contracts in pyproject.toml on purpose, so that
plain pytest enforces them too: the runtime imports no controller, controllers do not import
each other, and neither imports envtest (test and development support).
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import controllers

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = "controllers"
TEST_SUPPORT = "controllers.envtest"
CONTROLLER_PACKAGES = ("source", "kustomize", "helm", "image_automation", "notification")


def runtime_modules() -> list[ModuleType]:
    return [controllers] + [
        importlib.import_module(info.name)
        for info in pkgutil.walk_packages(controllers.__path__, f"{RUNTIME}.")
    ]


def modules_with_all() -> list[ModuleType]:
    return [module for module in runtime_modules() if hasattr(module, "__all__")]


def test_the_walk_finds_the_runtime_modules() -> None:
    names = {module.__name__ for module in modules_with_all()}

    assert {
        "controllers.api",
        "controllers.queue",
        "controllers.patch",
        "controllers.safeyaml",
        "controllers.child",
        "controllers.download",
        "controllers.kinds",
        "controllers.secrets",
        "controllers.tls",
    } <= names


@pytest.mark.parametrize(
    "module", [pytest.param(module, id=module.__name__) for module in modules_with_all()]
)
def test_every_name_in_all_exists(module: ModuleType) -> None:
    names: list[str] = list(module.__all__)

    assert [name for name in names if not hasattr(module, name)] == []
    assert len(set(names)) == len(names), f"{module.__name__}.__all__ has duplicates"


def imports(path: Path, module: str) -> Iterator[tuple[ast.stmt, list[str]]]:
    """Every import statement in ``path`` (``module``), with the absolute module names it
    imports from (and, for ``from m import a``, ``m.a`` too, since ``a`` may be a module);
    relative imports are resolved."""
    is_package = path.name == "__init__.py"
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield node, [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join([*base, *([node.module] if node.module else [])])
            yield node, [name, *(f"{name}.{alias.name}" for alias in node.names)]


def layer_violations(root: Path) -> list[str]:
    """Each import that crosses a layer (the runtime importing a controller, a controller
    importing another controller, anything importing envtest), as ``file:line: statement``."""
    problems = []
    for package in (RUNTIME, *CONTROLLER_PACKAGES):
        forbidden = {p for p in CONTROLLER_PACKAGES if p != package}
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
            for node, names in imports(path, module):
                if any(name.split(".")[0] in forbidden or _is_test_support(name) for name in names):
                    problems.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    return problems


def _is_test_support(name: str) -> bool:
    return name == TEST_SUPPORT or name.startswith(TEST_SUPPORT + ".")


def test_runtime_and_controllers_respect_the_layers() -> None:
    assert (ROOT / RUNTIME / "queue.py").is_file(), "the scan must look at the real tree"

    violations = layer_violations(ROOT)

    assert violations == [], "imports that cross layers:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    ("path", "source", "violation"),
    [
        pytest.param(
            "controllers/manager.py",
            "import source.api_v1\n",
            "controllers/manager.py:1: import source.api_v1",
            id="runtime-imports-controller",
        ),
        pytest.param(
            "controllers/reconcile.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from helm import api\n",
            "controllers/reconcile.py:3: from helm import api",
            id="runtime-imports-controller-for-typing",
        ),
        pytest.param(
            "kustomize/build.py",
            "from controllers.api import CustomResource\nfrom source.api_v1 import GitRepository\n",
            "kustomize/build.py:2: from source.api_v1 import GitRepository",
            id="controller-imports-controller",
        ),
        pytest.param(
            "image_automation/update.py",
            "def lazy():\n    import image_automation.api, notification\n",
            "image_automation/update.py:2: import image_automation.api, notification",
            id="import-inside-function",
        ),
        pytest.param(
            "controllers/cmd.py",
            "from controllers.envtest import free_port\n",
            "controllers/cmd.py:1: from controllers.envtest import free_port",
            id="runtime-imports-envtest",
        ),
        pytest.param(
            "kustomize/decrypt.py",
            "from controllers import binaries, envtest\n",
            "kustomize/decrypt.py:1: from controllers import binaries, envtest",
            id="controller-imports-envtest",
        ),
        pytest.param(
            "controllers/manager.py",
            "from . import envtest\n",
            "controllers/manager.py:1: from . import envtest",
            id="runtime-imports-envtest-relative",
        ),
    ],
)
def test_layer_check_names_the_offending_file_and_import(
    tmp_path: Path, path: str, source: str, violation: str
) -> None:
    for package in (RUNTIME, *CONTROLLER_PACKAGES):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("from controllers import api\n")
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text(source)

    assert layer_violations(tmp_path) == [violation]


@pytest.mark.parametrize(
    ("path", "source"),
    [
        pytest.param("source/git.py", "from source.api_v1 import GitRepository\n", id="own-api"),
        pytest.param("source/git.py", "from .api_v1 import GitRepository\n", id="own-relative"),
        pytest.param("source/git/__init__.py", "from .. import api_v1\n", id="own-parent"),
        pytest.param("helm/chart.py", "from controllers import patch\n", id="runtime"),
        pytest.param("controllers/kube.py", "import sourcehut\n", id="similar-name"),
        pytest.param(
            "kustomize/decrypt.py", "from controllers.binaries import find_binary\n", id="binaries"
        ),
        pytest.param(
            "controllers/cmd.py", "import controllers.envtestlike\n", id="similar-to-envtest"
        ),
    ],
)
def test_layer_check_allows_what_the_layers_allow(tmp_path: Path, path: str, source: str) -> None:
    (tmp_path / path).parent.mkdir(parents=True)
    (tmp_path / path).write_text(source)

    assert layer_violations(tmp_path) == []
