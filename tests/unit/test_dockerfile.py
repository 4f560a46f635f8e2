"""The Dockerfile, which nothing here builds (no container engine), held to what the set-up and
the tests do run, so that it cannot drift from them unnoticed: its ``go build`` lines are the
ones ``python -m controllers.envtest build`` runs, from the same pinned modules; it installs the
project as pyproject.toml describes it, on the Python the project targets; it puts each binary a
controller runs where ``controllers.binaries`` finds it; and it runs as a numeric non-root user.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from controllers.binaries import BUILT
from controllers.envtest import REPO_ROOT, go_build_command
from kustomize.buildworker import WORKER_BINARY

DOCKERFILE = REPO_ROOT / "Dockerfile"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
# The Go-built binaries a controller runs (the rest are the tests' own): the helm controller's
# post-renderer runs the kustomize CLI, the image automation controller gotemplate.
CONTROLLER_BINARIES = {WORKER_BINARY, "sops", "kustomize", "gotemplate"}
SOURCE_ROOT = "/src"


@dataclass
class Stage:
    """One FROM ... of the Dockerfile: its base image, name and instructions, in order."""

    image: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile: comments dropped, continued lines joined."""
    stages: list[Stage] = []
    logical = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    for line in logical.splitlines():
        if not line.strip():
            continue
        instruction, _, args = line.strip().partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            image, *rest = args.split()
            stages.append(Stage(image, rest[1] if [w.upper() for w in rest[:1]] == ["AS"] else ""))
        else:
            stages[-1].instructions.append((instruction, args.strip()))
    return stages


def go_builds(stage: Stage) -> list[tuple[str, list[str]]]:
    """Each ``RUN go build`` of ``stage`` as (the WORKDIR it runs in, its argv)."""
    builds = []
    workdir = "/"
    for instruction, args in stage.instructions:
        if instruction == "WORKDIR":
            workdir = args
        elif instruction == "RUN" and args.startswith("go build"):
            builds.append((workdir, shlex.split(args)))
    return builds


def env(stage: Stage) -> dict[str, str]:
    variables = {}
    for args in stage.args("ENV"):
        for pair in shlex.split(args):
            name, _, value = pair.partition("=")
            variables[name] = value
    return variables


def copies(stage: Stage) -> list[list[str]]:
    return [shlex.split(args) for args in stage.args("COPY")]


def version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


STAGES = parse(DOCKERFILE.read_text())
GO_STAGE, FINAL = STAGES[0], STAGES[-1]


def built_names() -> dict[str, str]:
    """Each binary the go stage builds -> the directory its ``go build`` writes to."""
    packages = {package: name for name, (_, package) in BUILT.items()}
    built = {}
    for _, argv in go_builds(GO_STAGE):
        output = argv[argv.index("-o") + 1]
        for word in argv[argv.index("-o") + 2 :]:
            built[packages[word]] = output
    return built


def binary_name(package: str) -> str:
    """What ``go build -o DIR/`` names a package's binary: its last element, or the one before
    a major version suffix (``.../kustomize/v5`` is ``kustomize``)."""
    parts = package.split("/")
    return parts[-2] if re.fullmatch(r"v[0-9]+", parts[-1]) else parts[-1]


def test_parse_joins_continued_lines_and_names_stages() -> None:
    stages = parse("FROM a:1 AS x\n# note\nRUN one \\\n    two\nFROM b:2\nUSER 1\n")
    assert [(s.image, s.name) for s in stages] == [("a:1", "x"), ("b:2", "")]
    assert stages[0].instructions == [("RUN", "one      two")]
    assert stages[1].args("USER") == ["1"]


def test_a_go_stage_then_the_image() -> None:
    assert len(STAGES) == 2
    assert GO_STAGE.image.startswith("golang:")
    assert GO_STAGE.name


def test_the_go_builds_are_envtests_from_the_pinned_modules() -> None:
    builds = go_builds(GO_STAGE)
    assert builds, "the go stage builds nothing"
    for workdir, argv in builds:
        module = REPO_ROOT / Path(workdir).relative_to(SOURCE_ROOT)
        names = [name for name, (_, package) in BUILT.items() if package in argv]
        assert names, f"{argv} builds none of controllers.binaries.BUILT"
        assert {BUILT[name][0] for name in names} == {module}, f"{argv} runs in {workdir}"
        # The module's pins (and the build worker's sources) are copied in before it builds.
        relative = f"{module.relative_to(REPO_ROOT)}/"
        assert [relative, "./"] in copies(GO_STAGE)
        output = argv[argv.index("-o") + 1]
        assert output.endswith("/"), "-o names a directory, so each binary keeps its own name"
        assert argv == go_build_command(names, output)


def test_the_builder_go_is_new_enough_for_every_module_it_builds() -> None:
    image_version = GO_STAGE.image.split(":")[1].split("-")[0]
    for workdir, _ in go_builds(GO_STAGE):
        go_mod = REPO_ROOT / Path(workdir).relative_to(SOURCE_ROOT) / "go.mod"
        directive = re.search(r"^go (\S+)$", go_mod.read_text(), re.MULTILINE)
        assert directive is not None
        assert version(image_version) >= version(directive[1])[:2], go_mod


def test_both_stages_are_on_one_debian_release() -> None:
    """The Go binaries link the C library of the stage that built them."""
    releases = {stage.image.rsplit("-", 1)[1] for stage in STAGES}
    assert len(releases) == 1, releases


def test_every_binary_a_controller_runs_is_where_binaries_looks() -> None:
    built = built_names()
    assert set(built) == CONTROLLER_BINARIES
    variables = env(FINAL)
    for name, output in built.items():
        destination = variables["WEIR_" + name.upper().replace("-", "_")]
        produced = output + binary_name(BUILT[name][1])
        assert ["--from=" + GO_STAGE.name, produced, destination] in copies(FINAL)


def test_python_is_the_one_the_project_targets() -> None:
    image_version = FINAL.image.split(":")[1].split("-")[0]
    assert FINAL.image.startswith("python:")
    assert "-slim" in FINAL.image
    assert image_version == PYPROJECT["tool"]["mypy"]["python_version"]
    minimum = PYPROJECT["project"]["requires-python"].removeprefix(">=")
    assert version(image_version) >= version(minimum)


def test_pip_installs_the_whole_project_as_pyproject_describes_it() -> None:
    copied: set[str] = set()
    workdir = "/"
    for instruction, args in FINAL.instructions:
        argv = shlex.split(args)
        if instruction == "WORKDIR":
            workdir = args
        elif instruction == "COPY" and not argv[0].startswith("--from="):
            copied |= set(argv[:-1])
        elif instruction == "RUN" and "pip install" in args:
            break
    else:
        pytest.fail("no pip install")
    assert argv == ["pip", "install", "--no-cache-dir", "."]
    assert workdir == SOURCE_ROOT
    packages = {
        pattern.removesuffix("*")
        for pattern in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    # Every package, and what setuptools reads to build the project, is there before it.
    assert copied == {f"{package}/" for package in packages} | {
        "pyproject.toml",
        PYPROJECT["project"]["readme"],
    }
    assert len([args for args in FINAL.args("RUN") if "pip install" in args]) == 1


def test_apt_installs_only_what_the_set_up_installs() -> None:
    setup = (REPO_ROOT / "hack" / "setup.sh").read_text()
    set_up_packages = set(re.findall(r"packages\+=\((\S+)\)", setup))
    for args in FINAL.args("RUN"):
        for command in args.split("&&"):
            argv = shlex.split(command)
            if argv[:2] == ["apt-get", "install"]:
                installed = {word for word in argv[2:] if not word.startswith("-")}
                assert installed <= set_up_packages, installed - set_up_packages


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    """The Deployments say runAsNonRoot, which the kubelet checks only against a number."""
    (user,) = FINAL.args("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) != 0
    assert not gid or gid.isdigit()
