"""The operator CLI as a user runs it, against a real ``ApiServer`` over a fake head-end:
output, ``--json``, exit codes and one-line errors; and the server's own start and stop."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from hes_sim.hes.api import ApiServer, ApiSetupError
from hes_sim.hes.commands.lifecycle import CommandType
from hes_sim.hes.operations import Connectivity, MeterFilter
from hes_sim.runner.broker import free_port
from tests.fake_operations import HISTORY_ID, T0, TOKEN, TZ, FakeOperations


@dataclass
class Result:
    code: int
    out: str
    err: str


@dataclass
class Api:
    server: ApiServer
    ops: FakeOperations


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    ops = FakeOperations(advance=True)
    async with ApiServer(ops, TOKEN, TZ) as server:
        yield Api(server, ops)


async def hes_sim(*args: str, url: str | None, token: str | None = TOKEN) -> Result:
    """``hes-sim ARGS`` in a child process; the server keeps answering in this loop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HES_")}
    if url is not None:
        env["HES_API_URL"] = url
    if token is not None:
        env["HES_API_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hes_sim.cli", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


def one_clean_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


async def test_meter_list_as_a_table_and_as_json(api: Api):
    table = await hes_sim("meter", "list", url=api.server.url)
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0].split() == ["METER", "KIND", "STATE", "RELAY", "LAST", "SEEN", "CELL",
                                "FEEDER", "DT"]  # fmt: skip
    assert lines[1].split() == [
        "SP0000001", "single_phase", "online", "connected", "2026-11-28", "09:59:00+05:30",
        "C01", "F01", "DT01",
    ]  # fmt: skip
    assert lines[3].split()[:3] == ["SP0000003", "three_phase", "unknown"]
    # aligned: every row's RELAY column starts where its header does
    column = lines[0].index("RELAY")
    assert {line[column - 2 : column] for line in lines[1:4]} == {"  "}
    assert lines[-1] == "3 meters (offset 0, limit 100)"

    filtered = await hes_sim(
        "meter", "list", "--state", "offline", "--cell", "C01", "--limit", "5", "--json",
        url=api.server.url,
    )  # fmt: skip
    assert filtered.code == 0, filtered.err
    body = json.loads(filtered.out)
    assert [m["meter_id"] for m in body["meters"]] == ["SP0000002"]
    assert api.ops.calls[-1] == ("meters", MeterFilter(Connectivity.OFFLINE, "C01", limit=5))


async def test_meter_show_reads_and_silent(api: Api):
    shown = await hes_sim("meter", "show", "SP0000001", url=api.server.url)
    assert shown.code == 0, shown.err
    fields = {
        name.strip(): value.strip()
        for name, value in (line.split("  ", 1) for line in shown.out.splitlines())
    }
    assert (
        fields.items()
        >= {
            "meter": "SP0000001 (single_phase)",
            "state": "online since 2026-11-28 09:00:00+05:30",
            "relay": "connected",
            "uptime share": "97.5%",
            "delivery p95": "101.25 s",
            "last read": "interval ending 2026-11-28 09:45:00+05:30: "
            "231.5 V, 1.25 A, 101 Wh import",
            "open commands": "none",
        }.items()
    )

    reads = await hes_sim(
        "meter", "reads", "SP0000001", "--start", "2026-11-28T09:15:00+05:30",
        url=api.server.url,
    )  # fmt: skip
    assert reads.code == 0, reads.err
    assert reads.out.splitlines()[0].split()[:3] == ["INTERVAL", "END", "V"]
    assert [line.split()[1] for line in reads.out.splitlines()[1:3]] == [
        "09:15:00+05:30",
        "09:30:00+05:30",
    ]
    assert reads.out.splitlines()[-1] == (
        "3 reads of SP0000001 from 2026-11-28 09:15:00+05:30 to 2026-11-28 10:00:00+05:30"
    )
    assert api.ops.calls[-1] == ("reads", ("SP0000001", T0 - 2700, T0, 1000))

    silent = await hes_sim("meter", "silent", "--for", "36h", url=api.server.url)
    assert silent.code == 0, silent.err
    rows = [line.split() for line in silent.out.splitlines()]
    assert rows[1][:2] == ["SP0000002", "2026-11-26"]
    assert rows[1][-1] == "2d"
    assert rows[2] == ["SP0000003", "never", "3d"]
    assert silent.out.splitlines()[-1] == (
        "2 meters silent for 1.5d or more as of 2026-11-28 10:00:00+05:30"
    )
    assert api.ops.calls[-1] == ("non_communicating", 36 * 3600.0)


async def test_submit_and_wait_until_confirmed(api: Api):
    result = await hes_sim(
        "command", "submit", "SP0000001", "reconnect", "--key", "k1", "--deadline", "30m",
        "--param", "threshold_w=5000", "--param", "note=paid at counter", "--wait",
        url=api.server.url,
    )  # fmt: skip
    assert result.code == 0, result.err
    submitted = api.ops.calls[0]
    assert submitted == (
        "submit",
        ("SP0000001", CommandType.RECONNECT, "k1", 1800.0,
         {"threshold_w": 5000, "note": "paid at counter"}),
    )  # fmt: skip
    lines = result.out.splitlines()
    assert lines[0] == "command cmd-0001: reconnect SP0000001"
    states = [line.split()[2] for line in lines[1:-1]]
    assert states == ["created", "queued", "sent", "acknowledged", "confirmed"]
    assert "attempt 1" in lines[3]
    assert lines[-1] == "command cmd-0001 confirmed"


async def test_wait_ends_with_exit_1_when_the_command_fails(api: Api):
    result = await hes_sim(
        "command", "submit", "SP0000003", "disconnect", "--wait", url=api.server.url
    )
    assert result.code == 1, result.err
    assert result.out.splitlines()[-1] == "command cmd-0001 failed (negative_response)"

    as_json = await hes_sim(
        "command", "submit", "SP0000003", "disconnect", "--wait", "--json", url=api.server.url
    )
    assert as_json.code == 1
    body = json.loads(as_json.out)
    assert (body["command_id"], body["state"], body["done"]) == ("cmd-0002", "failed", True)


async def test_command_show_and_list(api: Api):
    shown = await hes_sim("command", "show", HISTORY_ID, url=api.server.url)
    assert shown.code == 0, shown.err
    assert "state            confirmed" in shown.out
    history = shown.out.split("history:\n", 1)[1].splitlines()
    assert [line.split()[2] for line in history[1:]] == [
        "created", "queued", "sent", "queued", "sent", "acknowledged", "confirmed",
    ]  # fmt: skip

    listed = await hes_sim(
        "command", "list", "--meter", "SP0000001", "--state", "confirmed", "--json",
        url=api.server.url,
    )  # fmt: skip
    assert listed.code == 0, listed.err
    assert [c["command_id"] for c in json.loads(listed.out)["commands"]] == [HISTORY_ID]

    table = await hes_sim("command", "list", url=api.server.url)
    assert table.out.splitlines()[0].split()[:4] == ["ID", "METER", "TYPE", "STATE"]
    assert table.out.splitlines()[-1] == "1 command"


async def test_not_found_exits_1(api: Api):
    for args in (("meter", "show", "XX9"), ("command", "show", "cmd?state=failed")):
        result = await hes_sim(*args, url=api.server.url)
        assert result.code == 1
        assert one_clean_line(result.err).startswith("hes-sim: not found: no ")
    assert api.ops.calls[-1] == ("command", "cmd?state=failed")  # the id stayed a path segment


async def test_refused_request_exits_2_naming_the_field(api: Api):
    result = await hes_sim(
        "command", "submit", "SP0000001", "reconnect", "--deadline", "0", url=api.server.url
    )
    assert result.code == 2
    assert one_clean_line(result.err) == (
        "hes-sim: refused: deadline_s: Input should be greater than 0"
    )
    usage = await hes_sim("command", "submit", "SP0000001", "explode", url=api.server.url)
    assert usage.code == 2
    assert "invalid choice: 'explode'" in usage.err


async def test_missing_or_wrong_token_exits_2(api: Api, tmp_path: Path):
    missing = await hes_sim("meter", "list", url=api.server.url, token=None)
    assert missing.code == 2
    assert "set HES_API_TOKEN" in one_clean_line(missing.err)
    assert api.ops.calls == []

    wrong = await hes_sim("meter", "list", url=api.server.url, token="not-the-token-at-all")  # noqa: S106
    assert wrong.code == 2
    line = one_clean_line(wrong.err)
    assert "refused the token (401)" in line
    assert "HES_API_TOKEN" in line
    assert api.ops.calls == []

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    from_file = await hes_sim(
        "meter", "list", "--token-file", str(token_file), url=api.server.url, token=None
    )
    assert from_file.code == 0, from_file.err


async def test_unreachable_or_unset_api_exits_2():
    nothing = f"http://127.0.0.1:{free_port()}"
    result = await hes_sim("meter", "list", url=nothing)
    assert result.code == 2
    assert one_clean_line(result.err).startswith(
        f"hes-sim: cannot reach the operator API at {nothing}"
    )

    unset = await hes_sim("command", "list", url=None)
    assert unset.code == 2
    assert "HES_API_URL" in one_clean_line(unset.err)

    flag = await hes_sim("command", "list", "--api", "127.0.0.1:8080", url=None)
    assert flag.code == 2
    assert "not an http:// or https:// URL" in one_clean_line(flag.err)


async def test_server_reports_its_port_and_serves_health():
    ops = FakeOperations()
    async with ApiServer(ops, TOKEN, TZ, host="127.0.0.1", port=0) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=server.url) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            assert (await client.get("/api/v1/health")).status_code == 401
            authorised = await client.get(
                "/api/v1/health", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert authorised.json()["meters_known"] == 3
            # the idle keep-alive connection must not hold the shutdown up


async def test_a_port_in_use_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ApiSetupError, match=f"cannot listen on 127.0.0.1:{port}"):
            async with ApiServer(FakeOperations(), TOKEN, TZ, port=port):
                pytest.fail("started on a port in use")


async def test_shutdown_cancels_a_request_that_does_not_finish():
    ops = FakeOperations(hold=asyncio.Event())  # meters() never returns
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        async with ApiServer(ops, TOKEN, TZ, grace_s=0.5) as server:
            request = asyncio.create_task(client.get(f"{server.url}/api/v1/meters"))
            async with asyncio.timeout(10):
                await ops.entered.wait()
        # the block has ended: uvicorn stopped, the request was given up on
        try:
            answer = await request
        except httpx.HTTPError:
            pass  # the connection was dropped: as good an answer as a 500
        else:
            assert answer.status_code == 500


async def test_account_show_and_recharge(api: Api):
    shown = await hes_sim("account", "show", "SP0000002", url=api.server.url)
    assert shown.code == 0, shown.err
    assert "disconnected" in shown.out
    assert "₹-3.50" in shown.out
    paid = await hes_sim(
        "account", "recharge", "SP0000002", "--amount", "200", "--reference", "UPI-9",
        url=api.server.url,
    )  # fmt: skip
    assert paid.code == 0, paid.err
    assert one_clean_line(paid.out) == (
        "SP0000002: balance ₹196.50, reconnect_pending; reconnect command cmd-on-1"
    )
    assert ("recharge", ("SP0000002", Decimal("200"), "UPI-9")) in api.ops.calls
    unknown = await hes_sim("account", "show", "SP0000404", url=api.server.url)
    assert unknown.code == 1
    assert "no account" in one_clean_line(unknown.err)
