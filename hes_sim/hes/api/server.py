"""Serves the operator API in the head-end's own event loop with uvicorn.

``async with ApiServer(ops, token, tz) as api`` listens (on loopback by default, port 0
picks a free one: ``api.port``, ``api.url``) until the block ends. The listening socket is
bound here, before uvicorn runs, so that a port in use is a clear ``ApiSetupError`` and
not uvicorn's ``sys.exit``; uvicorn is kept off the process's logging set-up and its
signal handlers (the head-end owns both). Shutdown is two-phase: ask uvicorn to stop
(it finishes the requests in flight), then cancel it after a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import math
import socket
from collections.abc import Iterator
from datetime import tzinfo
from types import TracebackType
from typing import Self

import structlog
import uvicorn

from hes_sim.hes.api.app import ApiSetupError, create_app
from hes_sim.hes.operations import Operations

log = structlog.get_logger(__name__)
BACKLOG = 128
REAP_TIMEOUT_S = 1.0


class _EmbeddedUvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self.servers = []  # uvicorn sets it in startup(); _reap needs it even before

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self.ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn would take SIGINT and SIGTERM for itself; the process's owner decides
        yield


async def _reap(server: _EmbeddedUvicorn) -> None:
    """What uvicorn leaves behind when it is stopped past its graceful timeout (it cancels
    the requests but does not wait for them) or cancelled before or during its own shutdown
    (it skips it): listeners, connections and requests must not outlive the server."""
    for listener in server.servers:
        listener.close()  # idempotent: uvicorn's own shutdown may have done it
    for connection in list(server.server_state.connections):
        if not connection.transport.is_closing():  # uvicorn may have shut it down already
            connection.shutdown()  # closes an idle one; one answering closes once it has
    requests = set(server.server_state.tasks)
    for request in requests:
        request.cancel()
    if requests:
        await asyncio.wait(requests, timeout=REAP_TIMEOUT_S)
    for connection in list(server.server_state.connections):
        connection.transport.close()  # still open past the reaping: dropped


class ApiServer:
    def __init__(
        self,
        ops: Operations,
        token: str,
        tz: tzinfo,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        grace_s: float = 2.0,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.app = create_app(ops, token, tz)
        self._host = host
        self._requested_port = port
        # uvicorn counts its graceful-shutdown timeout in whole seconds
        self._grace_s = max(1, math.ceil(grace_s))
        self._start_timeout_s = start_timeout_s
        self._group = asyncio.TaskGroup()
        self._socket: socket.socket | None = None
        self._port: int | None = None  # the bound port, known once listening
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("operator API not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> Self:
        self._socket = await self._listen()
        self._port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,  # the project's structlog set-up stays as it is
            access_log=False,
            http="h11",
            ws="none",
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=self._grace_s,
        )
        server = self._server = _EmbeddedUvicorn(config)
        await self._group.__aenter__()
        task = self._task = self._group.create_task(
            server.serve(sockets=[self._socket]), name="api:uvicorn"
        )
        task.add_done_callback(lambda _: server.ready.set())  # a failed start wakes us too
        try:
            await self._started(server, task)
        except BaseException as exc:
            try:
                await self.__aexit__(type(exc), exc, exc.__traceback__)
            except Exception as failure:
                raise ApiSetupError(
                    f"the operator API could not start on {self._where}: {failure!r}"
                ) from failure
            if isinstance(exc, TimeoutError):
                raise ApiSetupError(
                    f"the operator API did not start on {self._where} "
                    f"within {self._start_timeout_s} s"
                ) from exc
            raise
        log.info("api_listening", url=self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, task = self._server, self._task
        try:
            if server is not None:
                server.should_exit = True
            if task is not None and not task.done():
                # uvicorn polls should_exit every 0.1 s, then waits up to its own graceful
                # timeout for requests in flight; one more second is its margin
                _done, pending = await asyncio.wait({task}, timeout=self._grace_s + 1.0)
                if pending:
                    log.warning("api_shutdown_cancelling", grace_s=self._grace_s)
        finally:
            # every step below runs however this ends: a cancellation (SIGTERM, Ctrl-C, a
            # second one while uvicorn drains) re-raised by any of them must not skip the rest
            try:
                if task is not None:
                    task.cancel()  # no-op once it has finished
                # the block's own exception is the caller's: handed to the group it would
                # come back wrapped in an ExceptionGroup; the group raises only uvicorn's own
                await self._group.__aexit__(None, None, None)
            finally:
                try:
                    if server is not None:
                        await _reap(server)
                finally:
                    if self._socket is not None:
                        self._socket.close()

    async def _started(self, server: _EmbeddedUvicorn, task: asyncio.Task[None]) -> None:
        async with asyncio.timeout(self._start_timeout_s):
            await server.ready.wait()
        if task.done():
            raise ApiSetupError(f"the operator API stopped as it started on {self._where}")

    @property
    def _where(self) -> str:
        return f"{self._host}:{self._requested_port}"

    async def _listen(self) -> socket.socket:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                self._host, self._requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, kind, proto, _name, address = infos[0]
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            raise ApiSetupError(f"the operator API cannot listen on {self._where}: {exc}") from exc
        try:
            # as asyncio does for its own servers: a port left in TIME_WAIT by a previous
            # run can be bound again, while one that something listens on cannot
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise ApiSetupError(
                f"the operator API cannot listen on {self._where}: {exc.strerror or exc}"
            ) from exc
        if not ipaddress.ip_address(str(address[0]).split("%")[0]).is_loopback:  # %: scope id
            log.warning("api_not_loopback", host=self._host, hint="the token travels in clear")
        return sock
