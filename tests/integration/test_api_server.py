"""``ApiServer`` stopped the hard way: its owner cancelled while a request is in flight."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from hes_sim.hes.api import ApiServer
from tests.fake_operations import TOKEN, TZ, FakeOperations


def port_is_free(port: int) -> bool:
    # SO_REUSEADDR as the server itself binds: only a socket still listening refuses it,
    # not the connections left in TIME_WAIT
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


@pytest.mark.parametrize("pause_s", [0.0, 0.3], ids=["before-shutdown", "during-shutdown"])
async def test_a_cancelled_owner_leaves_no_socket_and_no_task(pause_s: float):
    """Cancelled twice (Ctrl-C then SIGTERM, or an outer timeout): the second one lands
    while the server waits for uvicorn, before or during its graceful shutdown."""
    ops = FakeOperations(hold=asyncio.Event())  # meters() never returns
    started = asyncio.Event()
    port = 0
    before = asyncio.all_tasks()

    async def owner() -> None:
        nonlocal port
        async with ApiServer(ops, TOKEN, TZ, grace_s=1.0) as server:
            port = server.port
            started.set()
            await asyncio.Event().wait()

    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        serving = asyncio.create_task(owner())
        async with asyncio.timeout(10):
            await started.wait()
        request = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/api/v1/meters"))
        async with asyncio.timeout(10):
            await ops.entered.wait()
        serving.cancel()
        await asyncio.sleep(pause_s)
        serving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await serving
        async with asyncio.timeout(5):  # the held request was given up on, not left hanging
            try:
                answer = await request
            except httpx.HTTPError:
                pass  # the connection was dropped
            else:
                assert answer.status_code == 500
    leaked = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert leaked == []
    assert port_is_free(port)
