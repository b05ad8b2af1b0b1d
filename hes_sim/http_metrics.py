"""A small asyncio HTTP server for ``/metrics`` (Prometheus text format) and ``/healthz``.

Runs on the event loop, so it needs no thread and stops with the head-end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Self

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)
MAX_REQUEST_HEAD = 8192


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        host: str,
        port: int,
        healthy: Callable[[], bool],
    ) -> None:
        self._registry = registry
        self._host = host
        self._port = port
        self._healthy = healthy
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("metrics server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)
        log.info("metrics_listening", url=f"http://{self._host}:{self.port}/metrics")
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            status, content_type, body = self._respond(method, path.split("?", 1)[0])
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
            ValueError,
            ConnectionError,
        ):
            status, content_type, body = "400 Bad Request", "text/plain", b"bad request\n"
        try:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode("latin-1")
                + body
            )
            await writer.drain()
        except ConnectionError:
            pass  # the scraper went away; nothing to tell it
        finally:
            writer.close()

    def _respond(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == "/healthz":
            if self._healthy():
                return "200 OK", "text/plain", b"ok\n"
            return "503 Service Unavailable", "text/plain", b"broker not connected\n"
        return "404 Not Found", "text/plain", b"not found\n"
