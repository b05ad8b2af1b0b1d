"""The billing system a run exports to when no URL is given: an HTTP endpoint on loopback
that applies each record once by its key, as an idempotent billing adapter does, and that
the scenario can take down and bring back on the same port."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from typing import Any

import structlog

log = structlog.get_logger(__name__)
MAX_BODY = 64 * 1024 * 1024


class BillingEndpoint:
    def __init__(self) -> None:
        self.applied: dict[str, dict[str, Any]] = {}
        self.applications: Counter[str] = Counter()  # how often each key was applied
        self.redelivered = 0  # records received again after being applied (ignored)
        self.batches = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/readings"

    @property
    def up(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        """Listen (again on the same port, after a stop)."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Gone at once, as a crashed service is: nothing in flight gets an answer."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # the client went away
        finally:
            if task is not None:
                self._connections.discard(task)
            with contextlib.suppress(RuntimeError):
                writer.transport.abort()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if ":" in h)
        }
        length = int(headers.get("content-length", "0"))
        if not head[0].startswith("POST ") or length > MAX_BODY:
            await _answer(writer, 400, {"error": "POST a JSON batch"})
            return False
        try:
            batch = json.loads(await reader.readexactly(length))
            records = batch["records"]
        except (ValueError, KeyError, TypeError):
            await _answer(writer, 400, {"error": "not a batch"})
            return True
        self.batches += 1
        for record in records:
            key = str(record.get("key", ""))
            if key in self.applied:
                self.redelivered += 1
                continue
            self.applied[key] = record
            self.applications[key] += 1
        await _answer(writer, 200, {"applied": len(records)})
        return True


async def _answer(writer: asyncio.StreamWriter, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    reason = {200: "OK", 400: "Bad Request"}[status]
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
