"""The head-end's refusals as HTTP answers: unknown ids 404, a reused idempotency key
409, a request refused before anything was done 422; each with a ``detail``."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hes_sim.hes.api.schemas import ConflictOut
from hes_sim.hes.operations import IdempotencyConflictError, InvalidRequestError, NotFoundError


def add_error_answers(app: FastAPI) -> None:
    app.add_exception_handler(NotFoundError, _not_found)
    # IdempotencyConflictError is an InvalidRequestError: Starlette answers with the
    # handler of the closest class in the exception's MRO, so the 409 wins over the 422
    app.add_exception_handler(IdempotencyConflictError, _conflict)
    app.add_exception_handler(InvalidRequestError, _invalid)


async def _not_found(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


async def _conflict(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, IdempotencyConflictError)  # noqa: S101 - registered for it only
    answer = ConflictOut(detail=str(exc), command_id=exc.command_id)
    return JSONResponse(answer.model_dump(), status_code=409)


async def _invalid(_request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=422)
