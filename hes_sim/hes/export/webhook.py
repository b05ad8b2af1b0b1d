"""Export by HTTP: a JSON batch POSTed to the billing adapter's endpoint.

The body is ``{"keys": [...], "records": [{"key", "kind", "meter_id", "created_at",
"payload"}, ...]}`` with an ``Idempotency-Key`` header naming the batch (a digest of its
keys): the endpoint is expected to apply each record once by its key, so a batch sent
again (its answer lost, or the exporter restarted before marking it) changes nothing.

What an answer means (for every record of the batch):

* 2xx: delivered;
* 408, 429 and 5xx, a timeout, a refused or dropped connection: not delivered, worth
  retrying (the endpoint is down, busy or slow);
* any other status (4xx: the endpoint refuses the batch itself): not worth retrying as
  it is; the records park in the outbox with the reason, for an operator.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import httpx
import structlog

from hes_sim.hes.export.outbox import ExportRecord
from hes_sim.hes.export.sinks import DeliveryResult, all_delivered, all_failed

log = structlog.get_logger(__name__)

RETRIABLE_STATUS = frozenset({408, 429})


def batch_key(records: Sequence[ExportRecord]) -> str:
    """The same records give the same key, whatever their order."""
    digest = hashlib.sha256("\n".join(sorted(r.key for r in records)).encode()).hexdigest()
    return f"batch-{digest[:32]}"


def batch_body(records: Sequence[ExportRecord]) -> dict[str, Any]:
    return {
        "keys": [r.key for r in records],
        "records": [
            {
                "key": r.key,
                "kind": r.kind,
                "meter_id": r.meter_id,
                "created_at": r.created_at,
                "payload": r.payload,
            }
            for r in records
        ],
    }


class WebhookSink:
    """``async with WebhookSink(url) as sink``: owns its HTTP client (connection pool)."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 10.0,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``timeout_s``: wall seconds for each of connect, write and read."""
        self.url = url
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s),
            headers=dict(headers or {}),
            transport=transport,
            # a proxy from the environment has no business between the head-end and billing
            trust_env=False,
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
        if not records:
            return []
        idempotency_key = batch_key(records)
        try:
            response = await self._client.post(
                self.url,
                json=batch_body(records),
                headers={"Idempotency-Key": idempotency_key},
            )
        except httpx.TimeoutException as exc:
            return all_failed(records, f"timeout: {type(exc).__name__}", retriable=True)
        except httpx.TransportError as exc:
            # refused, reset, dropped before the answer: the endpoint may have applied
            # the batch or not; sending it again is safe either way
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return all_failed(records, reason, retriable=True)
        status = response.status_code
        if response.is_success:
            return all_delivered(records)
        reason = f"HTTP {status}: {response.text[:200]}"
        retriable = status in RETRIABLE_STATUS or status >= 500
        if not retriable:
            log.warning("export_webhook_refused", url=self.url, status=status,
                        batch=idempotency_key, records=len(records))  # fmt: skip
        return all_failed(records, reason, retriable=retriable)
