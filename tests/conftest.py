"""Suite-wide guards: no test may leak threads or asyncio tasks."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

# the store fixtures, for every test directory: store_location, any_store, pg_database
from tests.store_fixtures import any_store, pg_database, store_location  # noqa: F401


@pytest.fixture(autouse=True)
def no_thread_leaks() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    # "asyncio_N" threads are the event loop's default executor (DNS lookups, subprocess
    # watchers); the loop joins them when it closes, after this check.
    leaked = [
        t
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("asyncio_")
    ]
    for thread in leaked:
        thread.join(timeout=2)  # a thread finishing its last step is not a leak
    leaked = [t.name for t in leaked if t.is_alive()]
    assert not leaked, f"threads left running: {leaked}"


@pytest.fixture
async def no_task_leaks() -> AsyncIterator[None]:
    yield
    current = asyncio.current_task()
    leaked = [t.get_name() for t in asyncio.all_tasks() if t is not current and not t.done()]
    assert not leaked, f"tasks left running: {leaked}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.fixturenames.insert(0, "no_task_leaks")  # set up first, checked last
