"""The operator API: a FastAPI application over the ``Operations`` protocol.

Routes only translate: HTTP in, a call on ``ops``, a schema out. Everything needs the
bearer token (see ``guards``) except ``PUBLIC_PATHS``: ``/healthz``, the liveness probe,
and the API's documentation, public on purpose so that tooling can read the schema.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Header, Query, Response, status

from hes_sim import __version__
from hes_sim.durations import parse_duration
from hes_sim.errors import HesSimError
from hes_sim.hes.api.accounts import account_routes
from hes_sim.hes.api.errors import add_error_answers
from hes_sim.hes.api.guards import BearerAuth, InternalErrors
from hes_sim.hes.api.schemas import (
    CommandList,
    CommandOut,
    CommandRequest,
    ConflictOut,
    ErrorOut,
    HealthOut,
    Liveness,
    MeterDetailOut,
    MeterOut,
    MeterPage,
    ReadOut,
    ReadPage,
    SilentMeterOut,
    SilentReport,
    iso,
)
from hes_sim.hes.commands.lifecycle import CommandState
from hes_sim.hes.operations import (
    DEFAULT_SILENCE_S,
    Connectivity,
    InvalidRequestError,
    MeterFilter,
    Operations,
)

API_PREFIX = "/api/v1"
PUBLIC_PATHS = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
MIN_TOKEN_LENGTH = 16
DEFAULT_READS_WINDOW_S = 24 * 3600.0
BEARER = "bearer"


class ApiSetupError(HesSimError):
    """The operator API cannot be built or served as asked; the message says why."""


class _OperatorApi(FastAPI):
    def openapi(self) -> dict[str, Any]:
        # the token is checked in front of the routes, so FastAPI does not know about it:
        # declare the scheme, and that every non-public path needs it
        if self.openapi_schema is None:
            schema = super().openapi()
            schema.setdefault("components", {})["securitySchemes"] = {
                BEARER: {"type": "http", "scheme": "bearer"}
            }
            for path, operations in schema["paths"].items():
                if path not in PUBLIC_PATHS:
                    for operation in operations.values():
                        operation["security"] = [{BEARER: []}]
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(ops: Operations, token: str, tz: tzinfo) -> FastAPI:
    if len(token) < MIN_TOKEN_LENGTH or token != token.strip():
        raise ApiSetupError(
            f"the operator API token must be at least {MIN_TOKEN_LENGTH} characters, "
            "without surrounding spaces"
        )
    app = _OperatorApi(
        title="hes-sim operator API",
        version=__version__,
        description="Meters, their reads and connectivity, and head-end commands. Times are "
        "ISO 8601 in the simulation's time zone; durations are simulated seconds. Every "
        f"{API_PREFIX} route needs `Authorization: Bearer <token>`.",
    )
    add_error_answers(app)
    app.add_middleware(BearerAuth, token=token, public=PUBLIC_PATHS)
    app.add_middleware(InternalErrors)  # added last: outermost, so it sees every failure

    @app.get(
        "/healthz",
        response_model=Liveness,
        responses={503: {"model": Liveness}},
        summary="liveness: 200 while the head-end is healthy, 503 otherwise",
    )
    async def healthz(response: Response) -> Liveness:
        if ops.health().healthy:
            return Liveness(status="ok")
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Liveness(status="unhealthy")

    app.include_router(_meter_routes(ops, tz))
    app.include_router(_command_routes(ops, tz))
    app.include_router(_report_routes(ops, tz))
    app.include_router(account_routes(_router("accounts"), ops, tz))
    return app


def _router(tag: str) -> APIRouter:
    return APIRouter(
        prefix=API_PREFIX,
        tags=[tag],
        responses={401: {"model": ErrorOut, "description": "missing or invalid bearer token"}},
    )


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}}
REFUSED: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
SUBMIT_REFUSED: dict[int | str, dict[str, Any]] = {
    **REFUSED,
    409: {"model": ConflictOut, "description": "the idempotency key was used for another request"},
}


def _meter_routes(ops: Operations, tz: tzinfo) -> APIRouter:
    router = _router("meters")

    @router.get("/meters", response_model=MeterPage, summary="meters, filtered, one page")
    async def list_meters(
        *,
        state: Connectivity | None = None,
        cell: str | None = None,
        feeder: str | None = None,
        dt: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> MeterPage:
        where = MeterFilter(
            state=state, cell=cell, feeder=feeder, dt=dt, limit=limit, offset=offset
        )
        meters = await ops.meters(where)
        return MeterPage(meters=[MeterOut.of(m, tz) for m in meters], limit=limit, offset=offset)

    @router.get(
        "/meters/{meter_id}",
        response_model=MeterDetailOut,
        responses=NOT_FOUND,
        summary="one meter: relay, last read, link statistics, open commands",
    )
    async def get_meter(meter_id: str) -> MeterDetailOut:
        return MeterDetailOut.of_detail(await ops.meter(meter_id), tz)

    @router.get(
        "/meters/{meter_id}/reads",
        response_model=ReadPage,
        responses=REFUSED,
        summary="a meter's block-load reads with start <= interval end < end",
    )
    async def get_reads(
        meter_id: str,
        start: Annotated[
            datetime | None,
            Query(description="ISO 8601; default 24 h before end; no offset: the API's zone"),
        ] = None,
        end: Annotated[
            datetime | None,
            Query(description="ISO 8601, exclusive; default the simulated now"),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> ReadPage:
        # every stored read ended before now (it was received after its interval ended)
        end_s = ops.health().sim_time if end is None else _seconds("end", end, tz)
        start_s = end_s - DEFAULT_READS_WINDOW_S if start is None else _seconds("start", start, tz)
        if start_s >= end_s:
            raise InvalidRequestError(
                f"start ({iso(start_s, tz)}) must be before end ({iso(end_s, tz)})"
            )
        reads = await ops.reads(meter_id, start_s, end_s, limit)
        return ReadPage(
            meter_id=meter_id,
            start=iso(start_s, tz),
            end=iso(end_s, tz),
            limit=limit,
            reads=[ReadOut.of(r, tz) for r in reads],
        )

    return router


def _command_routes(ops: Operations, tz: tzinfo) -> APIRouter:
    router = _router("commands")

    @router.post(
        "/commands",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=CommandOut,
        responses=SUBMIT_REFUSED,
        summary="submit a command; the head-end carries it out and its state tells how far",
    )
    async def submit_command(
        body: CommandRequest,
        response: Response,
        idempotency_key: Annotated[
            str | None,
            Header(alias="Idempotency-Key", min_length=1, max_length=200),
        ] = None,
    ) -> CommandOut:
        if (
            idempotency_key is not None
            and body.idempotency_key is not None
            and idempotency_key != body.idempotency_key
        ):
            raise InvalidRequestError(
                "the Idempotency-Key header and the body's idempotency_key differ"
            )
        parameters: dict[str, object] = dict(body.parameters)
        command = await ops.submit(
            body.meter_id,
            body.type,
            idempotency_key=idempotency_key or body.idempotency_key,
            deadline_s=body.deadline_s,
            parameters=parameters,
        )
        response.headers["Location"] = f"{API_PREFIX}/commands/{command.command_id}"
        return CommandOut.of(command, tz)

    @router.get(
        "/commands/{command_id}",
        response_model=CommandOut,
        responses=NOT_FOUND,
        summary="one command with its full history",
    )
    async def get_command(command_id: str) -> CommandOut:
        return CommandOut.of(await ops.command(command_id), tz)

    @router.get("/commands", response_model=CommandList, summary="commands, filtered")
    async def list_commands(
        meter_id: str | None = None,
        state: CommandState | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> CommandList:
        commands = await ops.commands(meter_id, state, limit)
        return CommandList(commands=[CommandOut.of(c, tz) for c in commands])

    return router


def _report_routes(ops: Operations, tz: tzinfo) -> APIRouter:
    router = _router("reports")

    @router.get(
        "/reports/non-communicating",
        response_model=SilentReport,
        responses={422: {"model": ErrorOut}},
        summary="meters not heard from for at least silent_for",
    )
    async def non_communicating(
        silent_for: Annotated[
            str | None,
            Query(description="a duration: 3600, '90m', '24h', '1d' (default 24h)"),
        ] = None,
    ) -> SilentReport:
        try:
            silent_s = DEFAULT_SILENCE_S if silent_for is None else parse_duration(silent_for)
        except ValueError as exc:
            raise InvalidRequestError(f"silent_for: {exc}") from exc
        meters = await ops.non_communicating(silent_s)
        return SilentReport(
            silent_for_s=silent_s,
            as_of=iso(ops.health().sim_time, tz),
            meters=[SilentMeterOut.of(m, tz) for m in meters],
        )

    @router.get("/health", response_model=HealthOut, summary="the head-end's state")
    async def health() -> HealthOut:
        return HealthOut.of(ops.health(), tz)

    return router


def _seconds(name: str, at: datetime, tz: tzinfo) -> float:
    """Simulated Unix seconds; a time without an offset is in the API's zone. Refused if
    the answer could not show it back in that zone (in year 1 or after year 9999 there)."""
    try:
        seconds = (at if at.tzinfo is not None else at.replace(tzinfo=tz)).timestamp()
        datetime.fromtimestamp(seconds, tz)
    except (OverflowError, ValueError, OSError) as exc:
        raise InvalidRequestError(f"{name}: {at.isoformat()} is out of range") from exc
    return seconds
