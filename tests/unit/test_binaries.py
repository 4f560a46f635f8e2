"""Where the cache keeps each binary: keyed by its module's pins, go.mod or module.txt."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from controllers.binaries import BUILT, DOWNLOADED_MODULE_PIN, cached_path


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("WEIR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_go_mod_module_is_keyed_by_its_go_mod(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "go.mod").write_text("module example.com/tool\n")
    monkeypatch.setitem(BUILT, "tool", (tmp_path, "example.com/tool/cmd/tool"))

    key = hashlib.sha256(b"module example.com/tool\n").hexdigest()[:12]
    assert cached_path("tool") == cache / f"tool-{key}" / "tool"


def test_a_downloaded_module_is_keyed_by_its_pin_and_rebuilt_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pin = tmp_path / DOWNLOADED_MODULE_PIN
    monkeypatch.setitem(BUILT, "gitea", (tmp_path, "code.gitea.io/gitea"))
    pin.write_text("code.gitea.io/gitea v1.27.3 h1:one=\n")
    before = cached_path("gitea")
    pin.write_text("code.gitea.io/gitea v1.27.4 h1:two=\n")

    assert cached_path("gitea") != before
    assert cached_path("gitea").name == "gitea"


def test_gitea_is_pinned_to_one_version_and_hash() -> None:
    module, _ = BUILT["gitea"]
    lines = (module / DOWNLOADED_MODULE_PIN).read_text().splitlines()
    pins = [line.split() for line in lines if line and not line.startswith("#")]

    assert len(pins) == 1
    path, version, module_hash = pins[0]
    assert (path, version) == ("code.gitea.io/gitea", "v1.27.3")
    assert module_hash.startswith("h1:")
