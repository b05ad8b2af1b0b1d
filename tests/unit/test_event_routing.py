"""The event bus hands each event to the handlers of its kind; every handler that names
its kinds names all the kinds it looks at; the head-end's hot-path read metrics expose
what prometheus-client's own counter and histogram would."""

import ast
import inspect
import textwrap
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hes_sim.events import (
    CommandFinished,
    Event,
    EventBus,
    LateAnswer,
    MeterOnline,
    ReadDuplicate,
    ReadStored,
)
from hes_sim.hes.backfill import Backfill
from hes_sim.hes.commands.dispatcher import CommandDispatcher
from hes_sim.hes.desk import OperatorDesk
from hes_sim.hes.metrics import DELAY_BUCKETS, BusinessMetrics, HesMetrics, StoredReads
from hes_sim.hes.prepaid.engine import PrepaidEngine

READ = ReadStored("SP0000001", 900.0, 12.0, 5)
ONLINE = MeterOnline("SP0000001")


def test_a_handler_gets_only_its_kinds_and_an_unfiltered_one_gets_all():
    bus = EventBus()
    reads: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(reads.append, (ReadStored, ReadDuplicate))
    bus.subscribe(everything.append)
    for event in (READ, ONLINE, ReadDuplicate("SP0000001", 900.0), READ):
        bus.emit(event)
    assert [type(e) for e in reads] == [ReadStored, ReadDuplicate, ReadStored]
    assert len(everything) == 4


def test_subscribing_and_unsubscribing_after_events_take_effect_at_once():
    bus = EventBus()
    first: list[Event] = []
    later: list[Event] = []
    bus.subscribe(first.append, (ReadStored,))
    bus.emit(READ)  # the route for ReadStored is made here
    bus.subscribe(later.append, (ReadStored,))
    bus.emit(READ)
    bus.unsubscribe(first.append)
    bus.emit(READ)
    assert (len(first), len(later)) == (2, 2)


def test_a_failing_handler_does_not_stop_the_others():
    bus = EventBus()
    seen: list[Event] = []

    def broken(_event: Event) -> None:
        raise RuntimeError("a broken subscriber")

    bus.subscribe(broken, (ReadStored,))
    bus.subscribe(seen.append, (ReadStored,))
    bus.emit(READ)
    assert seen == [READ]


def _kinds_looked_at(handler: Callable[..., object]) -> set[str]:
    """Event classes a handler names in ``case Kind(...)`` patterns, ``isinstance`` and
    ``type(event) is Kind``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(handler)))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Name):
            names.add(node.cls.id)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "isinstance"
        ):
            kinds = node.args[1]
            elements = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
            names |= {element.id for element in elements if isinstance(element, ast.Name)}
        elif (  # type(event) is Kind
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Call)
            and isinstance(node.left.func, ast.Name)
            and node.left.func.id == "type"
        ):
            names |= {name.id for name in node.comparators if isinstance(name, ast.Name)}
    return names


@pytest.mark.parametrize(
    ("handler", "kinds"),
    [
        (HesMetrics.__call__, HesMetrics.KINDS),
        (HesMetrics._count, HesMetrics.KINDS),
        (BusinessMetrics.__call__, BusinessMetrics.KINDS),
        (CommandDispatcher._on_event, CommandDispatcher.EVENT_KINDS),
        (PrepaidEngine._on_event, PrepaidEngine.EVENT_KINDS),
        (OperatorDesk._on_event, OperatorDesk.EVENT_KINDS),
        (Backfill._on_event, Backfill.EVENT_KINDS),
    ],
    ids=lambda value: getattr(value, "__qualname__", ""),
)
def test_every_kind_a_handler_looks_at_is_routed_to_it(
    handler: Callable[..., object], kinds: tuple[type[Event], ...]
):
    looked_at = _kinds_looked_at(handler)
    assert looked_at, "the handler names no event kind: the check below would prove nothing"
    assert looked_at <= {kind.__name__ for kind in kinds}


def test_the_kind_check_sees_a_kind_left_out():
    def handler(event: Event) -> None:
        match event:
            case ReadStored():
                pass
            case CommandFinished():
                pass
        if isinstance(event, (MeterOnline, ReadDuplicate)) or type(event) is LateAnswer:
            pass

    kinds = {"ReadStored", "CommandFinished", "MeterOnline", "ReadDuplicate", "LateAnswer"}
    assert _kinds_looked_at(handler) == kinds


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")  # a timestamp, different by nature
    }


@pytest.mark.parametrize(
    "delays", [[], [0.0], [1.0, 5.0, 5.0001, 86_400.0, 90_000.0], [299.9, 300.0, 300.1, 12.5]]
)
def test_stored_reads_expose_what_prometheus_client_would(delays: list[float]):
    ours = CollectorRegistry()
    stored = StoredReads(DELAY_BUCKETS)
    ours.register(stored)
    reference = CollectorRegistry()
    counter = Counter(
        "hes_reads_stored", "Block-load reads stored (first copy)", registry=reference
    )
    histogram = Histogram(
        "hes_read_delivery_delay_seconds",
        "Interval end to read stored, in simulated seconds",
        buckets=DELAY_BUCKETS,
        registry=reference,
    )
    for delay in delays:
        stored.observe(delay)
        counter.inc()
        histogram.observe(delay)
    assert _samples(ours) == _samples(reference)
