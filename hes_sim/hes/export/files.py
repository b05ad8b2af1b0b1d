"""Append-only file sinks, CSV and JSON Lines, that write each record key once.

The keys already in the file are read from the file itself at the first delivery (no
separate index that could disagree with it), so a record delivered again, after a restart
too, is acknowledged without being written twice. A line without its newline at the end
of the file is a write torn by a crash: it was never acknowledged, so it is cut off and
the record is written again whole. Each batch is flushed and fsynced before it is
acknowledged: a record marked delivered is on disk.

The disk work runs in a worker thread (the event loop never waits on the disk); a lock
keeps one batch at a time on the file, even if the caller was cancelled meanwhile.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import structlog

from hes_sim.hes.export.outbox import ExportRecord
from hes_sim.hes.export.sinks import DeliveryResult, all_failed

log = structlog.get_logger(__name__)

INTERVAL_READ_COLUMNS = (
    "meter_id",
    "interval_end",
    "interval_s",
    "wh_import",
    "wh_export",
    "vah_import",
    "vah_export",
    "voltage_v",
    "current_a",
)


class _KeyedAppendFile:
    """One record per line after an optional header line; the key is known from a line."""

    name = "file"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._keys: set[str] | None = None  # loaded at the first delivery
        self._broken: str | None = None  # why the file cannot be appended to
        self._lock = threading.Lock()

    async def deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
        return await asyncio.to_thread(self._deliver, records)

    def written(self) -> set[str]:
        """Every key in the file (blocking: for tests and tools)."""
        with self._lock:
            return set(self._load())

    # ------------------------------------------------------------ per format

    def _header(self) -> str | None:
        return None

    def _keys_in(self, text: str) -> set[str]:
        """The keys of the records in the file's text (sets ``_broken`` if it is not ours)."""
        raise NotImplementedError

    def _line(self, record: ExportRecord) -> str:
        """The record's line, newline included; ValueError when it cannot be written."""
        raise NotImplementedError

    # ------------------------------------------------------------ on the worker thread

    def _deliver(self, records: Sequence[ExportRecord]) -> list[DeliveryResult]:
        with self._lock:
            try:
                keys = self._load()
            except OSError as exc:
                return all_failed(records, f"cannot read {self.path}: {exc}", retriable=True)
            if self._broken is not None:
                # the file is not ours to append to; an operator must look (records park)
                return all_failed(records, self._broken, retriable=False)
            results: list[DeliveryResult] = []
            lines: list[str] = []
            batch_keys: set[str] = set()
            for record in records:
                if record.key in keys or record.key in batch_keys:
                    results.append(DeliveryResult.delivered(record.key))  # written before
                    continue
                try:
                    lines.append(self._line(record))
                except ValueError as exc:
                    results.append(DeliveryResult.failed(record.key, str(exc), retriable=False))
                    continue
                batch_keys.add(record.key)
                results.append(DeliveryResult.delivered(record.key))
            if lines:
                try:
                    self._append(lines)
                except OSError as exc:
                    # nothing of the batch counts as written; a torn tail is cut next time
                    self._keys = None
                    return all_failed(records, f"cannot write {self.path}: {exc}", retriable=True)
                keys.update(batch_keys)
            return results

    def _load(self) -> set[str]:
        if self._keys is None:
            keys: set[str] = set()
            if self.path.exists():
                self._cut_torn_tail()
                keys = self._keys_in(self.path.read_text(encoding="utf-8"))
            self._keys = keys
        return self._keys

    def _unreadable(self, line: int) -> None:
        # a line someone else wrote: its record, if it is one, may be written twice
        log.warning("export_file_line_unreadable", path=str(self.path), line=line)

    def _cut_torn_tail(self) -> None:
        with self.path.open("rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            f.seek(0)
            data = f.read()
            keep = data.rfind(b"\n") + 1  # 0 when there is no whole line at all
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        log.warning("export_file_torn_tail_cut", path=str(self.path), bytes=size - keep)

    def _append(self, lines: list[str]) -> None:
        header = self._header()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8", newline="") as f:
            if header is not None and f.tell() == 0:
                f.write(header)
            f.write("".join(lines))
            f.flush()
            os.fsync(f.fileno())


class CsvSink(_KeyedAppendFile):
    """``key,kind,<columns>`` with a header line written once; a record whose payload
    lacks a column is refused (not retried) rather than written with a hole."""

    name = "csv"

    def __init__(self, path: Path | str, columns: Sequence[str] = INTERVAL_READ_COLUMNS) -> None:
        super().__init__(path)
        self.columns = tuple(columns)

    def _header(self) -> str:
        return _csv_line(["key", "kind", *self.columns])

    def _keys_in(self, text: str) -> set[str]:
        # csv.reader over the whole text: a quoted value may span lines
        rows = csv.reader(io.StringIO(text, newline=""))
        header = next(rows, None)
        if header is not None and header != ["key", "kind", *self.columns]:
            self._broken = f"{self.path} has another header: {header!r}"[:300]
        keys = set()
        for row in rows:
            if row:
                keys.add(row[0])
            else:
                self._unreadable(rows.line_num)
        return keys

    def _line(self, record: ExportRecord) -> str:
        missing = [c for c in self.columns if c not in record.payload]
        if missing:
            raise ValueError(f"{record.kind} {record.key} has no {', '.join(missing)}")
        return _csv_line([record.key, record.kind, *(record.payload[c] for c in self.columns)])


class JsonLinesSink(_KeyedAppendFile):
    """One JSON object per line: key, kind, meter_id, created_at and the payload."""

    name = "jsonl"

    def _keys_in(self, text: str) -> set[str]:
        keys = set()
        for number, line in enumerate(text.splitlines(), start=1):
            try:
                keys.add(str(json.loads(line)["key"]))
            except (ValueError, KeyError, TypeError):
                self._unreadable(number)
        return keys

    def _line(self, record: ExportRecord) -> str:
        document = {
            "key": record.key,
            "kind": record.kind,
            "meter_id": record.meter_id,
            "created_at": record.created_at,
            "payload": record.payload,
        }
        return json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n"


def _csv_line(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()
