"""A throwaway GnuPG home per operation, so that keys of one object never serve another's.

:func:`gnupg_home` makes a private scratch directory with an empty GnuPG home inside it,
yields a :class:`GnuPGHome` to import keys into and run ``gpg`` against, and on the way out
stops any agent that ``gpg`` (or a program like ``sops`` given ``GNUPGHOME``) started there
and removes the directory. Every ``gpg`` run is bounded by a timeout, and leaves no process
behind (:mod:`controllers.child`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from controllers import child

__all__ = ["GnuPGError", "GnuPGHome", "gnupg_home"]

TIMEOUT_SECONDS = 30.0
# gpg-agent's sockets live in the home, and a Unix socket path holds at most 107 bytes; past
# that gpg only says it cannot connect to the agent, and private keys fail to import.
_MAX_SOCKET_PATH = 107
_HOME_IN_ROOT = len("/weir-gpg-12345678/gnupg/S.gpg-agent.browser")


class GnuPGError(Exception):
    """``gpg`` could not be run or did not finish in time."""


@dataclass(frozen=True)
class GnuPGHome:
    """A GnuPG home (``home``) inside a private scratch directory (``root``) that callers may
    also use for their own temporary files."""

    root: Path
    home: Path

    async def gpg(
        self, *args: str, stdin: bytes | None = None, timeout: float = TIMEOUT_SECONDS
    ) -> tuple[int, str]:
        """Run ``gpg --batch`` on this home; return its exit code and standard output."""
        argv = ["gpg", "--batch", "--no-tty", "--homedir", str(self.home), *args]
        try:
            done = await child.run(argv, stdin=stdin, timeout=timeout)
        except child.ChildError as err:
            raise GnuPGError(str(err)) from None
        return done.returncode, done.stdout.decode(errors="replace")

    async def import_key(self, armored: bytes | str) -> bool:
        """Import one armored key (public or private); False if gpg refused it."""
        data = armored.encode() if isinstance(armored, str) else armored
        code, _ = await self.gpg("--import", stdin=data)
        return code == 0


def _short_temp_dir() -> str | None:
    """The system temp directory when the agent's sockets fit under it, else ``/tmp``."""
    if len(tempfile.gettempdir()) + _HOME_IN_ROOT <= _MAX_SOCKET_PATH:
        return None
    return "/tmp"  # noqa: S108 - a private mkdtemp directory, only for its short path


@contextlib.asynccontextmanager
async def gnupg_home() -> AsyncIterator[GnuPGHome]:
    """A fresh, empty GnuPG home, its agent stopped and its directory removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="weir-gpg-", dir=_short_temp_dir()))
    home = root / "gnupg"
    try:
        home.mkdir(mode=0o700)
        yield GnuPGHome(root, home)
    finally:
        await _stop_agent(home)
        shutil.rmtree(root, ignore_errors=True)


async def _stop_agent(home: Path) -> None:
    # An agent outlives the gpg that started it; with its home deleted it would linger. Its
    # socket may live under /run/user rather than the home, so ask gpgconf rather than look.
    if not shutil.which("gpgconf"):
        return
    with contextlib.suppress(child.ChildError):
        await child.run(
            ["gpgconf", "--homedir", str(home), "--kill", "all"], timeout=TIMEOUT_SECONDS
        )
