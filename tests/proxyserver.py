"""A real forward HTTP proxy for the tests: Debian's tinyproxy, with basic auth, on loopback."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from controllers.envtest import die_with_parent, free_port

START_TIMEOUT_SECONDS = 10.0


class TinyProxy:
    """tinyproxy on 127.0.0.1; ``url`` includes the credentials, ``seen(port)`` reads its log."""

    def __init__(self) -> None:
        self.username = "weir-proxy"
        self.password = secrets.token_urlsafe(12)
        self.port = 0
        self._workdir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        assert self._workdir is not None
        path = self._workdir / "tinyproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def requests_to(self, port: int) -> int:
        """How many requests the proxy forwarded to 127.0.0.1:``port`` (GET or CONNECT)."""
        return sum(
            1
            for line in self.log.splitlines()
            if "Request (file descriptor" in line and (f"127.0.0.1:{port}" in line)
        )

    def start(self) -> None:
        self._workdir = Path(tempfile.mkdtemp(prefix="weir-proxy-"))
        self.port = free_port()
        config = self._workdir / "tinyproxy.conf"
        config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "Listen 127.0.0.1",
                    "Timeout 30",
                    "LogLevel Info",
                    "MaxClients 50",
                    "Allow 127.0.0.1",
                    f"BasicAuth {self.username} {self.password}",
                    "DisableViaHeader Yes",
                    f'PidFile "{self._workdir / "tinyproxy.pid"}"',
                    f'LogFile "{self._workdir / "tinyproxy.log"}"',
                ]
            )
            + "\n"
        )
        binary = shutil.which("tinyproxy")
        if binary is None:
            raise RuntimeError("tinyproxy is not installed (hack/setup.sh installs it)")
        self._process = subprocess.Popen(
            [binary, "-d", "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"tinyproxy exited with {self._process.returncode}")
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("tinyproxy did not start listening")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
