"""A real TLS server that requires a client certificate, for the clients that must present one.

``MutualTLSFront`` listens on ``127.0.0.1`` with a serving certificate of a test CA and refuses
any client without a certificate that CA issued (``ssl.CERT_REQUIRED``). Behind it, either a
plain TCP upstream gets the decrypted bytes both ways (MinIO, which cannot require client
certificates itself), or, without one, every request is answered ``200 ok``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from tests.testpki import TLSFiles

__all__ = ["MutualTLSFront"]


class MutualTLSFront:
    """Mutual TLS on ``127.0.0.1:<port>`` (``endpoint``) in front of ``upstream``.

    ``clients`` lists the subject common name of each client certificate accepted.
    """

    def __init__(self, files: TLSFiles, upstream: tuple[str, int] | None = None) -> None:
        self.files = files
        self.upstream = upstream
        self.port = 0
        self.clients: list[str] = []
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.files.ca))
        context.load_cert_chain(self.files.server_cert, self.files.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=context)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The handshake is done, so the certificate was presented and verified.
        certificate = writer.get_extra_info("peercert") or {}
        self.clients += [
            value
            for rdn in certificate.get("subject", ())
            for key, value in rdn
            if key == "commonName"
        ]
        try:
            if self.upstream is None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until the reader's end, then close the writer (and so the other direction)."""
    try:
        while chunk := await reader.read(64 * 1024):
            writer.write(chunk)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()
