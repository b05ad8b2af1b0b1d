"""The export sinks: files written once per key across restarts, CIM XML, webhook answers."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest

from hes_sim.hes.export import outbox
from hes_sim.hes.export.cim import NS, CimXmlSink
from hes_sim.hes.export.files import INTERVAL_READ_COLUMNS, CsvSink, JsonLinesSink
from hes_sim.hes.export.outbox import ExportRecord
from hes_sim.hes.export.webhook import WebhookSink, batch_key
from hes_sim.hes.records import ReadRecord

T0 = 1_800_000_000  # 2027-01-15T08:00:00Z, on the 15-minute grid
WH_15MIN = "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.0.72.0"
VAH_15MIN = "0.0.2.4.1.1.12.0.0.0.0.0.0.0.0.0.71.0"


def reading(meter_id: str, k: int, wh: int) -> ExportRecord:
    read = ReadRecord(meter_id, T0 + k * 900, "single_phase", 231.0, 2.0, wh, 0, wh + 7, 0,
                      {"wh_import": wh}, T0 + k * 900 + 30.0)  # fmt: skip
    return outbox.read_record(read, created_at=T0 + k * 900 + 31.0)


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


RECORDS = [reading("SP1", 1, 120), reading("SP1", 2, 130), reading("SP2", 1, 55)]


@pytest.mark.parametrize("sink_type", [CsvSink, JsonLinesSink])
async def test_a_file_sink_writes_each_key_once_across_a_restart(tmp_path: Path, sink_type):
    path = tmp_path / "out" / "reads.export"
    first = sink_type(path)
    results = await first.deliver(RECORDS[:2])
    assert [(r.key, r.ok) for r in results] == [(RECORDS[0].key, True), (RECORDS[1].key, True)]
    again = await first.deliver([RECORDS[1]])  # redelivered, same process
    assert again[0].ok
    restarted = sink_type(path)  # a new head-end process, the same file
    results = await restarted.deliver(RECORDS)
    assert all(r.ok for r in results)
    lines = path.read_text(encoding="utf-8").splitlines()
    header = 1 if sink_type is CsvSink else 0
    assert len(lines) == header + 3
    assert restarted.written() == {r.key for r in RECORDS}


async def test_csv_has_one_header_and_the_reads_columns(tmp_path: Path):
    path = tmp_path / "reads.csv"
    await CsvSink(path).deliver(RECORDS[:1])
    await CsvSink(path).deliver(RECORDS[1:])
    rows = list(csv.reader(path.open(encoding="utf-8", newline="")))
    assert rows[0] == ["key", "kind", *INTERVAL_READ_COLUMNS]
    assert [row[0] for row in rows[1:]] == [r.key for r in RECORDS]
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["kind"] == "interval_read"
    assert (first["meter_id"], first["interval_end"], first["wh_import"]) == (
        "SP1", str(T0 + 900), "120",
    )  # fmt: skip


async def test_a_write_torn_by_a_crash_is_cut_and_written_again(tmp_path: Path):
    path = tmp_path / "reads.jsonl"
    await JsonLinesSink(path).deliver(RECORDS[:1])
    with path.open("a", encoding="utf-8") as f:  # the crash: half a line, never acknowledged
        f.write('{"key":"' + RECORDS[1].key + '","kind":"interv')
    results = await JsonLinesSink(path).deliver(RECORDS[1:2])
    assert results[0].ok
    documents = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [d["key"] for d in documents] == [RECORDS[0].key, RECORDS[1].key]
    assert documents[1]["payload"]["wh_import"] == 130


async def test_csv_refuses_a_record_without_its_columns_and_a_foreign_file(tmp_path: Path):
    bill = ExportRecord("bill:SP1:2027-01", "monthly_bill", {"amount": 10}, T0, "SP1")
    [result] = await CsvSink(tmp_path / "reads.csv").deliver([bill])
    assert (result.ok, result.retriable) == (False, False)
    assert "meter_id" in result.reason
    foreign = tmp_path / "theirs.csv"
    foreign.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    [result] = await CsvSink(foreign).deliver(RECORDS[:1])
    assert (result.ok, result.retriable) == (False, False)
    assert "another header" in result.reason
    assert foreign.read_text(encoding="utf-8") == "a,b,c\n1,2,3\n"  # left as it was


async def test_cim_meter_readings_parse_back_with_their_structure(tmp_path: Path):
    sink = CimXmlSink(tmp_path / "cim")
    results = await sink.deliver(RECORDS)
    assert all(r.ok for r in results)
    [name] = names(tmp_path / "cim")  # one file per batch, no temporary left
    assert name.startswith("MeterReadings-20270115T081500Z-")
    root = ET.parse(tmp_path / "cim" / name).getroot()  # noqa: S314 - our own file
    ns = {"m": NS}
    assert root.tag == f"{{{NS}}}MeterReadings"
    readings = root.findall("m:MeterReading", ns)
    assert [r.findtext("m:Meter/m:mRID", namespaces=ns) for r in readings] == ["SP1", "SP2"]
    sp1 = readings[0]
    blocks = {
        b.find("m:ReadingType", ns).get("ref"): [
            (i.findtext("m:timeStamp", namespaces=ns), i.findtext("m:value", namespaces=ns))
            for i in b.findall("m:IntervalReadings", ns)
        ]
        for b in sp1.findall("m:IntervalBlocks", ns)
    }
    assert blocks == {
        WH_15MIN: [("2027-01-15T08:15:00Z", "120"), ("2027-01-15T08:30:00Z", "130")],
        VAH_15MIN: [("2027-01-15T08:15:00Z", "127"), ("2027-01-15T08:30:00Z", "137")],
    }
    # children in the schema's order: the blocks, then the meter
    assert [child.tag.split("}")[1] for child in sp1] == [
        "IntervalBlocks", "IntervalBlocks", "Meter",
    ]  # fmt: skip


async def test_cim_the_same_batch_again_replaces_its_file(tmp_path: Path):
    sink = CimXmlSink(tmp_path)
    await sink.deliver(RECORDS)
    await sink.deliver(list(reversed(RECORDS)))
    [name] = names(tmp_path)
    assert name.endswith(".xml")


async def test_cim_refuses_what_is_not_an_interval_read(tmp_path: Path):
    bill = ExportRecord("bill:SP1:2027-01", "monthly_bill", {"amount": 10}, T0, "SP1")
    results = await CimXmlSink(tmp_path).deliver([bill, RECORDS[0]])
    assert [(r.key, r.ok, r.retriable) for r in results] == [
        (bill.key, False, False), (RECORDS[0].key, True, False),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "ok", "retriable"),
    [(200, True, False), (204, True, False), (400, False, False), (409, False, False),
     (408, False, True), (429, False, True), (500, False, True), (503, False, True)],
)  # fmt: skip
async def test_webhook_answers(status: int, ok: bool, retriable: bool):
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, text="nope" if status >= 400 else "")

    transport = httpx.MockTransport(answer)
    async with WebhookSink("http://127.0.0.1:9/readings", transport=transport) as sink:
        results = await sink.deliver(RECORDS)
    assert [(r.ok, r.retriable) for r in results] == [(ok, retriable)] * 3
    [request] = seen
    assert request.headers["Idempotency-Key"] == batch_key(RECORDS)
    body = json.loads(request.content)
    assert body["keys"] == [r.key for r in RECORDS]
    assert body["records"][0]["payload"]["wh_import"] == 120


async def test_webhook_unreachable_or_slow_is_worth_retrying():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler in (refuse, slow):
        transport = httpx.MockTransport(handler)
        async with WebhookSink("http://127.0.0.1:9/r", transport=transport) as sink:
            [result] = await sink.deliver(RECORDS[:1])
        assert (result.ok, result.retriable) == (False, True)


def test_the_batch_key_does_not_depend_on_order():
    assert batch_key(RECORDS) == batch_key(list(reversed(RECORDS)))
    assert batch_key(RECORDS) != batch_key(RECORDS[:2])
