"""Commands in the store: one row per command, one row per transition (the audit trail).

Plain functions on a ``hes_sim.hes.sql.Connection`` (SQLite or PostgreSQL), run on the
store's thread through ``store.run_sql``. A command's idempotency key is unique: submitting it again
returns the first (the dispatcher refuses a key reused for another request).
"""

from __future__ import annotations

import json
from typing import Any

from hes_sim.hes.commands.lifecycle import (
    TERMINAL,
    Command,
    CommandState,
    CommandType,
    FailureReason,
    Transition,
)
from hes_sim.hes.sql import Connection

COMMAND_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    command_id      TEXT PRIMARY KEY,
    meter_id        TEXT NOT NULL,
    type            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    parameters      TEXT NOT NULL,  -- JSON
    created_at      DOUBLE PRECISION NOT NULL,  -- simulated Unix seconds
    deadline        DOUBLE PRECISION NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    failure         TEXT,
    result          TEXT            -- JSON, NULL until the command has one
);
CREATE INDEX IF NOT EXISTS commands_open ON commands (state, next_attempt_at);
-- the desk lists a meter's commands, newest first
CREATE INDEX IF NOT EXISTS commands_meter ON commands (meter_id, created_at);
CREATE TABLE IF NOT EXISTS command_transitions (
    command_id TEXT NOT NULL REFERENCES commands (command_id),
    seq        INTEGER NOT NULL,
    state      TEXT NOT NULL,
    at         DOUBLE PRECISION NOT NULL,
    detail     TEXT NOT NULL,
    PRIMARY KEY (command_id, seq)
) WITHOUT ROWID;
"""
_COLUMNS = (
    "command_id, meter_id, type, idempotency_key, parameters, created_at, deadline, state,"
    " attempts, next_attempt_at, failure, result"
)
_TERMINAL = tuple(state.value for state in TERMINAL)


def insert(db: Connection, command: Command) -> Command:
    """Store a new command, or return the one already stored under its idempotency key
    (the caller checks that it is the same request)."""
    existing = db.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE idempotency_key = ?",  # noqa: S608 - constant columns
        (command.idempotency_key,),
    ).fetchone()
    if existing is not None:
        return _load(db, existing)
    with db.transaction():
        db.execute(
            f"INSERT INTO commands ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            _row(command),
        )
        _append_transitions(db, command, 0)
    return command


def save(db: Connection, command: Command) -> None:
    """Write the command's state and the transitions not yet stored."""
    stored = db.execute(
        "SELECT count(*) FROM command_transitions WHERE command_id = ?", (command.command_id,)
    ).fetchone()[0]
    with db.transaction():
        db.execute(
            "UPDATE commands SET state = ?, attempts = ?, next_attempt_at = ?, failure = ?,"
            " result = ? WHERE command_id = ?",
            (
                command.state.value,
                command.attempts,
                command.next_attempt_at,
                command.failure.value if command.failure else None,
                _json_or_null(command.result),
                command.command_id,
            ),
        )
        _append_transitions(db, command, stored)


def load(db: Connection, command_id: str) -> Command | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE command_id = ?",  # noqa: S608
        (command_id,),
    ).fetchone()
    return None if row is None else _load(db, row)


def open_commands(db: Connection) -> list[Command]:
    """Every command not yet in a terminal state, by priority then age."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM commands WHERE state NOT IN (?, ?, ?)",  # noqa: S608
        _TERMINAL,
    ).fetchall()
    commands = [_load(db, row) for row in rows]
    return sorted(commands, key=lambda c: (c.priority, c.created_at))


def _row(command: Command) -> tuple[object, ...]:
    return (
        command.command_id,
        command.meter_id,
        command.type.value,
        command.idempotency_key,
        json.dumps(command.parameters, sort_keys=True),
        command.created_at,
        command.deadline,
        command.state.value,
        command.attempts,
        command.next_attempt_at,
        command.failure.value if command.failure else None,
        _json_or_null(command.result),
    )


def _json_or_null(value: dict[str, object] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True)


def _append_transitions(db: Connection, command: Command, stored: int) -> None:
    db.executemany(
        "INSERT INTO command_transitions (command_id, seq, state, at, detail)"
        " VALUES (?, ?, ?, ?, ?)",
        [
            (command.command_id, seq, t.state.value, t.at, t.detail)
            for seq, t in enumerate(command.history)
            if seq >= stored
        ],
    )


def _load(db: Connection, row: tuple[Any, ...]) -> Command:
    (command_id, meter_id, kind, key, parameters, created, deadline, state, attempts,
     next_at, failure, result) = row  # fmt: skip
    history = [
        Transition(CommandState(s), float(at), detail)
        for s, at, detail in db.execute(
            "SELECT state, at, detail FROM command_transitions WHERE command_id = ? ORDER BY seq",
            (command_id,),
        )
    ]
    return Command(
        command_id=str(command_id),
        meter_id=str(meter_id),
        type=CommandType(str(kind)),
        idempotency_key=str(key),
        created_at=float(created),
        deadline=float(deadline),
        parameters=json.loads(str(parameters)),
        state=CommandState(str(state)),
        attempts=int(attempts),
        next_attempt_at=float(next_at),
        failure=FailureReason(str(failure)) if failure else None,
        history=history,
        result=None if result is None else json.loads(str(result)),
    )
