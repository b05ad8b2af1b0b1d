"""Reads stored against reads exported, per meter: the check that an export lost nothing.

Runs on the store's connection (``store.run_sql(reconcile)``). Needs both
``block_load_reads`` and ``export_outbox``. A read is matched to its export by the outbox
key ``read:{meter_id}:{interval_end}``, looked up through the primary keys on both sides,
so the cost is one index probe per stored read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hes_sim.hes.export.outbox import INTERVAL_READ
from hes_sim.hes.sql import Connection, Dialect


@dataclass(frozen=True, slots=True)
class MeterReconciliation:
    meter_id: str
    stored: int  # block-load reads in the store
    enqueued: int  # of those, with an interval_read in the outbox
    exported: int  # of those, delivered
    orphaned: int = 0  # interval_reads in the outbox whose read is not in the store

    @property
    def not_enqueued(self) -> int:
        """Stored reads no export will ever carry (stored before the outbox was wired)."""
        return self.stored - self.enqueued

    @property
    def pending(self) -> int:
        return self.enqueued - self.exported

    @property
    def complete(self) -> bool:
        return self.exported == self.stored and self.orphaned == 0


_STORED = """
SELECT r.meter_id, count(*), count(o.key), count(o.delivered_at)
FROM block_load_reads AS r
LEFT JOIN export_outbox AS o ON o.key = 'read:' || r.meter_id || ':' || r.interval_end
GROUP BY r.meter_id
"""
# the interval end an export names, from its JSON payload
_INTERVAL_END: dict[Dialect, str] = {
    "sqlite": "json_extract(o.payload, '$.interval_end')",
    "postgresql": "CAST(CAST(o.payload AS JSON) ->> 'interval_end' AS BIGINT)",
}
_ORPHANED = {
    dialect: f"""
SELECT o.meter_id, count(*) FROM export_outbox AS o
WHERE o.kind = ? AND NOT EXISTS (
    SELECT 1 FROM block_load_reads AS r
    WHERE r.meter_id = o.meter_id AND r.interval_end = {interval_end}
)
GROUP BY o.meter_id
"""  # noqa: S608 - constant expressions only
    for dialect, interval_end in _INTERVAL_END.items()
}


def reconcile(db: Connection, meter_ids: Iterable[str] | None = None) -> list[MeterReconciliation]:
    """Per meter (of ``meter_ids``, or every meter with a read or an export), by meter id."""
    counts: dict[str, list[int]] = {}
    for meter_id, stored, enqueued, exported in db.execute(_STORED):
        counts[str(meter_id)] = [int(stored), int(enqueued), int(exported), 0]
    for meter_id, orphaned in db.execute(_ORPHANED[db.dialect], (INTERVAL_READ,)):
        counts.setdefault(str(meter_id), [0, 0, 0, 0])[3] = int(orphaned)
    wanted = sorted(counts) if meter_ids is None else sorted(set(meter_ids))
    return [MeterReconciliation(m, *counts.get(m, [0, 0, 0, 0])) for m in wanted]
