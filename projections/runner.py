"""The projection runner: keeps every table current from the notification log.

One runner is active per store (``leadership``: the dialect's session lock — a Postgres
advisory lock held on its own connection, or a lock file beside the SQLite database); the
others stand by and take over when its connection or process dies. Correctness does not
rest on the election: each batch commits its rows and the tracking position together, and
only if the position is still the one the batch started from (compare-and-set under the
tracking row's lock). A runner that finds the position moved resumes from the stored rows.

Batches end between two transactions of the log (``ends_transaction``), so readers never see
half a decision: a mark that trailed two stops shows both or neither.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.application import Ledger
from ledger.domain.order import FINAL
from ledger.storage.dialect import SessionLock
from projections.projector import Projector, ends_transaction
from projections.schema import INSTANCES, ORDERS, PORTFOLIO_STATE, POSITIONS, STATISTICS
from projections.tables import TableStore

log = logging.getLogger("ledger.projections")

BOUNDARY_LOOKAHEAD_EVENTS_MAX = 256  # events read past a batch's size to end it cleanly
WAIT_POLL_MS = 10  # how often a read waiting for its log position looks again


@dataclass(frozen=True)
class Lag:
    head: int  # the log's last notification id
    position: int  # the tables' tracked position
    seconds: float  # age of the oldest event not yet applied (0 when caught up)

    @property
    def events(self) -> int:
        return max(0, self.head - self.position)


def tracked_position(ledger: Ledger) -> int:
    with ledger.transaction(read_only=True) as cursor:
        return TableStore(ledger).tracked(cursor)


def lag(ledger: Ledger) -> Lag:
    position = tracked_position(ledger)
    head = ledger.recorder.max_notification_id() or 0
    seconds = 0.0
    if head > position:
        pending = ledger.recorder.select_notifications(position, 1, inclusive_of_start=False)
        if pending:
            recorded = ledger.mapper.to_domain_event(pending[0]).timestamp
            seconds = max(0.0, (datetime.now(UTC) - recorded).total_seconds())
    return Lag(head, position, seconds)


def wait_for(ledger: Ledger, position: int, timeout_s: float) -> bool:
    """Wait (bounded) until the tables have applied the log up to ``position``."""
    deadline = time.monotonic() + timeout_s
    while True:
        if tracked_position(ledger) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(WAIT_POLL_MS / 1000)


class ProjectionRunner:
    def __init__(self, ledger: Ledger, *, leadership: SessionLock | None = None,
                 fence: Callable[[Any], None] | None = None) -> None:
        """``leadership``: who runs (default: the store's session lock "projections");
        ``fence``: called with the cursor of every batch's transaction before it writes
        (a leader's epoch check: a stale leader's batch is refused, never half-applied)."""
        self.ledger = ledger
        self.limits = ledger.config.limits
        self.tables = TableStore(ledger)
        self.leadership = leadership or ledger.dialect.session_lock("projections")
        self.fence = fence
        self.projector: Projector | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.applied = 0  # events this runner has applied (metrics)
        self.resumes = 0
        self.failures = 0  # batches that raised (retried; metrics: a stuck runner shows)

    # -- one batch -------------------------------------------------------------------------

    def _resume(self, position: int) -> Projector:
        with self.ledger.transaction(read_only=True) as cursor:
            self.tables.lock_for_reading(cursor, (PORTFOLIO_STATE.name, POSITIONS.name,
                                                  INSTANCES.name, STATISTICS.name,
                                                  ORDERS.name))
            stored = {
                PORTFOLIO_STATE.name: self.tables.read(cursor, PORTFOLIO_STATE),
                POSITIONS.name: self.tables.read(cursor, POSITIONS,
                                                 f"WHERE status <> {self.tables.p}", ("closed",)),
                INSTANCES.name: self.tables.read(cursor, INSTANCES),
                STATISTICS.name: self.tables.read(cursor, STATISTICS),
                ORDERS.name: self.tables.read(cursor, ORDERS, f"WHERE status NOT IN "
                                              f"({self.tables.p}, {self.tables.p})", FINAL),
            }
            if self.tables.tracked(cursor) != position:
                raise _Moved
        projector = Projector(self.ledger, position)
        projector.resume(stored)
        self.resumes += 1
        return projector

    def _batch(self, after: int, size: int) -> list[Any]:
        recorder = self.ledger.recorder
        batch = list(recorder.select_notifications(after, size, inclusive_of_start=False))
        extra = 0
        while batch and not ends_transaction(batch[-1]) and extra < BOUNDARY_LOOKAHEAD_EVENTS_MAX:
            more = recorder.select_notifications(batch[-1].id, 16, inclusive_of_start=False)
            if not more:
                break
            for n in more:
                batch.append(n)
                extra += 1
                if ends_transaction(n):
                    break
        return batch

    def step(self) -> int:
        """Apply the next batch of the log; the number of events applied (0: caught up)."""
        try:
            if self.projector is not None and (
                    self.ledger.recorder.max_notification_id() or 0) <= self.projector.position:
                return 0  # nothing new: an idle poll costs one indexed read
            with self.ledger.transaction(read_only=True) as cursor:
                tracked = self.tables.tracked(cursor)
            if self.projector is None or self.projector.position != tracked:
                self.projector = self._resume(tracked)
            batch = self._batch(tracked, self.limits.projection_batch_events)
            if not batch:
                return 0
            self.projector.apply_all(batch)
            changes = self.projector.flush()
            with self.ledger.transaction() as cursor:
                if self.tables.lock_tracked(cursor) != tracked:
                    raise _Moved  # another runner applied these meanwhile: resume
                self.tables.write(cursor, changes)
                self.tables.set_tracked(cursor, changes.position)
                if self.fence is not None:
                    # Last before the commit (and after the write lock: on SQLite a read
                    # first could not be upgraded). The fence's share lock on the term row
                    # holds off the next term until this transaction ends; taken here, a
                    # process paused while holding it sits idle after a complete statement,
                    # where the server's idle-in-transaction timeout ends its session.
                    # Taken before the writes, a pause inside their pipelined statements
                    # (executemany) held it for as long as the pause: Postgres runs no idle
                    # timeout inside a pipeline.
                    self.fence(cursor)
        except _Moved:
            self.projector = None
            return 0
        except BaseException:
            self.projector = None  # its states are ahead of the tables now
            raise
        self.applied += len(batch)
        return len(batch)

    def catch_up(self) -> int:
        """Apply everything appended so far; the number of events applied."""
        total = 0
        while n := self.step():
            total += n
        return total

    # -- in the background -----------------------------------------------------------------

    def wake(self) -> None:
        """Look for new events now (after this process appended some)."""
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run, name="projections", daemon=True)
        self._thread.start()

    def stop_soon(self) -> None:
        """Ask ``run`` to return after the batch in hand (safe from a signal handler)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            stopped = not self._thread.is_alive()
            self._thread = None
            if stopped and self.leadership.held:
                try:  # a last batch: what this process appended while stopping
                    self.step()
                except Exception:
                    log.warning("last projection batch failed (the next runner applies it)",
                                exc_info=True)
        self.leadership.release()

    def run(self, on_role: Callable[[bool], None] | None = None) -> None:
        """Project while leading, stand by otherwise, until ``stop``. ``on_role(leading)`` is
        called whenever this runner starts leading or starts standing by (first on start)."""
        poll_s = self.limits.projection_poll_ms / 1000
        standby_s = self.limits.projection_standby_poll_ms / 1000
        role: bool | None = None
        while not self._stop.is_set():
            leading = self.leadership.check() or self.leadership.try_acquire()
            if leading != role:
                role = leading
                if on_role is not None:
                    on_role(leading)
            if not leading:
                self._stop.wait(standby_s)
                continue
            try:
                applied = self.step()
            except Exception:
                self.failures += 1
                log.warning("projection batch failed; retrying", exc_info=True)
                self._stop.wait(standby_s)
                continue
            if not applied:
                self._wake.wait(poll_s)
                self._wake.clear()


class _Moved(Exception):
    """The tracked position moved under us."""
