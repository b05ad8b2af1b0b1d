"""The operator API against a fake head-end: auth, routes, errors, rendering."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal

import httpx
import pytest
from structlog.testing import capture_logs

from hes_sim import __version__
from hes_sim.hes.api import ApiSetupError, create_app
from hes_sim.hes.commands.lifecycle import Command, CommandState, CommandType
from hes_sim.hes.operations import (
    DEFAULT_SILENCE_S,
    Connectivity,
    IdempotencyConflictError,
    MeterFilter,
)
from tests.fake_operations import HISTORY_ID, T0, TOKEN, TZ, FakeOperations

EXPECTED_ROUTES = {
    ("GET", "/api/v1/meters"),
    ("GET", "/api/v1/meters/{meter_id}"),
    ("GET", "/api/v1/meters/{meter_id}/reads"),
    ("POST", "/api/v1/commands"),
    ("GET", "/api/v1/commands"),
    ("GET", "/api/v1/commands/{command_id}"),
    ("GET", "/api/v1/reports/non-communicating"),
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/accounts/{meter_id}"),
    ("POST", "/api/v1/accounts/{meter_id}/recharges"),
}


def _api_routes() -> list[tuple[str, str]]:
    """Every /api/v1 operation the OpenAPI document lists: a new route is checked too."""
    schema = create_app(FakeOperations(), TOKEN, TZ).openapi()
    return sorted(
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        if path.startswith("/api/v1")
        for method in operations
    )


API_ROUTES = _api_routes()


@pytest.fixture
def ops() -> FakeOperations:
    return FakeOperations()


@pytest.fixture
async def client(ops: FakeOperations) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ops, TOKEN, TZ)),
        base_url="http://hes",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


def anonymous(ops: FakeOperations) -> httpx.AsyncClient:
    app = create_app(ops, TOKEN, TZ)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://hes")


def test_openapi_document_lists_every_route():
    assert set(API_ROUTES) == EXPECTED_ROUTES
    schema = create_app(FakeOperations(), TOKEN, TZ).openapi()
    assert schema["info"] == {
        "title": "hes-sim operator API",
        "version": __version__,
        "description": schema["info"]["description"],
    }
    assert "/healthz" in schema["paths"]
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    get_meter = schema["paths"]["/api/v1/meters/{meter_id}"]["get"]
    assert get_meter["security"] == [{"bearer": []}]
    assert {"401", "404"} <= set(get_meter["responses"])
    assert "security" not in schema["paths"]["/healthz"]["get"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        f"Bearer {TOKEN}x",
        "Bearer wrong-token-0123456789",
        "Bearer",
        f"Basic {TOKEN}",
        b"Bearer \xe9\xe9\xe9",  # not ASCII: still a plain 401, not a 500
    ],
    ids=["missing", "longer", "wrong", "empty", "basic", "latin1"],
)
@pytest.mark.parametrize(("method", "path"), API_ROUTES, ids=[" ".join(r) for r in API_ROUTES])
async def test_every_api_route_needs_the_token(
    ops: FakeOperations, method: str, path: str, authorization: str | bytes | None
):
    headers = {} if authorization is None else {"Authorization": authorization}
    url = re.sub(r"\{[^}]+\}", "SP0000001", path)
    async with anonymous(ops) as client:
        # a body that does not even parse: the token is checked before anything else
        answer = await client.request(method, url, headers=headers, content=b"{not json")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json() == {"detail": "missing or invalid bearer token"}
    assert ops.calls == []


async def test_unknown_api_paths_need_the_token_too(ops: FakeOperations):
    async with anonymous(ops) as client:
        assert (await client.get("/api/v1/nothing-here")).status_code == 401
        assert (await client.get("/api/v2/meters")).status_code == 401


async def test_healthz_needs_no_token(ops: FakeOperations):
    async with anonymous(ops) as client:
        ok = await client.get("/healthz")
        assert (ok.status_code, ok.json()) == (200, {"status": "ok"})
        ops.healthy = False
        down = await client.get("/healthz")
        assert (down.status_code, down.json()) == (503, {"status": "unhealthy"})


async def test_the_api_documentation_is_public_on_purpose(ops: FakeOperations):
    # operators' tooling reads the schema before it has a token: the routes are no secret
    async with anonymous(ops) as client:
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert (await client.get(path)).status_code == 200, path
        # anything else, even a path that does not exist, answers 401 and not 404
        assert (await client.get("/nothing-here")).status_code == 401
    assert ops.calls == []


def test_a_short_token_is_refused():
    with pytest.raises(ApiSetupError, match="at least 16 characters"):
        create_app(FakeOperations(), "short", TZ)


async def test_meter_list_passes_filters_through(client: httpx.AsyncClient, ops: FakeOperations):
    answer = await client.get(
        "/api/v1/meters",
        params={"state": "offline", "cell": "C01", "feeder": "F01", "dt": "DT02", "limit": 5,
                "offset": 0},
    )  # fmt: skip
    assert answer.status_code == 200
    assert ops.calls == [
        ("meters", MeterFilter(Connectivity.OFFLINE, "C01", "F01", "DT02", limit=5, offset=0))
    ]
    body = answer.json()
    assert (body["limit"], body["offset"]) == (5, 0)
    assert body["meters"] == [
        {
            "meter_id": "SP0000002",
            "kind": "single_phase",
            "cell": "C01",
            "feeder": "F01",
            "dt": "DT02",
            "state": "offline",
            "last_seen": "2026-11-26T10:00:00+05:30",
            "relay": "disconnected",
        }
    ]


async def test_meter_list_defaults(client: httpx.AsyncClient, ops: FakeOperations):
    body = (await client.get("/api/v1/meters")).json()
    assert ops.calls == [("meters", MeterFilter())]
    assert [m["meter_id"] for m in body["meters"]] == ["SP0000001", "SP0000002", "SP0000003"]
    assert body["meters"][2]["last_seen"] is None


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"state": "asleep"}, {"limit": "many"}],
)
async def test_meter_list_refuses_bad_filters(
    client: httpx.AsyncClient, ops: FakeOperations, params: dict[str, object]
):
    answer = await client.get("/api/v1/meters", params=params)
    assert answer.status_code == 422
    assert ops.calls == []


async def test_meter_detail(client: httpx.AsyncClient):
    answer = await client.get("/api/v1/meters/SP0000001")
    assert answer.status_code == 200
    body = answer.json()
    assert body["relay"] == "connected"
    assert body["state"] == "online"
    assert body["open_commands"] == []
    assert body["last_read"]["interval_end"] == "2026-11-28T09:45:00+05:30"
    assert body["last_read"]["received_at"] == "2026-11-28T09:46:35.500000+05:30"
    assert body["last_read"]["delivery_delay_s"] == 95.5
    assert body["link"] == {
        "state_since": "2026-11-28T09:00:00+05:30",
        "uptime_share": 0.975,
        "transitions": 4,
        "reads_stored": 3,
        "delivery_delay_p95_s": 101.25,
        "command_round_trip_p95_s": 12.5,
    }


@pytest.mark.parametrize(
    "url",
    ["/api/v1/meters/XX9", "/api/v1/meters/XX9/reads", "/api/v1/commands/cmd-nope"],
)
async def test_unknown_meter_or_command_is_404(client: httpx.AsyncClient, url: str):
    answer = await client.get(url)
    assert answer.status_code == 404
    assert answer.json()["detail"] in ("no meter 'XX9'", "no command 'cmd-nope'")


async def test_reads_window(client: httpx.AsyncClient, ops: FakeOperations):
    answer = await client.get(
        "/api/v1/meters/SP0000001/reads",
        params={"start": "2026-11-28T09:15:00+05:30", "end": "2026-11-28T04:00:00Z", "limit": 2},
    )
    assert answer.status_code == 200
    assert ops.calls == [("reads", ("SP0000001", T0 - 2700, T0 - 1800, 2))]
    body = answer.json()
    assert (body["start"], body["end"]) == (
        "2026-11-28T09:15:00+05:30",
        "2026-11-28T09:30:00+05:30",
    )
    assert [r["interval_end"] for r in body["reads"]] == ["2026-11-28T09:15:00+05:30"]


async def test_reads_default_to_the_day_before_the_simulated_now(
    client: httpx.AsyncClient, ops: FakeOperations
):
    body = (await client.get("/api/v1/meters/SP0000001/reads")).json()
    assert ops.calls == [("reads", ("SP0000001", T0 - 86400, T0, 1000))]
    assert len(body["reads"]) == 3
    # a time without an offset is in the API's zone
    await client.get("/api/v1/meters/SP0000001/reads", params={"start": "2026-11-28T09:00:00"})
    assert ops.calls[-1] == ("reads", ("SP0000001", T0 - 3600, T0, 1000))


@pytest.mark.parametrize(
    "params",
    [
        {"start": "2026-11-28T10:00:00+05:30", "end": "2026-11-28T09:00:00+05:30"},
        {"start": "yesterday"},
        {"limit": 0},
        {"start": "0001-01-01T00:00:00"},  # before the first time the API's zone can show
        {"end": "9999-12-31T23:59:59-12:00"},  # after the last
    ],
    ids=["reversed", "not-a-time", "limit", "year-1", "year-10000"],
)
async def test_reads_refuse_a_bad_window(
    client: httpx.AsyncClient, ops: FakeOperations, params: dict[str, object]
):
    answer = await client.get("/api/v1/meters/SP0000001/reads", params=params)
    assert answer.status_code == 422
    assert ops.calls == []


async def test_submit_command(client: httpx.AsyncClient, ops: FakeOperations):
    answer = await client.post(
        "/api/v1/commands",
        json={"meter_id": "SP0000002", "type": "reconnect", "parameters": {"why": "paid"}},
    )
    assert answer.status_code == 202
    body = answer.json()
    assert answer.headers["Location"] == f"/api/v1/commands/{body['command_id']}"
    assert ops.calls == [
        ("submit", ("SP0000002", CommandType.RECONNECT, None, 3600.0, {"why": "paid"}))
    ]
    assert body["state"] == "created"
    assert body["done"] is False
    assert body["created_at"] == "2026-11-28T10:00:00+05:30"
    assert body["deadline"] == "2026-11-28T11:00:00+05:30"
    assert body["history"] == [
        {"state": "created", "at": "2026-11-28T10:00:00+05:30", "detail": ""}
    ]


async def test_idempotency_key_header_reaches_the_head_end(
    client: httpx.AsyncClient, ops: FakeOperations
):
    request = {"meter_id": "SP0000001", "type": "disconnect", "deadline_s": 900}
    first = await client.post("/api/v1/commands", json=request, headers={"Idempotency-Key": "k1"})
    again = await client.post("/api/v1/commands", json=request, headers={"Idempotency-Key": "k1"})
    assert [call[1] for call in ops.calls] == [
        ("SP0000001", CommandType.DISCONNECT, "k1", 900.0, {}),
        ("SP0000001", CommandType.DISCONNECT, "k1", 900.0, {}),
    ]
    assert first.json()["command_id"] == again.json()["command_id"]
    assert first.json()["idempotency_key"] == "k1"
    # the key in the body works the same; the same key in both places is fine
    await client.post(
        "/api/v1/commands",
        json={**request, "idempotency_key": "k2"},
        headers={"Idempotency-Key": "k2"},
    )
    assert ops.calls[-1][1] == ("SP0000001", CommandType.DISCONNECT, "k2", 900.0, {})


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        ({"meter_id": "SP0000001", "type": "explode"}, {}),
        ({"meter_id": "SP0000001", "type": "reconnect", "deadline_s": 0}, {}),
        ({"meter_id": "SP0000001", "type": "reconnect", "deadline_s": -5}, {}),
        ({"meter_id": "SP0000001", "type": "reconnect", "deadline_s": "soon"}, {}),
        ({"meter_id": "SP0000001", "type": "reconnect", "deadline_s": 1e300}, {}),
        ({"meter_id": "SP0000001", "type": "reconnect", "deadline_s": 30 * 86400 + 1}, {}),
        ({"meter_id": "SP0000001", "type": "reconnect", "colour": "red"}, {}),
        ({"type": "reconnect"}, {}),
        (
            {"meter_id": "SP0000001", "type": "reconnect", "idempotency_key": "a"},
            {"Idempotency-Key": "b"},
        ),
    ],
    ids=[
        "type",
        "deadline-0",
        "deadline-negative",
        "deadline-text",
        "deadline-huge",
        "deadline-over-30-days",
        "extra",
        "no-meter",
        "two-keys",
    ],
)
async def test_submit_refuses_bad_requests(
    client: httpx.AsyncClient, ops: FakeOperations, body: dict[str, object], headers: dict[str, str]
):
    answer = await client.post("/api/v1/commands", json=body, headers=headers)
    assert answer.status_code == 422
    assert ops.calls == []


async def test_a_30_day_deadline_is_the_longest(client: httpx.AsyncClient, ops: FakeOperations):
    answer = await client.post(
        "/api/v1/commands",
        json={"meter_id": "SP0000001", "type": "reconnect", "deadline_s": 30 * 86400},
    )
    assert answer.status_code == 202
    assert answer.json()["deadline"] == "2026-12-28T10:00:00+05:30"


async def test_a_time_that_cannot_be_shown_does_not_break_a_listing(
    client: httpx.AsyncClient, ops: FakeOperations
):
    # stored before requests were bounded: far beyond the year 9999
    far = Command("cmd-far", "SP0000001", CommandType.RECONNECT, "key-far", T0, T0 + 1e300)
    ops.stored[far.command_id] = far
    with capture_logs() as logs:
        listing = await client.get("/api/v1/commands")
        one = await client.get("/api/v1/commands/cmd-far")
    assert (listing.status_code, one.status_code) == (200, 200)
    shown = {c["command_id"]: c for c in listing.json()["commands"]}
    assert shown["cmd-far"]["deadline"] == "9999-12-31T23:59:59.999999+05:30"  # the last one
    assert shown["cmd-far"]["created_at"] == "2026-11-28T10:00:00+05:30"
    assert one.json()["deadline"] == shown["cmd-far"]["deadline"]
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("api_time_unrenderable", "warning")
    ] * 2


async def test_submit_refused_by_the_head_end(client: httpx.AsyncClient, ops: FakeOperations):
    bad = await client.post(
        "/api/v1/commands",
        json={"meter_id": "SP0000001", "type": "time_sync", "parameters": {"bogus": 1}},
    )
    assert (bad.status_code, bad.json()) == (
        422,
        {"detail": "time_sync takes no parameter 'bogus'"},
    )
    unknown = await client.post("/api/v1/commands", json={"meter_id": "XX9", "type": "reconnect"})
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "no meter 'XX9'"})


async def test_a_key_reused_for_another_request_is_409(
    client: httpx.AsyncClient, ops: FakeOperations, monkeypatch: pytest.MonkeyPatch
):
    async def conflict(meter_id: str, kind: CommandType, **_: object) -> Command:
        ops.calls.append(("submit", (meter_id, kind)))
        raise IdempotencyConflictError(
            f"idempotency key 'k1' was used for a disconnect of {meter_id}", command_id=HISTORY_ID
        )

    monkeypatch.setattr(ops, "submit", conflict)
    answer = await client.post(
        "/api/v1/commands",
        json={"meter_id": "SP0000001", "type": "reconnect"},
        headers={"Idempotency-Key": "k1"},
    )
    assert (answer.status_code, answer.json()) == (
        409,
        {
            "detail": "idempotency key 'k1' was used for a disconnect of SP0000001",
            "command_id": HISTORY_ID,
        },
    )
    schema = create_app(FakeOperations(), TOKEN, TZ).openapi()
    assert "409" in schema["paths"]["/api/v1/commands"]["post"]["responses"]


async def test_command_history_in_order_with_iso_times(client: httpx.AsyncClient):
    body = (await client.get(f"/api/v1/commands/{HISTORY_ID}")).json()
    assert [step["state"] for step in body["history"]] == [
        "created", "queued", "sent", "queued", "sent", "acknowledged", "confirmed",
    ]  # fmt: skip
    times = [datetime.fromisoformat(step["at"]) for step in body["history"]]
    assert times == sorted(times)
    assert all(t.utcoffset() == TZ.utcoffset(None) for t in times)
    assert body["history"][0]["at"] == "2026-11-28T09:50:00+05:30"
    assert body["history"][3]["detail"].startswith("timeout: no answer; retry at")
    assert body["history"][4]["detail"] == "attempt 2"
    assert (body["state"], body["done"], body["attempts"], body["failure"]) == (
        "confirmed", True, 2, None,
    )  # fmt: skip
    assert body["deadline"] == "2026-11-28T10:50:00+05:30"


async def test_failure_reason_is_rendered(client: httpx.AsyncClient, ops: FakeOperations):
    ops.advance = True
    submitted = await client.post(
        "/api/v1/commands", json={"meter_id": "SP0000003", "type": "disconnect"}
    )
    command_id = submitted.json()["command_id"]
    for _ in range(3):
        body = (await client.get(f"/api/v1/commands/{command_id}")).json()
    assert (body["state"], body["failure"]) == ("failed", "negative_response")
    assert body["history"][-1]["detail"] == "negative_response: refused"


async def test_command_list_passes_filters_through(client: httpx.AsyncClient, ops: FakeOperations):
    body = (
        await client.get(
            "/api/v1/commands", params={"meter_id": "SP0000001", "state": "confirmed", "limit": 7}
        )
    ).json()
    assert ops.calls == [("commands", ("SP0000001", CommandState.CONFIRMED, 7))]
    assert [c["command_id"] for c in body["commands"]] == [HISTORY_ID]
    await client.get("/api/v1/commands")
    assert ops.calls[-1] == ("commands", (None, None, 100))
    assert (await client.get("/api/v1/commands", params={"state": "lost"})).status_code == 422


@pytest.mark.parametrize(
    ("silent_for", "seconds"),
    [(None, DEFAULT_SILENCE_S), ("90m", 5400.0), ("3600", 3600.0), ("1d", 86400.0)],
)
async def test_non_communicating_report(
    client: httpx.AsyncClient, ops: FakeOperations, silent_for: str | None, seconds: float
):
    params = {} if silent_for is None else {"silent_for": silent_for}
    answer = await client.get("/api/v1/reports/non-communicating", params=params)
    assert answer.status_code == 200
    assert ops.calls == [("non_communicating", seconds)]
    body = answer.json()
    assert body["silent_for_s"] == seconds
    assert body["as_of"] == "2026-11-28T10:00:00+05:30"
    assert {"meter_id": "SP0000003", "last_seen": None, "silent_for_s": 259200.0} in body["meters"]


async def test_non_communicating_refuses_a_bad_duration(client: httpx.AsyncClient):
    answer = await client.get("/api/v1/reports/non-communicating", params={"silent_for": "a bit"})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("silent_for: 'a bit' is not a duration")


async def test_health(client: httpx.AsyncClient):
    assert (await client.get("/api/v1/health")).json() == {
        "healthy": True,
        "broker_connected": True,
        "sim_time": "2026-11-28T10:00:00+05:30",
        "meters_known": 3,
        "meters_online": 1,
        "ingest_queue_depth": 0,
        "open_commands": 0,
    }


async def test_unexpected_errors_are_500_without_a_traceback(
    client: httpx.AsyncClient, ops: FakeOperations
):
    ops.failure = RuntimeError("database on fire at /secret/path")
    with capture_logs() as logs:
        answer = await client.get("/api/v1/meters")
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error; the head-end's log has the details"}
    assert "secret" not in answer.text
    assert [(e["event"], e["log_level"], e["path"]) for e in logs] == [
        ("api_request_failed", "error", "/api/v1/meters")
    ]


async def test_an_account_and_a_recharge_through_the_api(
    client: httpx.AsyncClient, ops: FakeOperations
):
    shown = await client.get("/api/v1/accounts/SP0000002")
    paid = await client.post(
        "/api/v1/accounts/SP0000002/recharges", json={"amount": "200.00", "reference": "UPI-77"}
    )
    unknown = await client.get("/api/v1/accounts/SP0000009")
    too_much = await client.post(
        "/api/v1/accounts/SP0000002/recharges", json={"amount": "99999.00", "reference": "U"}
    )
    refused = await client.post(
        "/api/v1/accounts/SP0000002/recharges", json={"amount": "200000.00", "reference": "U"}
    )
    no_reference = await client.post("/api/v1/accounts/SP0000002/recharges", json={"amount": 5})
    assert shown.status_code == 200
    assert shown.json()["state"] == "disconnected"
    assert [step["state"] for step in shown.json()["history"]] == ["postpaid", "disconnected"]
    assert [(a["threshold"], a["level"], a["balance"]) for a in shown.json()["alerts"]] == [
        ("0.30", "60.00", "58.10")
    ]
    assert paid.status_code == 201
    assert paid.json()["reconnect_command"] == "cmd-on-1"
    assert ("recharge", ("SP0000002", Decimal("200.00"), "UPI-77")) in ops.calls
    assert unknown.status_code == 404
    assert too_much.status_code == 201
    assert refused.status_code == 422  # the operations refused it: InvalidRequestError
    assert no_reference.status_code == 422  # the request schema refused it
