"""`hes-sim gateway` driven by gurux-dlms's own client over a TCP socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from gurux_dlms import GXDateTime
from gurux_dlms.objects import (
    GXDLMSClock,
    GXDLMSDisconnectControl,
    GXDLMSProfileGeneric,
    GXDLMSRegister,
)

from hes_sim.keyring import FleetKeyring
from hes_sim.runner.broker import free_port
from tests.gurux_peer import GuruxSession, secure_client

SECRET = "gateway test fleet secret"  # noqa: S105 - a test secret
METER = "SP0000007"


@pytest.fixture
def gateway() -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hes_sim.cli", "gateway", "--meter", METER, "--port", str(port)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "HES_FLEET_SECRET": SECRET},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line, line
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)


def tcp_transport(sock: socket.socket):
    def exchange(frame: bytes) -> bytes:
        sock.sendall(frame)
        header = _read(sock, 8)
        return header + _read(sock, int.from_bytes(header[6:8], "big"))

    return exchange


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("gateway closed the connection")
        data += chunk
    return data


def test_gurux_client_reads_and_switches_a_gateway_meter(gateway: int):
    keyring = FleetKeyring(SECRET.encode())
    with socket.create_connection(("127.0.0.1", gateway), timeout=10) as sock:
        hes = GuruxSession(secure_client(keyring.keys_for(METER), b"HES00001"), tcp_transport(sock))
        hes.associate()

        clock = hes.read(GXDLMSClock("0.0.1.0.0.255"), 2)
        assert isinstance(clock, GXDateTime)
        assert abs(clock.value.timestamp() - datetime.now().timestamp()) < 60  # noqa: DTZ005

        energy = GXDLMSRegister("1.0.1.8.0.255")
        hes.read(energy, 3)
        assert hes.read(energy, 2) > 0  # a day of history

        profile = GXDLMSProfileGeneric("1.0.99.1.0.255")
        hes.read(profile, 3)
        now = clock.value
        reply = hes.request(
            hes.client.readRowsByRange(profile, now - timedelta(hours=3), now - timedelta(hours=2))
        )
        hes.client.updateValue(profile, 2, reply.value)
        assert len(profile.buffer) == 4  # four 15-minute intervals end in that hour
        assert all(row[3] >= 0 for row in profile.buffer)

        relay = GXDLMSDisconnectControl("0.0.96.3.10.255")
        assert hes.request(relay.remoteDisconnect(hes.client)).error == 0
        assert hes.read(relay, 2) is False
        assert hes.request(relay.remoteReconnect(hes.client)).error == 0
        assert hes.read(relay, 2) is True
        hes.release()


def test_gateway_refuses_to_start_without_a_fleet_secret():
    env = {k: v for k, v in os.environ.items() if k != "HES_FLEET_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "hes_sim.cli", "gateway", "--meter", METER],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "HES_FLEET_SECRET" in result.stderr
