"""The projector: folds the notification log into row changes for every table.

It keeps the states the rows are computed from — portfolios, open positions, instances and
statistics — and replays each event through the domain's own mutator, so a row is always a
function of the state the log gives (``projections.rows``). Changes are collected per batch:
a row touched by many events of one batch is computed once, from the state after the last.

Where a state is missing (a runner resuming at a tracked position), it is loaded from the
event store at the version the stored rows say was applied (``resume``), or at the version
just before the event that needs it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache, singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from ledger.application import Ledger
from ledger.domain import (
    ORDER_EVENTS,
    TRADING_EVENTS,
    Desk,
    Order,
    Portfolio,
    Position,
    SignalRecord,
    event_classes,
)
from ledger.domain.order import FINAL
from ledger.instances import Instance
from ledger.presenters import equity_mode
from projections import rows
from projections.schema import (
    INSTANCES,
    ORDERS,
    PORTFOLIO_STATE,
    POSITIONS,
    PYRAMIDING,
    STATISTICS,
    TABLES,
)

SIGNALS_REMEMBERED_MAX = 100_000  # signal streams whose fingerprint and portfolio are kept
STREAM_IDS_CACHED_MAX = 65_536  # stream ids (uuid5 of the name) kept: hashing costs ~10 us

# Every mark dirties each holding of its portfolio: their stream ids are hashed again and again.
_portfolio_id = lru_cache(maxsize=STREAM_IDS_CACHED_MAX)(Portfolio.create_id)
_position_id = lru_cache(maxsize=STREAM_IDS_CACHED_MAX)(Position.create_id)


@dataclass
class Changes:
    """What one batch changes: whole rows to upsert, signal rows to insert, and the
    columns of earlier signal rows a redelivery changes."""

    upserts: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = field(default_factory=dict)
    inserts: dict[str, dict[str, Any]] = field(default_factory=dict)  # signal_log by fp
    patches: dict[str, dict[str, Any]] = field(default_factory=dict)  # signal_log by fp
    position: int = 0  # log position the changes bring the tables to

    def upsert(self, table: str, row: dict[str, Any]) -> None:
        key = tuple(row[k] for k in TABLES[table].key)
        self.upserts.setdefault(table, {})[key] = row

    def __len__(self) -> int:
        return (sum(len(v) for v in self.upserts.values()) + len(self.inserts)
                + len(self.patches))


# Every event the log can hold, and what the projector does with it: each class is either
# handled (a ``_apply`` registration below) or named here as changing no table.
EVENTS = (*TRADING_EVENTS, *ORDER_EVENTS, *event_classes(Instance))
# The kill switch is read from its own stream (the desk and /health ask it): no table.
IGNORED: frozenset[type] = frozenset(event_classes(Desk))

# A batch that ends on one of these ends between two transactions: every decision's save()
# writes its SignalDecided last, a roll writes the position's RolledOver last, and the
# lifecycle of an instance is one event per transaction.
BOUNDARY_TOPICS = frozenset(get_topic(cls) for cls in (
    SignalRecord.SignalDecided, SignalRecord.SignalRedelivered, Position.RolledOver,
    Instance.InstanceStarted, Instance.InstanceStopped))


def ends_transaction(notification: Notification) -> bool:
    return notification.topic in BOUNDARY_TOPICS


class Projector:
    def __init__(self, ledger: Ledger, position: int = 0) -> None:
        self.ledger = ledger
        self.position = position  # last notification id applied
        self.portfolios: dict[UUID, Portfolio] = {}
        self.positions: dict[UUID, Position] = {}  # open ones, and closed ones until flushed
        self.orders: dict[UUID, Order] = {}  # not final ones, and final ones until flushed
        self._dirty_orders: set[UUID] = set()
        self.instances: dict[str, rows.InstanceState] = {}
        self.stats: dict[str, rows.Statistics] = {}
        self._signals: OrderedDict[UUID, tuple[str, str]] = OrderedDict()
        self._instance_streams: dict[UUID, str] = {}
        self._changes = Changes()
        self._dirty_portfolios: set[UUID] = set()
        self._dirty_positions: set[UUID] = set()
        self._dirty_instances: set[str] = set()
        self._dirty_stats: set[str] = set()
        self.applied = 0  # events applied since construction

    # -- resuming at a tracked position ----------------------------------------------------

    def resume(self, stored: dict[str, list[dict[str, Any]]]) -> None:
        """Load the states behind the stored rows (``stored``: decoded rows by table)."""
        get = self.ledger.repository.get
        for row in stored.get(PORTFOLIO_STATE.name, []):
            p = get(Portfolio.create_id(row["portfolio"]), version=row["version"])
            self.portfolios[p.id] = p
        for row in stored.get(POSITIONS.name, []):
            if row["status"] != "closed":
                pos = get(Position.create_id(row["position_id"]), version=row["version"])
                self.positions[pos.id] = pos
        for row in stored.get(ORDERS.name, []):
            if row["status"] not in FINAL:
                order = get(Order.create_id(row["intent_id"]), version=row["version"])
                self.orders[order.id] = order
        for row in stored.get(INSTANCES.name, []):
            self.instances[row["instance_id"]] = rows.InstanceState.from_row(row)
        for row in stored.get(STATISTICS.name, []):
            self.stats[row["portfolio"]] = rows.Statistics.from_row(row)

    # -- applying --------------------------------------------------------------------------

    def apply_all(self, notifications: Iterable[Notification]) -> None:
        for n in notifications:
            self.apply(n)

    def apply(self, notification: Notification) -> None:
        assert notification.id > self.position, (notification.id, self.position)
        event = self.ledger.mapper.to_domain_event(notification)
        # The registered function itself: a singledispatchmethod bound on every call costs a
        # few microseconds per event in Python 3.11, a tenth of a rebuild's time per event.
        _HANDLERS.dispatch(type(event))(self, event, notification.id)
        self.position = notification.id
        self.applied += 1

    @singledispatchmethod
    def _apply(self, event: object, log_id: int) -> None:
        """What an event does to the tables, registered per event class (``EVENTS``): an
        event of a class nobody registered is a programming error, never skipped."""
        raise TypeError(f"no projection handler for {type(event).__qualname__}")

    def _before(self, cache: dict[UUID, Any], event: Any) -> Any:
        """The aggregate's state just before ``event`` (None before its first)."""
        state = cache.get(event.originator_id)
        if state is not None and state.version == event.originator_version - 1:
            return state
        if event.originator_version == 1:
            return None
        return self.ledger.repository.get(event.originator_id,
                                          version=event.originator_version - 1)

    @_apply.register(Portfolio.PortfolioOpened)
    @_apply.register(Portfolio.SignalRejected)
    @_apply.register(Portfolio.EntryAccepted)
    @_apply.register(Portfolio.ExitAccepted)
    @_apply.register(Portfolio.MarketMarked)
    @_apply.register(Portfolio.PositionRolled)
    def _portfolio_event(self, event: CanMutateAggregate[Any], log_id: int) -> None:
        before = self._before(self.portfolios, event)
        held = set(before.holdings) if before is not None else set()
        p = event.mutate(before)
        assert isinstance(p, Portfolio)
        self.portfolios[p.id] = p
        self._dirty_portfolios.add(p.id)
        for position_id in held | set(p.holdings):
            self._dirty_positions.add(_position_id(position_id))
        stats = self._stats(p.name, p.initial_capital)
        stats.closed_equity(p.closed_equity)
        stats.updated_at = p.modified_on
        self._dirty_stats.add(p.name)

    @_apply.register(Position.PositionOpened)
    @_apply.register(Position.StopBreached)
    @_apply.register(Position.StopTrailed)
    @_apply.register(Position.PositionReduced)
    def _position_event(self, event: Any, log_id: int) -> Position:
        pos = event.mutate(self._before(self.positions, event))
        assert isinstance(pos, Position)
        self.positions[pos.id] = pos
        self._dirty_positions.add(pos.id)
        return pos

    @_apply.register
    def _exited(self, event: Position.Exited, log_id: int) -> None:
        pos = self._position_event(event, log_id)
        stats = self._position_stats(pos, event)
        stats.trade(pos.realized_pnl + pos.rollover_pnl)

    @_apply.register
    def _rolled_over(self, event: Position.RolledOver, log_id: int) -> None:
        pos = self._position_event(event, log_id)
        self._position_stats(pos, event).rollovers += 1

    def _position_stats(self, pos: Position, event: Any) -> rows.Statistics:
        book = self.portfolios.get(_portfolio_id(pos.portfolio))
        stats = self._stats(pos.portfolio, book.initial_capital if book else Decimal(0))
        stats.updated_at = max(stats.updated_at or event.timestamp, event.timestamp)
        self._dirty_stats.add(pos.portfolio)
        return stats

    @_apply.register
    def _signal_decided(self, event: SignalRecord.SignalDecided, log_id: int) -> None:
        row = rows.signal_row(log_id, event)
        self._changes.inserts[row["fingerprint"]] = row
        self._remember(event.originator_id, event.fingerprint, event.portfolio)
        stats = self._stats(event.portfolio, None)
        stats.signals_decided += 1
        if row["processing_status"] == "accepted":
            stats.signals_accepted += 1
        else:
            stats.signals_rejected += 1
        self._signal_seen(event, event.portfolio, stats)

    @_apply.register
    def _signal_redelivered(self, event: SignalRecord.SignalRedelivered, log_id: int) -> None:
        patch = rows.redelivery_patch(event)
        fingerprint, portfolio = self._signal(event.originator_id)
        if fingerprint in self._changes.inserts:
            self._changes.inserts[fingerprint].update(patch)
        else:
            self._changes.patches.setdefault(fingerprint, {}).update(patch)
        stats = self._stats(portfolio, None)
        stats.duplicate_deliveries += 1
        self._signal_seen(event, portfolio, stats)

    def _signal_seen(self, event: Any, portfolio: str, stats: rows.Statistics) -> None:
        stats.updated_at = max(stats.updated_at or event.timestamp, event.timestamp)
        self._dirty_stats.add(portfolio)
        instance = self._instance(event.instance_id, event.timestamp)
        instance.signals_processed += 1
        instance.last_signal_processed = event.timestamp
        instance.seen(event.timestamp)
        self._dirty_instances.add(event.instance_id)

    def _ignored(self, event: Any, log_id: int) -> None:
        """Events that change no table (``IGNORED``)."""

    for _cls in IGNORED:
        _apply.register(_cls)(_ignored)
    del _cls

    @_apply.register(Order.OrderIntended)
    @_apply.register(Order.OrderSent)
    @_apply.register(Order.OrderAcknowledged)
    @_apply.register(Order.OrderRejected)
    @_apply.register(Order.OrderOutcomeUnknown)
    @_apply.register(Order.OrderResolved)
    @_apply.register(Order.OrderFilled)
    def _order_event(self, event: Any, log_id: int) -> None:
        order = event.mutate(self._before(self.orders, event))
        assert isinstance(order, Order)
        self.orders[order.id] = order
        self._dirty_orders.add(order.id)

    @_apply.register
    def _instance_started(self, event: Instance.InstanceStarted, log_id: int) -> None:
        i = self._instance(event.instance_id, event.started_at)
        i.started_at, i.status = event.started_at, "active"
        i.hostname, i.port, i.version = event.hostname, event.port, event.software_version
        i.seen(event.started_at)
        self._instance_streams[event.originator_id] = event.instance_id
        self._dirty_instances.add(i.instance_id)

    @_apply.register
    def _instance_stopped(self, event: Instance.InstanceStopped, log_id: int) -> None:
        instance_id = self._instance_streams.get(event.originator_id)
        if instance_id is None:  # started before a resume
            instance_id = self.ledger.repository.get(event.originator_id,
                                                     version=1).instance_id
        i = self._instance(instance_id, event.at)
        i.status = "stopped"
        i.seen(event.at)
        self._dirty_instances.add(i.instance_id)

    # -- small states ----------------------------------------------------------------------

    def _instance(self, instance_id: str, at: Any) -> rows.InstanceState:
        if instance_id not in self.instances:
            self.instances[instance_id] = rows.InstanceState(
                instance_id=instance_id, created_at=at, last_heartbeat=at,
                hostname=instance_id.rsplit(":", 1)[0])
        return self.instances[instance_id]

    def _stats(self, portfolio: str, initial_capital: Decimal | None) -> rows.Statistics:
        if portfolio not in self.stats:
            if initial_capital is None:
                book = self.portfolios.get(_portfolio_id(portfolio))
                params = self.ledger.config.portfolio(portfolio)
                initial_capital = (book.initial_capital if book else
                                   params.initial_capital if params else Decimal(0))
            self.stats[portfolio] = rows.Statistics(portfolio, initial_capital)
        return self.stats[portfolio]

    def _remember(self, record_id: UUID, fingerprint: str, portfolio: str) -> None:
        self._signals[record_id] = (fingerprint, portfolio)
        self._signals.move_to_end(record_id)
        while len(self._signals) > SIGNALS_REMEMBERED_MAX:
            self._signals.popitem(last=False)

    def _signal(self, record_id: UUID) -> tuple[str, str]:
        """(fingerprint, portfolio) of a signal stream: a redelivery carries neither."""
        if record_id not in self._signals:
            record = self.ledger.repository.get(record_id, version=1)
            assert isinstance(record, SignalRecord)
            self._remember(record_id, record.fingerprint, record.portfolio)
        return self._signals[record_id]

    # -- rows ------------------------------------------------------------------------------

    def flush(self) -> Changes:
        """The rows changed since the last flush, computed from the current states."""
        changes = self._changes
        config = self.ledger.config
        for pid in self._dirty_portfolios:
            p = self.portfolios[pid]
            changes.upsert(PORTFOLIO_STATE.name, rows.portfolio_state_row(p, config.portfolio(
                p.name)))
            for row in rows.pyramiding_rows(p):
                changes.upsert(PYRAMIDING.name, row)
        equities: dict[str, Decimal] = {}
        for position_uuid in self._dirty_positions:
            pos = self.positions.get(position_uuid)
            if pos is None:
                continue  # opened by an event of the next batch; written then
            book = self.portfolios.get(_portfolio_id(pos.portfolio))
            if pos.portfolio not in equities:
                equities[pos.portfolio] = (book.equity(equity_mode(config.portfolio(
                    pos.portfolio))) if book is not None else Decimal(0))
            changes.upsert(POSITIONS.name, rows.position_row(pos, book, equities[pos.portfolio]))
            if not pos.is_open:
                del self.positions[position_uuid]  # no event changes a closed position
        for order_uuid in self._dirty_orders:
            order = self.orders[order_uuid]
            changes.upsert(ORDERS.name, rows.order_row(order))
            if order.status in FINAL:
                del self.orders[order_uuid]  # nothing changes a filled or rejected order
        for instance_id in self._dirty_instances:
            changes.upsert(INSTANCES.name, self.instances[instance_id].row())
        for portfolio in self._dirty_stats:
            changes.upsert(STATISTICS.name, self.stats[portfolio].row())
        changes.position = self.position
        self._changes = Changes()
        self._dirty_portfolios.clear()
        self._dirty_positions.clear()
        self._dirty_instances.clear()
        self._dirty_stats.clear()
        self._dirty_orders.clear()
        return changes


_HANDLERS = Projector.__dict__["_apply"].dispatcher


def chunks(ledger: Ledger, after: int, limit: int, stop: int | None = None
           ) -> Iterator[list[Notification]]:
    """The log after position ``after`` (up to ``stop``), ``limit`` notifications at a time."""
    while True:
        batch = read_chunk(ledger, after, limit, stop)
        if not batch:
            return
        yield batch
        after = batch[-1].id
        if stop is not None and after >= stop:
            return


def read_chunk(ledger: Ledger, after: int, limit: int, stop: int | None = None
               ) -> list[Notification]:
    """Up to ``limit`` notifications after position ``after`` (up to ``stop``)."""
    return ledger.dialect.notifications(after, limit, stop)


__all__ = ["EVENTS", "IGNORED", "Changes", "Projector", "chunks", "ends_transaction",
           "read_chunk"]
