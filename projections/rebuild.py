"""`ledger rebuild-projections`: rebuild tables from the whole log into fresh copies and
swap them in atomically, while ingestion and the live runner keep going.

1. Create an empty copy of each table being rebuilt, with the live table's columns,
   constraints and indexes (the migrations stay the schema's single source: add a column in
   a migration, teach ``projections.rows`` to fill it, rebuild).
2. Replay the log into the copies, ``projection_rebuild_batch_events`` per transaction
   (rows a batch touches many times are written once; new signal rows go by COPY). On
   Postgres the next chunk is read and the last one's rows written while the projector folds
   (docs/BENCHMARKS.md, "Projection rebuild": the replay is bound by decoding events).
3. Catch up with the live tables' tracked position, then, holding the tracking row's lock
   (the live runner waits on it; on Postgres the last few events it applied meanwhile are
   replayed into the copies under that lock), drop each live table and rename its copy into
   place, in one transaction. Readers see the old table or the new one, never neither.
   Rebuilding every table also moves the tracked position to the end of the replay.

Events appended during the rebuild are in the result: the copies are caught up to the
position the swap happens at, and the live runner goes on from there.
"""

from __future__ import annotations

import gc
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from eventsourcing.persistence import OperationalError

from ledger.application import Ledger
from projections.projector import Changes, Projector, chunks, read_chunk
from projections.schema import TABLES
from projections.tables import TableStore

SWAP_ATTEMPTS_MAX = 100  # times the swap may find the live runner moved on, then give up
SWAP_RETRY_WAIT_MS = 100  # pause before trying a swap again after a lock timeout
SWAP_LOCK_WAIT_MS = 100  # longest the swap waits for readers to let go of the live tables
# A replay allocates millions of short-lived dicts (decoded event states) beside a large,
# long-lived heap (the projector's states): at the default threshold (700) the cyclic
# collector ran every few events and took ~40% of a 100k-event rebuild's CPU time.
REPLAY_GC_THRESHOLD = 100_000
# The name of a rebuild's copy of a table: the table's own name, "__r" and 8 hex digits (the
# suffix rebuild() makes). A rebuild killed outright (SIGKILL, power loss) leaves them behind.
_COPY_NAME = re.compile(rf"(?:{'|'.join(map(re.escape, TABLES))})__r[0-9a-f]{{8}}")


class UnknownProjection(ValueError):
    pass


@dataclass(frozen=True)
class RebuildReport:
    tables: tuple[str, ...]
    events: int
    seconds: float
    position: int  # the log position the swapped-in tables are at

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"tables": list(self.tables), "events": self.events,
                "seconds": round(self.seconds, 3), "events_per_s": round(self.events_per_s),
                "position": self.position}


def table_names(names: Iterable[str] | None) -> tuple[str, ...]:
    """The tables named (default: all), in ``TABLES`` order."""
    asked = set(names or TABLES)
    unknown = sorted(asked - set(TABLES))
    if unknown:
        raise UnknownProjection(f"no projection {', '.join(map(repr, unknown))} "
                                f"(there are: {', '.join(TABLES)})")
    return tuple(t for t in TABLES if t in asked)


def rebuild(ledger: Ledger, names: Iterable[str] | None = None, *,
            progress: Callable[[int, int], None] | None = None) -> RebuildReport:
    chosen = table_names(names)  # in TABLES order: the order every lock is taken in
    everything = set(chosen) == set(TABLES)
    suffix = f"__r{uuid.uuid4().hex[:8]}"
    copies = {name: f"{name}{suffix}" for name in chosen}
    live = TableStore(ledger)
    fresh = TableStore(ledger, physical=copies, only=chosen)
    batch = ledger.config.limits.projection_rebuild_batch_events
    started = time.perf_counter()
    dialect = ledger.dialect
    with ledger.transaction() as cursor:
        live.lock_tracked(cursor)  # SQLite: the write lock first (a read cannot upgrade)
        _drop_copies(cursor, ledger)  # a killed rebuild's, left behind
        for name, copy in copies.items():
            dialect.copy_table(cursor, name, copy, suffix)
    try:
        projector = Projector(ledger)
        for _attempt in range(SWAP_ATTEMPTS_MAX):
            with ledger.transaction(read_only=True) as cursor:
                tracked = live.tracked(cursor)
            head = ledger.recorder.max_notification_id() or 0
            target = max(tracked, head) if everything else tracked
            if projector.position < target:
                _replay(ledger, projector, fresh, batch, target, progress)
                continue
            caught_up: list[Changes] = []  # written under the lock, in the swap's transaction
            try:
                with ledger.transaction() as cursor:
                    locked = live.lock_tracked(cursor)
                    if locked > projector.position:
                        # The live runner moved on since. It waits on this lock now, so where
                        # the log can be read under it (Postgres) the copies catch up to it
                        # here, in this transaction; elsewhere (SQLite: one writer, reading
                        # could wait on ourselves) let go and catch up outside, then retry.
                        if not dialect.reads_under_write_lock:
                            continue
                        for notifications in chunks(ledger, projector.position, batch,
                                                    stop=locked):
                            projector.apply_all(notifications)
                            caught_up.append(projector.flush())
                            fresh.write(cursor, caught_up[-1])
                    # In the readers' order, and never waiting long enough (Postgres looks
                    # for deadlocks after 1 s) to deadlock a reader that takes tables in
                    # another order: we give up and try again instead.
                    dialect.lock_for_swapping(cursor, list(copies), SWAP_LOCK_WAIT_MS)
                    for name, copy in copies.items():
                        dialect.replace_table(cursor, name, copy)
                    if everything:
                        live.set_tracked(cursor, projector.position)
            except OperationalError:
                # A long read held a table past the lock timeout, or a reader taking tables in
                # another order deadlocked with the swap and Postgres chose us. The catch-up
                # rolled back with it, but the projector has applied it: the copies get it now.
                if caught_up:
                    with ledger.transaction() as cursor:
                        for changes in caught_up:
                            fresh.write(cursor, changes)
                time.sleep(SWAP_RETRY_WAIT_MS / 1000)
                continue
            return RebuildReport(chosen, projector.applied, time.perf_counter() - started,
                                 projector.position)
        raise RuntimeError(f"the live runner kept moving on; gave up after "
                           f"{SWAP_ATTEMPTS_MAX} attempts to swap (nothing was swapped)")
    except BaseException:
        with ledger.transaction() as cursor:
            for copy in copies.values():
                cursor.execute(f"DROP TABLE IF EXISTS {copy}")
        raise


def _replay(ledger: Ledger, projector: Projector, fresh: TableStore, batch: int, target: int,
            progress: Callable[[int, int], None] | None) -> None:
    """Replay the log up to ``target`` into the copies, a transaction per chunk.

    On Postgres the next chunk is read and the previous chunk's rows are written while this
    one is applied (threads: the driver waits on the server without the GIL), so the replay
    costs about the projector's own time rather than the sum of reads, folds and writes.
    Writes stay in log order: one at a time, each waiting for the one before.
    """
    with _fewer_collections():
        _replay_batches(ledger, projector, fresh, batch, target, progress)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Collect cycles every REPLAY_GC_THRESHOLD allocations at most, until the replay ends."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], REPLAY_GC_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _replay_batches(ledger: Ledger, projector: Projector, fresh: TableStore, batch: int,
                    target: int, progress: Callable[[int, int], None] | None) -> None:
    if not ledger.dialect.concurrent_io:
        for notifications in chunks(ledger, projector.position, batch, stop=target):
            projector.apply_all(notifications)
            _write(ledger, fresh, projector.flush())
            if progress:
                progress(projector.position, target)
        return
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="rebuild") as pool:
        reading: Future[list[Any]] | None = pool.submit(
            read_chunk, ledger, projector.position, batch, target)
        writing: Future[None] | None = None
        while reading is not None:
            notifications = reading.result()
            if not notifications:
                break
            last = notifications[-1].id
            reading = (pool.submit(read_chunk, ledger, last, batch, target) if last < target
                       else None)
            projector.apply_all(notifications)
            changes = projector.flush()
            if writing is not None:
                writing.result()
            writing = pool.submit(_write, ledger, fresh, changes)
            if progress:
                progress(projector.position, target)
        if writing is not None:
            writing.result()


def _write(ledger: Ledger, fresh: TableStore, changes: Changes) -> None:
    with ledger.transaction() as cursor:
        fresh.write(cursor, changes)


# -- copies a killed rebuild left behind ---------------------------------------------------


def copy_tables(ledger: Ledger) -> list[str]:
    """The rebuild copies in the store: a running rebuild's, or those a killed one left."""
    with ledger.transaction(read_only=True) as cursor:
        return _copy_tables(cursor, ledger)


def drop_leftover_copies(ledger: Ledger) -> list[str]:
    """Drop every rebuild copy in the store (a rebuild running now fails, swapping nothing);
    the names dropped. Only tables named exactly like a projection table's copy."""
    with ledger.transaction() as cursor:
        return _drop_copies(cursor, ledger)


def _copy_tables(cursor: Any, ledger: Ledger) -> list[str]:
    return sorted(name for name in ledger.dialect.table_names(cursor)
                  if _COPY_NAME.fullmatch(name))


def _drop_copies(cursor: Any, ledger: Ledger) -> list[str]:
    found = _copy_tables(cursor, ledger)
    for copy in found:  # their indexes go with them
        cursor.execute(f"DROP TABLE IF EXISTS {copy}")
    return found
