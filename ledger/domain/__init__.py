"""The trading domain: the aggregates that decide, the values they record, the parameters
they decide with. Pure: no storage, no configuration files, no clock but the event's own.

Three kinds of stream (docs/ARCHITECTURE.md):

- ``portfolio:<name>`` (``Portfolio``): the decision journal and the decider.
- ``position:<position id>`` (``Position``): one position's lifecycle.
- ``signal:<fingerprint>`` (``SignalRecord``): the receipt that makes a signal unique.
- ``order:<intent id>`` (``Order``) and ``desk:<name>`` (``Desk``): broker orders wanted by
  committed decisions, and the kill switch (docs/ORDERS.md).

``TRADING_EVENTS`` and ``ORDER_EVENTS`` are the catalogue of their event classes
(docs/EVENTS.md describes each); every read model says, per class, what it does with it.
"""

from __future__ import annotations

from eventsourcing.domain import CanMutateAggregate

from ledger.domain.order import Desk, Intent, Order, intent_id
from ledger.domain.params import (
    STOP_POLICIES,
    Dated,
    EquityMode,
    Instrument,
    PortfolioParams,
    Product,
    StopPolicy,
)
from ledger.domain.portfolio import Portfolio
from ledger.domain.position import Position
from ledger.domain.receipt import SignalRecord
from ledger.domain.values import (
    BASE_LABEL,
    ENTRY_TYPES,
    EXIT_ALL,
    VALUE_TYPES,
    Closing,
    Contract,
    Holding,
    Mark,
    Opening,
    Outcome,
    PyramidState,
    Reason,
    Roll,
    Signal,
    SignalType,
    StopBreach,
    StopChange,
    fingerprint,
    stream_id,
    stream_name,
)


def event_classes(*aggregates: type) -> tuple[type[CanMutateAggregate], ...]:
    """The event classes an aggregate class defines and stores, in definition order (not the
    library's ``Event`` and ``Created`` bases)."""
    found: list[type[CanMutateAggregate]] = []
    for aggregate in aggregates:
        for value in vars(aggregate).values():
            if (isinstance(value, type) and issubclass(value, CanMutateAggregate)
                    and value.__name__ not in ("Event", "Created") and value not in found):
                found.append(value)
    return tuple(found)


TRADING_EVENTS = event_classes(Portfolio, Position, SignalRecord)
ORDER_EVENTS = event_classes(Order, Desk)

__all__ = [
    "BASE_LABEL", "ENTRY_TYPES", "EXIT_ALL", "ORDER_EVENTS", "STOP_POLICIES", "TRADING_EVENTS",
    "VALUE_TYPES", "Closing", "Contract", "Dated", "Desk", "EquityMode", "Holding",
    "Instrument", "Intent", "Mark", "Opening", "Order", "Outcome", "Portfolio",
    "PortfolioParams", "Position", "Product", "PyramidState", "Reason", "Roll", "Signal",
    "SignalRecord", "SignalType", "StopBreach", "StopChange", "StopPolicy", "event_classes",
    "fingerprint", "intent_id", "stream_id", "stream_name",
]
