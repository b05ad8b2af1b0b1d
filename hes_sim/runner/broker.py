"""A private mosquitto on a free loopback port, started and stopped by the run.

Configured for a simulator: mosquitto's defaults (20 messages in flight, 1,000 queued per
client) silently drop messages for a subscriber that falls behind, so both are raised.
Persistence is off: mosquitto 2.0.11 did not restore an MQTT v5 session from its
database after a restart here, so a restart loses what the broker held, as a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Self

import structlog

from hes_sim.broker_address import BrokerAddress
from hes_sim.errors import BrokerError
from hes_sim.pipe_frames import end_children

log = structlog.get_logger(__name__)

INSTALL_HINT = (
    "mosquitto is not installed: install it with 'sudo apt-get install mosquitto' "
    "(or your system's package manager), or pass --broker mqtt://host:port"
)
CONFIG_TEMPLATE = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1000
max_queued_messages 1000000
max_queued_bytes 0
max_keepalive 65535
set_tcp_nodelay true
connection_messages false
log_dest stderr
log_type error
log_type warning
log_type notice
user {user}
"""


def find_mosquitto() -> str:
    for candidate in (
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BrokerError(INSTALL_HINT)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class PrivateMosquitto:
    """``async with PrivateMosquitto() as broker``: ``broker.address`` is where it listens."""

    def __init__(self, port: int | None = None, start_timeout_s: float = 10.0) -> None:
        self._binary = find_mosquitto()
        self._port = port
        self._start_timeout_s = start_timeout_s
        self._dir = tempfile.TemporaryDirectory(prefix="hes-sim-mosquitto-")
        self._process: asyncio.subprocess.Process | None = None
        self.address = BrokerAddress("127.0.0.1", 0)

    @property
    def pid(self) -> int:
        if self._process is None:
            raise BrokerError("mosquitto is not running")
        return self._process.pid

    @property
    def log_path(self) -> Path:
        return Path(self._dir.name) / "mosquitto.log"

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            self._dir.cleanup()
            raise
        return self

    async def __aexit__(self, *_exc_info: object) -> None:
        try:
            await self.stop()
        finally:
            self._dir.cleanup()

    async def start(self) -> None:
        """Start (or start again, on the same port) and wait until it accepts connections."""
        port = self._port or free_port()
        config = Path(self._dir.name) / "mosquitto.conf"
        config.write_text(CONFIG_TEMPLATE.format(port=port, user=getpass.getuser()))
        with self.log_path.open("ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                self._binary,
                "-c",
                str(config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
        self._port = port
        self.address = BrokerAddress("127.0.0.1", port)
        await self._wait_ready()
        log.info("broker_started", broker=str(self.address), pid=self._process.pid)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self._start_timeout_s
        delay = 0.01
        while True:
            if self._process is not None and self._process.returncode is not None:
                raise BrokerError(f"mosquitto exited at start: {self._log_tail()}")
            try:
                _reader, writer = await asyncio.open_connection(
                    self.address.host, self.address.port
                )
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"mosquitto did not listen on {self.address} within "
                        f"{self._start_timeout_s:g} s: {self._log_tail()}"
                    ) from None
                await asyncio.sleep(delay)  # readiness probe back-off, bounded by the deadline
                delay = min(delay * 2, 0.2)
            else:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
                return

    async def stop(self, kill: bool = False) -> None:
        """Stop the broker: SIGTERM (or SIGKILL, to simulate a crash), then reap it."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        if kill:
            process.kill()
        else:
            process.terminate()
        await end_children([process], 10)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    def _log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip()
        except OSError:
            return "(no log)"
        return " | ".join(text.splitlines()[-3:]) or "(empty log)"
