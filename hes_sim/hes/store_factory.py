"""Which store a location names: a PostgreSQL URL, or else a SQLite file."""

from __future__ import annotations

from pathlib import Path

from hes_sim.hes.pg_store import URL_SCHEMES, PgStore
from hes_sim.hes.store import SqliteStore, SqlStore


def open_store(
    location: str | Path,
    *,
    export_interval_s: int | None = None,
    on_loop: bool = False,
    upkeep: bool = True,
) -> SqlStore:
    """The store at ``location``, to be opened with ``async with``: ``postgresql://...``
    (or ``postgres://...``) is a PostgreSQL database, anything else a SQLite file path.
    ``on_loop`` and ``upkeep``: see :class:`SqlStore`."""
    if isinstance(location, str) and location.startswith(URL_SCHEMES):
        return PgStore(
            location, export_interval_s=export_interval_s, on_loop=on_loop, upkeep=upkeep
        )
    return SqliteStore(
        location, export_interval_s=export_interval_s, on_loop=on_loop, upkeep=upkeep
    )
