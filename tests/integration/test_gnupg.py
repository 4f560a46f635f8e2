"""The throwaway GnuPG home, with the real gpg."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllers.gnupg import gnupg_home

pytestmark = pytest.mark.integration


async def test_a_key_is_imported_into_a_home_of_its_own() -> None:
    async with gnupg_home() as home:
        code, _ = await home.gpg(
            "--passphrase", "", "--quick-gen-key", "a <a@weir.invalid>", "future-default"
        )
        assert code == 0
        _, armored = await home.gpg("--armor", "--export-secret-keys", "a@weir.invalid")

        async with gnupg_home() as other:
            assert await other.import_key(armored)
            _, listing = await other.gpg("--list-secret-keys", "--with-colons")
            assert "a@weir.invalid" in listing
            assert other.home != home.home


async def test_gpg_refuses_what_is_not_a_key() -> None:
    async with gnupg_home() as home:
        assert not await home.import_key("not a key")


async def test_the_home_is_removed_afterwards_even_on_error() -> None:
    roots: list[Path] = []

    async def use_and_fail() -> None:
        async with gnupg_home() as home:
            roots.append(home.root)
            (home.root / "scratch").write_text("x")
            assert home.home.stat().st_mode & 0o777 == 0o700
            raise RuntimeError

    with pytest.raises(RuntimeError):
        await use_and_fail()

    assert not roots[0].exists()


async def test_a_long_temp_dir_does_not_break_the_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Private keys go through gpg-agent, whose socket path must stay under 108 bytes."""
    long_dir = tmp_path / ("x" * 60) / ("y" * 60)
    long_dir.mkdir(parents=True)
    monkeypatch.setattr("tempfile.tempdir", str(long_dir))
    async with gnupg_home() as home:
        assert len(str(home.home / "S.gpg-agent.browser")) <= 107
        code, _ = await home.gpg(
            "--passphrase", "", "--quick-gen-key", "b <b@weir.invalid>", "future-default"
        )
        assert code == 0
