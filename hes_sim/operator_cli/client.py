"""Talking to the operator API: where it is, the token, and its answers turned into a
body or an ``OperatorError`` that ends the command with an exit code and one line."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from hes_sim.errors import HesSimError
from hes_sim.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_UNUSABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
HTTP_TIMEOUT_S = 10.0
Json = dict[str, Any]
LOCATIONS = frozenset({"body", "query", "path", "header"})  # where FastAPI found a bad value


class OperatorError(HesSimError):
    """Ends an operator command with ``exit_code`` and one line for the operator."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def api_url_of(args: argparse.Namespace, settings: Settings) -> str:
    url: str | None = args.api or settings.api_url
    if not url:
        raise OperatorError(
            EXIT_UNUSABLE,
            "where is the operator API? pass --api http://HOST:PORT or set HES_API_URL "
            "(the head-end prints its URL when it starts)",
        )
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise OperatorError(EXIT_UNUSABLE, f"{url!r} is not a URL: {exc}") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise OperatorError(EXIT_UNUSABLE, f"{url!r} is not an http:// or https:// URL")
    return url.rstrip("/")


def token_of(args: argparse.Namespace, settings: Settings) -> str:
    if args.token_file is not None:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise OperatorError(EXIT_UNUSABLE, f"cannot read the token file: {exc}") from exc
        source = str(args.token_file)
    elif settings.api_token is not None:
        token, source = settings.api_token.get_secret_value().strip(), "HES_API_TOKEN"
    else:
        raise OperatorError(
            EXIT_UNUSABLE,
            "no API token: set HES_API_TOKEN to the head-end's operator API token "
            "(or pass --token-file FILE)",
        )
    if not token or not token.isascii() or not token.isprintable():
        raise OperatorError(EXIT_UNUSABLE, f"the token in {source} is empty or not printable ASCII")
    return token


class ApiClient:
    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=HTTP_TIMEOUT_S,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self._http.close()

    def get(self, path: str, params: Mapping[str, object] | None = None) -> Json:
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        return self._send(self._http.build_request("GET", f"/api/v1{path}", params=query))

    def post(self, path: str, body: Json, headers: Mapping[str, str]) -> Json:
        request = self._http.build_request(
            "POST", f"/api/v1{path}", json=body, headers=dict(headers)
        )
        return self._send(request)

    def _send(self, request: httpx.Request) -> Json:
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise OperatorError(
                EXIT_UNUSABLE, f"cannot reach the operator API at {self.base_url}: {exc}"
            ) from exc
        if response.status_code == 401:
            raise OperatorError(
                EXIT_UNUSABLE,
                "the operator API refused the token (401): set HES_API_TOKEN (or --token-file) "
                "to the token the head-end was started with",
            )
        body = _json(response)
        if response.status_code == 404:
            raise OperatorError(EXIT_FAILED, f"not found: {_detail(body)}")
        if response.status_code == 422:
            raise OperatorError(EXIT_UNUSABLE, f"refused: {_detail(body)}")
        if response.status_code >= 400:
            raise OperatorError(
                EXIT_UNUSABLE,
                f"the operator API answered {response.status_code}: {_detail(body)}",
            )
        if not isinstance(body, dict):
            raise OperatorError(EXIT_UNUSABLE, f"unexpected answer from {self.base_url}")
        return body


def _json(response: httpx.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:200] or response.reason_phrase}


def _detail(body: object) -> str:
    detail = body.get("detail") if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors: name the field of each
        parts = []
        for error in detail:
            where = [str(p) for p in error.get("loc", []) if p not in LOCATIONS]
            message = str(error.get("msg", error))
            parts.append(f"{'.'.join(where)}: {message}" if where else message)
        return "; ".join(parts)
    return str(detail)


def segment(value: str) -> str:
    """An id as one path segment, so that an id holding '/' or '?' cannot change the route."""
    return quote(value, safe="")
