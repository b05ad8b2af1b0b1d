"""Prepaid accounts: when a consumer with no credit may be disconnected (``policy``), the
account's balance, alerts and state (``account``, ``alerts``). Pure: no I/O; the caller
passes simulated Unix seconds and the local time zone."""
