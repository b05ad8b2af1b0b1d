"""Where exports go: one protocol for every sink, and what a delivery came to.

The exporter delivers at least once (a crash between a delivery and its being marked in
the outbox means it is delivered again), so every sink is idempotent by record key: the
file sinks skip a key they have written, the webhook sends the keys for the endpoint to
apply once, the CIM sink names a batch's file by its keys.

Sinks: ``CsvSink`` and ``JsonLinesSink`` (``files``), ``CimXmlSink`` (``cim``),
``WebhookSink`` (``webhook``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hes_sim.hes.export.outbox import ExportRecord


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    key: str
    ok: bool
    reason: str = ""
    retriable: bool = False  # a failure worth trying again (the sink down, busy, slow)

    @classmethod
    def delivered(cls, key: str) -> DeliveryResult:
        return cls(key, ok=True)

    @classmethod
    def failed(cls, key: str, reason: str, *, retriable: bool) -> DeliveryResult:
        return cls(key, ok=False, reason=reason, retriable=retriable)


class Sink(Protocol):
    name: str  # for logs and figures: "csv", "webhook", ...

    async def deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
        """Deliver each record (a result per record, any order); raise only for a bug: the
        exporter takes an exception as a retriable failure of the whole batch."""
        ...


def all_failed(
    records: Sequence[ExportRecord], reason: str, *, retriable: bool
) -> list[DeliveryResult]:
    return [DeliveryResult.failed(r.key, reason, retriable=retriable) for r in records]


def all_delivered(records: Sequence[ExportRecord]) -> list[DeliveryResult]:
    return [DeliveryResult.delivered(r.key) for r in records]
