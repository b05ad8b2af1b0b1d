"""Exports to billing and MDM systems that lose nothing: a transactional outbox in the read
store (outbox.py), idempotent sinks (files.py: CSV, JSON Lines; cim.py: IEC 61968-9
MeterReadings XML; webhook.py: an HTTP endpoint) and the exporter that drains one into the
other with back-off (exporter.py). Import the modules themselves: the store imports the
outbox, and the exporter imports the store."""
