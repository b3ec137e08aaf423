"""The service layer: decide a signal exactly once, and read the books back from the log.

One ``save()`` writes the decision's events (signal receipt, portfolio journal entry, position
events) in one transaction. The receipt's stream id derives from the signal fingerprint, so a
second delivery of the same alert cannot be written twice; the portfolio stream's version makes
concurrent deciders conflict, and the loser decides again from the newer state.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import (
    InfrastructureFactory,
    IntegrityError,
    JSONTranscoder,
    PersistenceError,
    Transcoding,
)
from eventsourcing.utils import Environment, EnvType

from ledger import wire
from ledger.calendar import contract_for, next_contract
from ledger.config import LedgerConfig
from ledger.domain import (
    VALUE_TYPES,
    Contract,
    Holding,
    Instrument,
    Intent,
    Outcome,
    Portfolio,
    PortfolioParams,
    Position,
    PyramidState,
    Signal,
    SignalRecord,
    stream_id,
    stream_name,
)
from ledger.domain.portfolio import signal_time
from ledger.presenters import decision_body, event_type, facts, payload_as_sent, summarize
from ledger.signals import InvalidSignal, Problem, parse_signal
from ledger.storage import StoreSettings, store_settings

log = logging.getLogger("ledger")


class StoreNotReady(RuntimeError):
    """The store is unreachable or not migrated; nothing was decided."""


class DecisionContended(RuntimeError):
    """Every attempt lost a version conflict; nothing was decided (bounded by configuration)."""


class StaleRead(RuntimeError):
    """A position moved on after its portfolio was read: the decision must be made again."""


class UnknownPosition(LookupError):
    pass


class UnknownPortfolio(LookupError):
    pass


class UnknownSignal(LookupError):
    """No signal with this fingerprint has been decided."""


class DataclassAsDict(Transcoding):
    """Stores a frozen dataclass value as a JSON object of its fields."""

    def __init__(self, cls: type) -> None:
        self.type = cls
        self.name = cls.__name__.lower()

    def encode(self, obj: Any) -> dict[str, Any]:
        return {f.name: getattr(obj, f.name) for f in fields(obj)}

    def decode(self, data: dict[str, Any]) -> Any:
        return self.type(**data)


@dataclass(frozen=True)
class Decision:
    """The answer to one signal, as the CLI and HTTP API return it."""

    body: Mapping[str, Any]  # JSON-ready; stored verbatim in the signal receipt
    duplicate: bool = False
    log_position: int | None = None  # notification id of the decision's last event

    @property
    def accepted(self) -> bool:
        return self.body["decision"] == "accepted"

    @property
    def position_id(self) -> str | None:
        return self.body["position_id"]

    def as_dict(self) -> dict[str, Any]:
        return {**self.body, "duplicate": self.duplicate, "log_position": self.log_position}


def default_instance_id() -> str:
    """host:pid — unique among live processes, readable in signal_log and instance_metadata."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Ledger(Application[UUID]):
    """Decides signals and answers questions about the books, on SQLite or Postgres."""

    name = "Ledger"  # tables: ledger_events, ledger_snapshots

    def __init__(self, config: LedgerConfig, database_url: str | None = None, *,
                 instance_id: str | None = None, pool: tuple[int, int] | None = None,
                 connection_name: str = "ledger") -> None:
        """``pool``: (connections kept, extra under load) on Postgres, when this ledger needs
        other than ``store_pool_size`` and ``store_pool_overflow`` (the projection runner's);
        ``connection_name``: its connections' name on the server (Postgres'
        ``application_name``), so each pool of a process can be counted apart."""
        self.config = config
        self.connection_name = connection_name
        self.instance_id = instance_id or default_instance_id()
        self.store: StoreSettings = store_settings(database_url, config.limits, pool=pool)
        self._locks_guard = threading.Lock()
        self._portfolio_locks: dict[str, threading.Lock] = {}
        self.conflicts_retried = 0  # for metrics: version conflicts that cost an attempt
        super().__init__(env=self.store.env)
        self.dialect = self.store.open_dialect(self.recorder)

    def construct_factory(self, env: Environment) -> InfrastructureFactory:
        factory = super().construct_factory(env)
        self.store.dialect.name_connections(factory, self.connection_name)  # before they open
        return factory

    def construct_env(self, name: str, env: EnvType | None = None) -> Environment:
        # Only our settings: a stray POSTGRES_* variable in the process must not redirect us.
        return Environment(name, dict(env or {}))

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        for cls in (*VALUE_TYPES, Intent):
            transcoder.register(DataclassAsDict(cls))

    # -- schema ---------------------------------------------------------------------------

    def create_event_tables(self) -> None:
        """Create the library's event and snapshot tables (idempotent; `ledger migrate`)."""
        self.recorder.create_table()
        assert self.snapshots is not None
        self.snapshots.recorder.create_table()

    def check_ready(self) -> None:
        """Raise StoreNotReady unless the store answers and has its event tables."""
        try:
            self.recorder.max_notification_id()
        except PersistenceError as e:
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StoreNotReady(f"{self.store.redacted_url}: {reason} "
                                f"(is it running, and has `ledger migrate` been run?)") from e

    def transaction(self, *, snapshot: bool = False, read_only: bool = False
                    ) -> AbstractContextManager[Any]:
        """A DB-API cursor in one transaction on the event store's database (the dialect's
        ``transaction``): committed at the end unless ``read_only``; ``snapshot`` makes every
        statement read the same snapshot. Placeholders are ``self.dialect.param``."""
        return self.dialect.transaction(snapshot=snapshot, read_only=read_only)

    # -- deciding -------------------------------------------------------------------------

    def decide(self, body: bytes | str | Mapping[str, Any], portfolio: str = "default",
               *, received_at: datetime | None = None,
               request_id: str | None = None) -> Decision:
        """Validate and decide one alert. Raises InvalidSignal (nothing appended)."""
        return self.decide_signal(parse_signal(body, portfolio, self.config),
                                  received_at=received_at, request_id=request_id)

    def decide_signal(self, signal: Signal, *, received_at: datetime | None = None,
                      request_id: str | None = None) -> Decision:
        """Decide ``signal`` once; a later delivery is answered from its receipt.
        ``request_id``: the delivery's (an HTTP request's), recorded in the receipt."""
        params = self.config.portfolio(signal.portfolio)
        instrument = self.config.instrument(signal.instrument)
        if params is None or instrument is None:
            raise InvalidSignal([Problem("portfolio" if params is None else "instrument",
                                         "not configured")])
        received_at = received_at or datetime.now(UTC)
        contract = contract_for(instrument, signal.timestamp, signal.price, self.config)
        record_id = SignalRecord.create_id(signal.fingerprint)
        limits = self.config.limits
        for attempt in range(1, limits.decision_attempts_max + 1):
            prior = self._receipt(record_id)
            if prior is not None:
                decision = self._try_redeliver(prior, received_at, request_id)
            else:
                decision = self._try_decide(signal, params, instrument, contract, received_at,
                                            request_id)
            if decision is not None:
                return decision
            # Either another delivery of this signal won (the next attempt answers with its
            # decision) or another decider moved the portfolio on: decide again from there.
            self.conflicts_retried += 1
            time.sleep(random.uniform(0, min(limits.conflict_backoff_ms_max, 2 ** attempt)) / 1e3)
        raise DecisionContended(
            f"{signal.fingerprint}: {limits.decision_attempts_max} attempts lost version "
            f"conflicts; nothing was decided")

    def _try_redeliver(self, prior: SignalRecord, received_at: datetime,
                       request_id: str | None) -> Decision | None:
        """Answer with the first decision and count the delivery (None: lost a conflict)."""
        prior.redeliver(received_at, self.instance_id, request_id)
        try:
            recordings = self.save(prior)
        except IntegrityError:  # another delivery of the same signal counted at this moment
            return None
        return Decision(prior.decision, duplicate=True,
                        log_position=recordings[-1].notification.id)

    def _try_decide(self, signal: Signal, params: PortfolioParams, instrument: Instrument,
                    contract: Contract, received_at: datetime,
                    request_id: str | None) -> Decision | None:
        """One attempt at a first decision (None: lost a version conflict, nothing saved)."""
        with self._turn(signal.portfolio):
            portfolio = self._load_portfolio(signal.portfolio, params)
            read = dict(portfolio.holdings)
            outcome = portfolio.decide(signal, params, instrument, contract)
            try:
                positions = self._apply(read, outcome, signal)
            except StaleRead:
                return None
            self._assert_agree(portfolio, positions)
            events = [
                {"type": event_type(e), "stream": self._stream_of(agg),
                 "version": e.originator_version}
                for agg in (portfolio, *positions) for e in agg.pending_events
            ]
            events.append({"type": "SignalDecided",
                           "stream": stream_name("signal", signal.fingerprint), "version": 1})
            body = decision_body(signal, outcome, events, datetime.now(UTC))
            receipt = SignalRecord(
                fingerprint=signal.fingerprint, portfolio=signal.portfolio,
                signal_type=signal.type.value, instrument=signal.instrument,
                position=signal.position, signal_timestamp=signal.timestamp,
                payload=dict(signal.payload or {}), decision=body, received_at=received_at,
                instance_id=self.instance_id, raw=signal.raw, request_id=request_id)
            new_versions = range(portfolio.version - len(portfolio.pending_events) + 1,
                                 portfolio.version + 1)
            try:
                recordings = self.save(portfolio, *positions, receipt)
            except IntegrityError:
                return None
        self._snapshot_if_due(portfolio.id, new_versions)
        return Decision(body, duplicate=False,
                        log_position=max(r.notification.id for r in recordings))

    def _lock(self, portfolio: str) -> threading.Lock:
        with self._locks_guard:
            return self._portfolio_locks.setdefault(portfolio, threading.Lock())

    @contextmanager
    def _turn(self, portfolio: str) -> Iterator[None]:
        """Deciders on one portfolio take turns, in this process and (Postgres) across all.

        Only saves work: the portfolio stream's version is what guarantees correctness. Under
        a burst (every strategy's alert fires at the same bar close) optimistic retries alone
        starve unlucky deciders; a queue on an advisory lock serves them in turn.
        """
        with self._lock(portfolio), self.dialect.turn(
                f"portfolio:{portfolio}", self.config.limits.store_lock_timeout_s):
            yield

    def _receipt(self, record_id: UUID) -> SignalRecord | None:
        try:
            return self.repository.get(record_id)
        except AggregateNotFoundError:
            return None

    def _load_portfolio(self, name: str, params: PortfolioParams) -> Portfolio:
        try:
            return self.repository.get(Portfolio.create_id(name))
        except AggregateNotFoundError:
            return Portfolio(name=name, initial_capital=params.initial_capital)

    def _apply(self, read: dict[str, Holding], outcome: Outcome, signal: Signal) -> list[Position]:
        """Write the portfolio's decision into the position streams it touches.

        ``read`` is the holdings as the decision read them. Raises StaleRead if a position has
        moved on since (another instance decided in between): the save would conflict on the
        portfolio's version anyway, so decide again from the newer state.
        """
        touched: dict[str, Position] = {}

        def position(position_id: str) -> Position:
            if position_id not in touched:
                loaded = self.repository.get(Position.create_id(position_id))
                if not self._agrees(loaded, read.get(position_id)):
                    raise StaleRead(position_id)
                touched[position_id] = loaded
            return touched[position_id]

        if outcome.opened is not None:
            touched[outcome.opened.position_id] = Position.open(outcome.opened)
        for breach in outcome.breached:  # judged before this bar trailed anything
            position(breach.position_id).breach(signal.fingerprint, breach)
        for change in outcome.trailed:
            assert signal.atr is not None
            position(change.position_id).trail(signal.fingerprint, change, signal.price,
                                               signal.atr, signal.timestamp)
        for closing in outcome.closed:
            position(closing.position_id).close(signal.fingerprint, closing, signal.timestamp)
        return list(touched.values())

    @staticmethod
    def _agrees(position: Position, holding: Holding | None) -> bool:
        """The position stream and the portfolio's holding of it tell the same story."""
        if not position.is_open:
            return holding is None
        return holding is not None and (
            position.lots, position.entry_price, position.current_stop, position.highest_close
        ) == (holding.lots, holding.entry_price, holding.current_stop, holding.highest_close)

    def _assert_agree(self, portfolio: Portfolio, positions: list[Position]) -> None:
        for p in positions:
            assert self._agrees(p, portfolio.holdings.get(p.position_id)), (
                f"{p.position_id} disagrees with the portfolio")

    @staticmethod
    def _stream_of(aggregate: object) -> str:
        if isinstance(aggregate, Portfolio):
            return stream_name("portfolio", aggregate.name)
        if isinstance(aggregate, Position):
            return stream_name("position", aggregate.position_id)
        assert isinstance(aggregate, SignalRecord)
        return stream_name("signal", aggregate.fingerprint)

    def _snapshot_if_due(self, portfolio_id: UUID, versions: range) -> None:
        interval = self.config.limits.snapshot_interval_events
        for version in versions:
            if version % interval == 0:
                try:
                    self.take_snapshot(portfolio_id, version=version)
                except Exception:  # the decision is committed; a snapshot is only a cache
                    log.warning("snapshot of %s at %d failed", portfolio_id, version,
                                exc_info=True)

    # -- rollover (the scheduler that calls this comes later) -----------------------------

    def roll(self, position_id: str, from_expiry: str, close_price: Decimal,
             open_price: Decimal, at: datetime, *,
             fence: Callable[[Any], None] | None = None) -> Position:
        """Move an open position from the contract expiring ``from_expiry`` to the next one.

        ``fence`` is called with the cursor of the transaction that records the roll, before
        its events (a leader's epoch check: raise to refuse the roll, nothing written).

        Idempotent: once the position trades a later contract, rolling it again from
        ``from_expiry`` changes nothing and returns it as it is.
        """
        limits = self.config.limits
        for attempt in range(1, limits.decision_attempts_max + 1):
            position = self.position(position_id)
            if position.expiry != from_expiry:
                return position  # rolled already (by us, or by another instance)
            if not position.is_open:
                raise ValueError(f"{position_id} is closed")
            instrument = self.config.instrument(position.instrument)
            params = self.config.portfolio(position.portfolio)
            assert instrument is not None and params is not None
            contract = next_contract(instrument, date.fromisoformat(from_expiry), open_price,
                                     self.config)
            with self._turn(position.portfolio):
                portfolio = self._load_portfolio(position.portfolio, params)
                if not self._agrees(position, portfolio.holdings.get(position_id)):
                    continue  # read skew: another instance moved on in between
                roll = position.plan_roll(contract, close_price, open_price, at,
                                          command_id=f"roll:{position_id}:{from_expiry}")
                portfolio.roll(roll)
                position.roll(roll)
                self._assert_agree(portfolio, [position])
                try:
                    self.save(portfolio, position, fence=fence)
                    return position
                except IntegrityError:
                    self.conflicts_retried += 1
            time.sleep(random.uniform(0, min(limits.conflict_backoff_ms_max, 2 ** attempt)) / 1e3)
        raise DecisionContended(f"roll of {position_id}: {limits.decision_attempts_max} "
                                f"attempts lost version conflicts")

    # -- reading --------------------------------------------------------------------------

    def position(self, position_id: str) -> Position:
        try:
            return self.repository.get(Position.create_id(position_id))
        except AggregateNotFoundError:
            raise UnknownPosition(position_id) from None

    def position_history(self, position_id: str) -> list[dict[str, Any]]:
        """The position's events in order, each with the state after it and its cause.

        ``signal`` is the signal that caused the event (read from its receipt), or for a
        rollover ``{"command_id"}``, or None.
        """
        entries = []
        state: Position | None = None
        causes: dict[str, dict[str, Any]] = {}  # one receipt read per signal
        for e in self.events.get(Position.create_id(position_id)):
            assert isinstance(e, CanMutateAggregate)
            state = e.mutate(state)
            assert state is not None
            recorded = facts(e)
            entries.append({
                "version": e.originator_version,
                "type": event_type(e),
                "recorded_at": wire.iso(e.timestamp),
                "event": recorded,
                "state": state.state(),
                "signal": self._cause(recorded, causes),
            })
        if not entries:
            raise UnknownPosition(position_id)
        return entries

    def _cause(self, recorded: dict[str, Any], causes: dict[str, dict[str, Any]]
               ) -> dict[str, Any] | None:
        """What caused an event, from its facts: a signal's fingerprint or a command's id."""
        fingerprint = recorded.get("fingerprint")
        if fingerprint is not None:
            if fingerprint not in causes:
                causes[fingerprint] = self._signal_cause(fingerprint)
            return dict(causes[fingerprint])
        command_id = recorded.get("command_id")
        return {"command_id": command_id} if command_id is not None else None

    def _signal_cause(self, fingerprint: str) -> dict[str, Any]:
        # The receipt is written in the same transaction as every event naming its
        # fingerprint, so it is always there.
        record = self.repository.get(SignalRecord.create_id(fingerprint))
        assert isinstance(record, SignalRecord)
        return {
            "fingerprint": fingerprint,
            "signal_type": record.signal_type,
            "signal_timestamp": wire.iso(record.signal_timestamp),
            "price": record.decision.get("price"),
            "decision": record.decision.get("decision"),
            "received_at": wire.iso(record.received_at),
            "deliveries": record.version,
        }

    def signal_trail(self, fingerprint: str) -> dict[str, Any]:
        """A signal's receipt, every delivery of it, its decision and the events that decision
        appended, read back from the store. Raises UnknownSignal.

        Times are ISO strings; event facts keep their values as in ``position_history``
        (``wire.dumps`` writes them). A plain dict, so callers may add to it.
        """
        record: SignalRecord | None = None
        deliveries = []
        for e in self.events.get(SignalRecord.create_id(fingerprint)):
            assert isinstance(e, CanMutateAggregate)
            record = e.mutate(record)
            delivery = {
                "delivery": e.originator_version,
                "received_at": wire.iso(e.received_at),  # type: ignore[attr-defined]
                "instance_id": e.instance_id,  # type: ignore[attr-defined]
                "duplicate": e.originator_version > 1,
            }
            if e.request_id is not None:  # type: ignore[attr-defined]  # absent: CLI, or older
                delivery["request_id"] = e.request_id  # type: ignore[attr-defined]
            deliveries.append(delivery)
        if record is None:
            raise UnknownSignal(fingerprint)
        return {
            "fingerprint": record.fingerprint,
            "portfolio": record.portfolio,
            "signal_type": record.signal_type,
            "instrument": record.instrument,
            "position": record.position,
            "signal_timestamp": wire.iso(record.signal_timestamp),
            "payload": payload_as_sent(record),
            "deliveries": deliveries,
            "decision": record.decision,
            "events": self._decision_events(record.decision["events"]),
        }

    def _decision_events(self, listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events a decision lists (``{type, stream, version}``), as stored, in its order."""
        versions: dict[str, list[int]] = {}
        for item in listed:
            versions.setdefault(item["stream"], []).append(item["version"])
        stored: dict[tuple[str, int], Any] = {}
        for stream, numbers in versions.items():
            kind, _, key = stream.partition(":")
            # One decision's events in a stream are consecutive versions: one read each.
            for e in self.events.get(stream_id(kind, key), gt=min(numbers) - 1,
                                     lte=max(numbers)):
                stored[(stream, e.originator_version)] = e
        events = []
        for item in listed:
            e = stored.get((item["stream"], item["version"]))
            # Written in the decision's transaction: listed and missing would be a lost write.
            assert e is not None and event_type(e) == item["type"], f"{item} not in the store"
            events.append({
                "stream": item["stream"],
                "version": item["version"],
                "type": item["type"],
                "recorded_at": wire.iso(e.timestamp),
                "event": facts(e),
            })
        return events

    def portfolio(self, name: str = "default") -> Portfolio:
        """The portfolio replayed from its stream (never-used portfolios start empty)."""
        params = self.config.portfolio(name)
        try:
            return self.repository.get(Portfolio.create_id(name))
        except AggregateNotFoundError:
            if params is None:
                raise UnknownPortfolio(name) from None
            return Portfolio(name=name, initial_capital=params.initial_capital)

    def portfolio_summary(self, name: str = "default") -> dict[str, Any]:
        """Equity, closed equity, open risk/vol, margin and open positions (JSON-ready)."""
        return summarize(self.portfolio(name), self.config.portfolio(name))

    def portfolio_known_at(self, name: str, at: datetime) -> dict[str, Any]:
        """What the ledger knew at ``at`` (recording time, for audit): the portfolio stream
        replayed up to the last event recorded at or before ``at`` (an event's time is when
        its decision was made, just before it committed). ``portfolio_view``'s answer."""
        return self.portfolio_view(name, known_at=at)

    def portfolio_as_of(self, name: str, at: datetime) -> dict[str, Any]:
        """The books as of bar time ``at``: every decision whose signal is at or before
        ``at``, in log order, whenever it was recorded. ``portfolio_view``'s answer."""
        return self.portfolio_view(name, as_of=at)

    def portfolio_view(self, name: str, *, as_of: datetime | None = None,
                       known_at: datetime | None = None) -> dict[str, Any]:
        """The books of ``name`` as of bar time ``as_of`` and as known at ``known_at``
        (either or both): ``portfolio_summary``'s keys plus ``as_of`` / ``known_at`` (UTC).

        ``known_at`` cuts the stream at the last event recorded at or before it. ``as_of``
        folds the portfolio's events in log order, skipping each whose signal time (its
        mark's; a roll's ``at``) is after it: late alerts count at their bar's time, and a
        decision recorded just now about an old bar is in the old bar's books. ``version`` is
        the stream version of the last event included (0 before the first decision). Raises
        UnknownPortfolio, and ValueError for a naive time (whose 10:30?).
        """
        for label, at in (("as-of", as_of), ("known-at", known_at)):
            if at is not None and (at.tzinfo is None or at.utcoffset() is None):
                raise ValueError(f"{label} time {at.isoformat()} must carry a time zone")
        params = self.config.portfolio(name)
        events = iter(self.events.get(Portfolio.create_id(name)))
        opened = next(events, None)
        if opened is None:
            if params is None:
                raise UnknownPortfolio(name)
            state = Portfolio(name=name, initial_capital=params.initial_capital)
            version = 0
        else:
            # The log's PortfolioOpened, not today's configuration, says what capital was.
            assert isinstance(opened, CanMutateAggregate)
            state = opened.mutate(None)
            version = 0
            if known_at is None or opened.timestamp <= known_at:
                version = 1
                for e in events:
                    if known_at is not None and e.timestamp > known_at:
                        break  # a stream's events are recorded in version order
                    if as_of is None:
                        assert isinstance(e, CanMutateAggregate)
                        state = e.mutate(state)
                    elif not _fold_at_bar_time(state, e, as_of):
                        continue
                    version = e.originator_version
        assert isinstance(state, Portfolio)
        view = {**summarize(state, params), "version": version}
        if as_of is not None:
            view["as_of"] = wire.iso(as_of.astimezone(UTC))
        if known_at is not None:
            view["known_at"] = wire.iso(known_at.astimezone(UTC))
        return view


def _fold_at_bar_time(state: Portfolio, event: Any, as_of: datetime) -> bool:
    """Apply ``event`` to a bar-time view unless its signal is after ``as_of``; whether it
    was applied.

    The view skips events, so the library's ``mutate`` (which insists on the next version)
    cannot fold it: the event's fact is applied directly. Two facts can name what a skipped
    event would have brought: a pyramid whose signal is older than its base's (an alert that
    arrived late) finds no pyramiding state, and starts one without a base; a roll timed
    before its position's entry rolls nothing the view holds, and is skipped.
    """
    at = signal_time(event)
    if at is not None and at > as_of:
        return False
    if isinstance(event, Portfolio.PositionRolled) and (
            event.roll.position_id not in state.holdings):
        return False
    if isinstance(event, Portfolio.EntryAccepted) and not event.holding.is_base:
        state.pyramiding.setdefault(event.holding.instrument, PyramidState(None, None, 0))
    event.apply(state)
    state.version = event.originator_version
    state.modified_on = event.timestamp
    return True
