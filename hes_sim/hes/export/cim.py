"""IEC 61968-9 ``MeterReadings`` XML: one document per batch, for an MDM or billing system.

The document::

    <MeterReadings xmlns="http://iec.ch/TC57/2011/MeterReadings#">
      <MeterReading>                      one per meter in the batch
        <IntervalBlocks>                  one per reading type
          <IntervalReadings><timeStamp>…Z</timeStamp><value>…</value></IntervalReadings>
          <ReadingType ref="0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.0.72.0"/>
        </IntervalBlocks>
        <Meter><mRID>SP0000001</mRID></Meter>
      </MeterReading>
    </MeterReadings>

(children in the order the 61968-9 XSD sequences them). A reading's ``timeStamp`` is the
end of its interval, in UTC.

Each batch is written to a temporary file, fsynced and renamed into place, so a reader of
the directory sees whole documents only. The file is named by the batch's keys: the same
batch delivered again (after a crash before it was marked) replaces its own file instead
of adding a second copy. A consumer should still upsert by meter, reading type and time
stamp, as 61968-9 consumers do: a redelivery may be batched differently.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from hes_sim.hes.export.outbox import INTERVAL_READ, ExportRecord
from hes_sim.hes.export.sinks import DeliveryResult, all_delivered, all_failed

NS = "http://iec.ch/TC57/2011/MeterReadings#"

# CIM ReadingType codes (61968-9 Annex C, 18 fields): macroPeriod . aggregate .
# measuringPeriod . accumulation . flowDirection . commodity . measurementKind .
# interharmonic (2) . argument (2) . TOU . CPP . consumptionTier . phases . multiplier .
# unit . currency. Ours: measuringPeriod 2 (fifteen minutes) or 5 (thirty minutes, a
# block-load period IS 15959 allows), accumulation 4 (deltaData: a block-load entry is the
# interval's energy, not the register), flowDirection 1 (forward, i.e. import), commodity 1
# (electricity, secondary metered: at the consumer's meter), measurementKind 12 (energy),
# multiplier 0 and unit 72 (Wh) or 71 (VAh). Multiplier 0, not 3: the values are the
# meters' raw Wh and VAh (scaler 0), exported as they are. The often quoted
# 0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.3.72.0 is the same in kWh.
_MEASURING_PERIOD = {900: 2, 1800: 5}


def reading_type(interval_s: int, unit: int) -> str:
    period = _MEASURING_PERIOD[interval_s]
    return f"0.0.{period}.4.1.1.12.0.0.0.0.0.0.0.0.0.{unit}.0"


WH = 72
VAH = 71
# payload field -> CIM unit code, one IntervalBlock each
QUANTITIES = (("wh_import", WH), ("vah_import", VAH))


class CimXmlSink:
    name = "cim_xml"

    def __init__(self, directory: Path | str, prefix: str = "MeterReadings") -> None:
        self.directory = Path(directory)
        self.prefix = prefix

    async def deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        accepted: list[ExportRecord] = []
        for record in records:
            reason = _refusal(record)
            if reason is None:
                accepted.append(record)
            else:
                results.append(DeliveryResult.failed(record.key, reason, retriable=False))
        if not accepted:
            return results
        document = meter_readings(accepted)
        try:
            await asyncio.to_thread(self._write, document, self.file_name(accepted))
        except OSError as exc:
            return [*results, *all_failed(accepted, f"cannot write XML: {exc}", retriable=True)]
        return [*results, *all_delivered(accepted)]

    def file_name(self, records: Sequence[ExportRecord]) -> str:
        digest = hashlib.sha256("\n".join(sorted(r.key for r in records)).encode()).hexdigest()
        first = min(int(r.payload["interval_end"]) for r in records)
        stamp = datetime.fromtimestamp(first, UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{self.prefix}-{stamp}-{digest[:16]}.xml"

    def _write(self, document: ET.ElementTree[ET.Element], name: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                document.write(f, encoding="utf-8", xml_declaration=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, self.directory / name)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        # the rename itself must survive a crash before the outbox says delivered
        directory = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def meter_readings(records: Sequence[ExportRecord]) -> ET.ElementTree[ET.Element]:
    """The ``MeterReadings`` document of ``interval_read`` records."""
    # the namespace is declared as the default one on the root and the elements are
    # written unprefixed, as 61968-9 examples are; ElementTree's default_namespace option
    # cannot be used: it refuses the unqualified ``ref`` attribute the schema asks for
    root = ET.Element("MeterReadings", xmlns=NS)
    by_meter: defaultdict[str, list[ExportRecord]] = defaultdict(list)
    for record in records:
        by_meter[str(record.payload["meter_id"])].append(record)
    for meter_id in sorted(by_meter):
        reads = sorted(by_meter[meter_id], key=lambda r: int(r.payload["interval_end"]))
        reading = ET.SubElement(root, "MeterReading")
        # a meter whose period changed within a batch gets a block per period
        periods = sorted({int(r.payload["interval_s"]) for r in reads})
        for field, unit in QUANTITIES:
            for period in periods:
                block = ET.SubElement(reading, "IntervalBlocks")
                for read in (r for r in reads if int(r.payload["interval_s"]) == period):
                    item = ET.SubElement(block, "IntervalReadings")
                    _text(item, "timeStamp", _utc(int(read.payload["interval_end"])))
                    _text(item, "value", str(int(read.payload[field])))
                ET.SubElement(block, "ReadingType", ref=reading_type(period, unit))
        meter = ET.SubElement(reading, "Meter")
        _text(meter, "mRID", meter_id)
    ET.indent(root)
    return ET.ElementTree(root)


def _refusal(record: ExportRecord) -> str | None:
    if record.kind != INTERVAL_READ:
        return f"the MeterReadings sink carries {INTERVAL_READ} only, not {record.kind}"
    payload = record.payload
    missing = [f for f in ("meter_id", "interval_end", "interval_s") if f not in payload]
    missing += [f for f, _unit in QUANTITIES if f not in payload]
    if missing:
        return f"{record.key} has no {', '.join(missing)}"
    if int(payload["interval_s"]) not in _MEASURING_PERIOD:
        return f"{record.key}: no CIM measuring period for {payload['interval_s']} s"
    return None


def _text(parent: ET.Element, name: str, text: str) -> None:
    ET.SubElement(parent, name).text = text


def _utc(unix_s: int) -> str:
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
