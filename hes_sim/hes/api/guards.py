"""Two ASGI layers around the operator API: the bearer token check and the last-resort
error answer.

The token is checked in front of the application rather than in a route dependency so
that nothing runs before it: not the body parsing, not the route matching (probing an
unknown path answers 401 like a known one). Every path needs the token except the few
public ones: liveness, and the API's own documentation (``/openapi.json``, ``/docs``,
``/redoc``). Those are public on purpose: operators' tooling (client generators, API
consoles) fetches the schema before it has a token, so which routes exist is no secret;
what the token guards is every answer and every action behind them."""

from __future__ import annotations

import secrets

import structlog
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger(__name__)
UNAUTHORISED = "missing or invalid bearer token"
INTERNAL = "internal error; the head-end's log has the details"


class BearerAuth:
    def __init__(self, app: ASGIApp, token: str, public: frozenset[str]) -> None:
        self._app = app
        # bytes on both sides: compare_digest refuses str holding non-ASCII characters,
        # and a header may carry any latin-1 byte
        self._token = token.encode()
        self._public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self._public or self._authorised(scope):
            await self._app(scope, receive, send)
            return
        log.warning("api_unauthorised", method=scope["method"], path=scope["path"])
        response = JSONResponse(
            {"detail": UNAUTHORISED}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
        await response(scope, receive, send)

    def _authorised(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and secrets.compare_digest(
                    credentials.strip(), self._token
                )
        return False


class InternalErrors:
    """Answers an unexpected exception with a short 500 and logs it with its traceback.

    Starlette's own handler for ``Exception`` answers too but then re-raises, so the
    server would print the traceback through the standard library's logging instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, receive, tracking_send)
        except Exception:
            log.exception("api_request_failed", method=scope["method"], path=scope["path"])
            if started:
                raise  # half an answer is out; only dropping the connection is left
            response = JSONResponse({"detail": INTERNAL}, status_code=500)
            await response(scope, receive, send)
