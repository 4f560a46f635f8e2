"""A TCP relay that can make its open connections go silent, like a half-open connection
behind a load balancer or a network partition (nothing flows, nothing is closed), or close
them, as a server or load balancer closes idle keep-alive connections."""

from __future__ import annotations

import asyncio
import contextlib


class SilentableRelay:
    """Relays 127.0.0.1:``port`` to 127.0.0.1:``target``; ``silence()`` freezes live links,
    ``drop()`` closes them."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.connections = 0
        self._flows: list[asyncio.Event] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def silence(self) -> None:
        """Connections open now stop relaying in both directions and are never closed."""
        for flow in self._flows:
            flow.clear()

    async def drop(self) -> None:
        """Close every connection open now, both ways; new ones are relayed as before."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        await self.drop()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        flow = asyncio.Event()
        flow.set()
        self._flows.append(flow)
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        try:
            await asyncio.gather(
                _pump(reader, upstream_writer, flow), _pump(upstream_reader, writer, flow)
            )
        finally:
            for stream in (writer, upstream_writer):
                stream.close()
                with contextlib.suppress(OSError, asyncio.CancelledError):
                    await stream.wait_closed()


async def _pump(
    source: asyncio.StreamReader, sink: asyncio.StreamWriter, flow: asyncio.Event
) -> None:
    while data := await source.read(65536):
        await flow.wait()
        sink.write(data)
        await sink.drain()
    await flow.wait()  # a silenced link does not pass the close on either
    sink.close()
