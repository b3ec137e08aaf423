"""One leader among the instances: Redis elects quickly, Postgres decides who may act.

A ``Coordinator`` is a background thread per process. Each tick (``renew_interval_ms`` as
leader, ``follower_poll_ms`` as follower) it does one of:

- leader: renew the term in the store, then the Redis lease (redis mode); losing either means
  stepping down. A leader whose own clock says the term ran out before it renewed (a paused
  process) steps down without asking.
- follower, redis mode: try the Redis lease; if won, begin the term in the store; if the term
  is still held (say by a leader in database mode), hand the lease back quietly and wait.
- follower, database or single mode: begin the term in the store directly.

Modes: "redis" (a Redis URL was given and Redis answers), "database" (a Redis URL was given
but Redis fails: the store alone elects, and Redis is probed every ``redis_probe_interval_ms``
to switch back without a restart), "single" (no Redis URL: one machine, often SQLite).

Correctness rests on the term's epoch, never on Redis: leader-only writes call ``fenced``
inside their transaction. ``lease_remaining_ms`` says how long the term is known good for; a
leader must not start a job or a send whose timeout that does not cover.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import redis

from coordination.db import DATABASE_ERRORS, StoreTarget, close_quietly, transaction
from coordination.lease import RedisLease, redis_client
from coordination.settings import CoordinationSettings
from coordination.terms import Fenced, assert_current, begin_term, end_term, renew_term

log = logging.getLogger("ledger.coordination")

Mode = Literal["redis", "database", "single"]
ChangeKind = Literal["leader_gained", "leader_lost", "mode_switched"]
T = TypeVar("T")


@dataclass(frozen=True)
class Change:
    """What a listener is told: leadership gained or lost, or the mode switched."""

    kind: ChangeKind
    epoch: int | None  # the term gained or lost (the current one for a mode switch)
    mode: Mode
    reason: str


def default_instance_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Coordinator:
    """Leader election for one role (``name``) among every instance sharing a store."""

    def __init__(self, *, conninfo: str | None = None, sqlite_path: str | None = None,
                 redis_url: str | None = None, name: str = "leader",
                 namespace: str = "ledger", instance_id: str | None = None,
                 settings: CoordinationSettings | None = None) -> None:
        self.target = StoreTarget(conninfo, sqlite_path)
        if redis_url and sqlite_path is not None:
            raise ValueError("Redis coordination needs a store every instance shares "
                             "(Postgres); a SQLite file is one machine: omit the Redis URL")
        self.dialect = self.target.dialect
        self.name = name
        self.namespace = namespace
        self.instance_id = instance_id or default_instance_id()
        self.settings = settings or CoordinationSettings()
        self.redis_url = redis_url or None
        self.lease_key = f"{namespace}:leader:{name}"

        self._lock = threading.RLock()  # leadership state
        self._db_lock = threading.Lock()  # the term connection: one transaction at a time
        self._leader = False
        self._epoch: int | None = None
        self._valid_until = 0.0  # monotonic time the term is known good until
        self._acquired_at: datetime | None = None
        self._mode: Mode = "redis" if self.redis_url else "single"
        self._listeners: list[Callable[[Change], None]] = []

        self._conn: Any = None
        self._client: redis.Redis | None = None
        self._lease: RedisLease | None = None
        self._holds_lease = False  # as far as we know: renew() tells for sure
        self._lease_missing_since: float | None = None
        self._pubsub: Any = None
        self._next_probe = 0.0

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._frozen = False
        self._thread: threading.Thread | None = None

        # metrics
        self.terms_begun = 0
        self.terms_lost = 0
        self.mode_switches = 0
        self.redis_errors = 0
        self.db_errors = 0
        self.fenced_writes = 0
        self.releases_heard = 0

    @classmethod
    def from_database_url(cls, database_url: str, **kwargs: Any) -> Coordinator:
        """A coordinator on the Ledger's own store, named by ``LEDGER_DATABASE_URL``."""
        target = StoreTarget.from_url(database_url)
        return cls(conninfo=target.conninfo, sqlite_path=target.sqlite_path, **kwargs)

    # -- what callers read ------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        """Leader now: holds a term its own clock says has not run out."""
        with self._lock:
            return self._leader and time.monotonic() < self._valid_until

    @property
    def epoch(self) -> int | None:
        """The epoch of the term held (None when none is held)."""
        with self._lock:
            return self._epoch if self._leader else None

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def leader_acquired_at(self) -> datetime | None:
        """When the term held was begun (UTC, this machine's clock; for heartbeats)."""
        with self._lock:
            return self._acquired_at if self._leader else None

    def lease_remaining_ms(self) -> int:
        """How long the term is known good for; 0 when not leader.

        Measured from the moment the last successful begin or renew was *sent*, so it never
        overstates the term. Start a leader-only job or send only if this covers its timeout.
        """
        with self._lock:
            if not self._leader:
                return 0
            return max(0, int((self._valid_until - time.monotonic()) * 1000))

    def on_change(self, callback: Callable[[Change], None]) -> Callable[[Change], None]:
        """Call ``callback`` on every change, in the thread that noticed it (the coordinator's,
        or the one whose write was fenced, or the one calling ``stop``): keep it short."""
        self._listeners.append(callback)
        return callback

    def fenced(self, cursor: Any, epoch: int | None = None) -> None:
        """Inside a leader-only write transaction: raise ``Fenced`` unless our term is current.

        ``epoch``: the term the work began under (default: the one held now). A fenced
        coordinator steps down at once.
        """
        with self._lock:
            held = self._epoch if self._leader else None
        checked = held if epoch is None else epoch
        try:
            assert_current(cursor, self.dialect, self.name, checked)
        except Fenced:
            with self._lock:
                self.fenced_writes += 1
            if held is not None and held == checked:
                self._demote("fenced: a newer term exists")
                self._wake.set()  # the thread hands the Redis lease back
            raise

    def leadership(self) -> Leadership:
        """A session-lock view of this coordinator, for a runner that leads while it does
        (``projections.runner.ProjectionRunner(..., leadership=...)``)."""
        return Leadership(self)

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> Coordinator:
        """Start the background thread (after checking Redis answers, in redis mode)."""
        if self._thread is not None:
            raise RuntimeError("coordinator already started")
        if self.redis_url:
            self._client = redis_client(self.redis_url, self.settings.redis_socket_timeout_ms)
            self._lease = RedisLease(self._client, self.lease_key, self.instance_id,
                                     self.settings.lease_ttl_ms)
            try:
                self._client.ping()
            except redis.RedisError as error:
                self.redis_errors += 1
                self._mode = "database"
                self._next_probe = time.monotonic() + self.settings.redis_probe_interval_ms / 1000
                log.warning("Redis at %s does not answer (%s): electing through the store",
                            _redact(self.redis_url), error)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"coordinator-{self.name}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Step down and hand over at once: end the term, release the lease, tell followers."""
        self._stop.set()
        self._wake.set()
        self._join()
        epoch = self._demote("stopping")
        if epoch is not None:
            self._end_term(epoch)
        if self._lease is not None:
            with contextlib.suppress(redis.RedisError):
                self._lease.release(publish=True)  # compare-and-delete: a no-op if not ours
        self._holds_lease = False
        self._close()

    def __enter__(self) -> Coordinator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _freeze(self) -> None:
        """Test hook: stop ticking and release nothing, as a crashed process would."""
        self._frozen = True
        self._wake.set()
        self._join()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.join(self.settings.stop_join_timeout_ms / 1000)
            if self._thread.is_alive():
                log.warning("coordinator thread still busy after %d ms",
                            self.settings.stop_join_timeout_ms)
            self._thread = None

    def _close(self) -> None:
        self._close_pubsub()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        with self._db_lock:
            close_quietly(self._conn)
            self._conn = None

    # -- the thread -------------------------------------------------------------------------

    def _running(self) -> bool:
        return not self._stop.is_set() and not self._frozen

    def _run(self) -> None:
        while self._running():
            started = time.monotonic()
            try:
                self._tick()
            except Exception:  # a bug, not an outage (those are handled in the tick)
                log.exception("coordination tick failed")
            if not self._running():
                break
            self._pause(started)

    def _tick(self) -> None:
        if self._mode == "database" and time.monotonic() >= self._next_probe:
            self._probe_redis()
        if self._leader:
            self._renew()
        else:
            if self._holds_lease:  # fenced from another thread: hand the lease on
                self._release_lease(publish=True)
            self._try_lead()

    def _pause(self, started: float) -> None:
        if self._leader:
            interval_s = self.settings.renew_interval_ms / 1000
            self._wake.wait(max(0.0, started + interval_s - time.monotonic()))
            self._wake.clear()
            return
        poll_s = self.settings.follower_poll_ms / 1000
        if self._mode == "redis" and self._lease is not None:
            self._wait_for_release(poll_s)
        else:
            self._wake.wait(poll_s)
            self._wake.clear()

    def _wait_for_release(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the leader's release message (then try at once)."""
        assert self._client is not None and self._lease is not None
        deadline = time.monotonic() + timeout_s
        try:
            if self._pubsub is None:
                self._pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                self._pubsub.subscribe(self._lease.channel)
            while self._running() and not self._wake.is_set():
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    return
                if self._pubsub.get_message(timeout=remaining_s) is not None:
                    self.releases_heard += 1
                    return
        except redis.RedisError as error:
            self._redis_failed(error)
        finally:
            self._wake.clear()

    def _close_pubsub(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                self._pubsub.close()
            self._pubsub = None

    # -- leader -----------------------------------------------------------------------------

    def _renew(self) -> None:
        epoch = self._epoch
        assert epoch is not None
        if time.monotonic() >= self._valid_until:
            self._lose("the term ran out before it was renewed (was this process paused?)")
            return
        ttl_ms = self.settings.lease_ttl_ms
        sent = time.monotonic()
        try:
            ours = self._db(lambda cursor: renew_term(cursor, self.dialect, self.name,
                                                      self.instance_id, epoch, ttl_ms))
        except DATABASE_ERRORS as error:
            self._lose(f"renewing the term failed: {error}")
            return
        if not ours:
            self._lose("the term is no longer ours")
            return
        with self._lock:
            if self._leader and self._epoch == epoch:
                self._valid_until = sent + ttl_ms / 1000
        if self._mode == "redis":
            self._renew_lease()

    def _renew_lease(self) -> None:
        assert self._lease is not None
        try:
            if self._holds_lease:
                held = self._lease.renew()
                if not held:
                    self._lose("the Redis lease passed to another")
                    return
            else:  # back from database mode: the key may still be ours, or free
                held = self._lease.renew() or self._lease.try_acquire()
        except redis.RedisError as error:
            self._redis_failed(error)
            return
        if held:
            self._holds_lease = True
            self._lease_missing_since = None
            return
        # A follower holds the lease for a moment (it found our term held and gives it
        # back). The term is ours, so keep leading; only a lease gone for a whole TTL is lost.
        now = time.monotonic()
        if self._lease_missing_since is None:
            self._lease_missing_since = now
        elif now - self._lease_missing_since >= self.settings.lease_ttl_ms / 1000:
            self._lose("could not take the Redis lease back for a whole lease TTL")

    def _lose(self, reason: str) -> None:
        """Step down (in the coordinator's thread) and hand over at once."""
        epoch = self._demote(reason)
        if epoch is not None:
            self._end_term(epoch)
        self._release_lease(publish=True)

    def _demote(self, reason: str) -> int | None:
        """Leadership state only (safe from any thread); the epoch given up, if any."""
        with self._lock:
            if not self._leader:
                return None
            epoch = self._epoch
            self._leader = False
            self._epoch = None
            self._valid_until = 0.0
            self._acquired_at = None
            self._lease_missing_since = None
            self.terms_lost += 1
        level = logging.INFO if reason == "stopping" else logging.WARNING
        log.log(level, "%s: no longer leader of %r (epoch %s): %s", self.instance_id,
                self.name, epoch, reason)
        self._emit(Change("leader_lost", epoch, self._mode, reason))
        return epoch

    def _end_term(self, epoch: int) -> None:
        try:
            self._db(lambda cursor: end_term(cursor, self.dialect, self.name,
                                             self.instance_id, epoch))
        except DATABASE_ERRORS as error:
            log.warning("could not end term %s (it runs out on its own): %s", epoch, error)

    # -- follower ---------------------------------------------------------------------------

    def _try_lead(self) -> None:
        if self._mode == "redis":
            assert self._lease is not None
            try:
                if not self._holds_lease:
                    if not self._lease.try_acquire():
                        return
                    self._holds_lease = True
            except redis.RedisError as error:
                self._redis_failed(error)  # now in database mode: try the store directly
        ttl_ms = self.settings.lease_ttl_ms
        sent = time.monotonic()
        try:
            epoch = self._db(lambda cursor: begin_term(cursor, self.dialect, self.name,
                                                       self.instance_id, ttl_ms))
        except DATABASE_ERRORS as error:
            log.debug("could not begin a term: %s", error)
            epoch = None
        if epoch is None:
            if self._holds_lease:
                self._release_lease(publish=False)  # the term is held: no handover to tell
            return
        with self._lock:
            self._leader = True
            self._epoch = epoch
            self._valid_until = sent + ttl_ms / 1000
            self._acquired_at = datetime.now(UTC)
            self.terms_begun += 1
        self._close_pubsub()
        log.info("%s: leader of %r, epoch %d (%s mode)", self.instance_id, self.name, epoch,
                 self._mode)
        self._emit(Change("leader_gained", epoch, self._mode, f"term begun in {self._mode} mode"))

    def _release_lease(self, publish: bool) -> None:
        if self._lease is None or self._mode != "redis":
            self._holds_lease = False
            return
        try:
            self._lease.release(publish=publish)
        except redis.RedisError as error:
            self._redis_failed(error)
        self._holds_lease = False

    # -- modes ------------------------------------------------------------------------------

    def _redis_failed(self, error: Exception) -> None:
        self.redis_errors += 1
        self._holds_lease = False  # unknown; renew() finds out once Redis is back
        self._close_pubsub()
        if self._client is not None:  # so the first probe after a restart gets a fresh socket
            with contextlib.suppress(Exception):
                self._client.connection_pool.disconnect()
        self._next_probe = time.monotonic() + self.settings.redis_probe_interval_ms / 1000
        if self._mode == "redis":
            self._switch_mode("database", f"Redis failed: {error}")

    def _probe_redis(self) -> None:
        assert self._client is not None
        try:
            self._client.ping()
        except redis.RedisError:
            self._next_probe = time.monotonic() + self.settings.redis_probe_interval_ms / 1000
            return
        self._switch_mode("redis", "Redis answers again")

    def _switch_mode(self, mode: Mode, reason: str) -> None:
        with self._lock:
            if self._mode == mode:
                return
            self._mode = mode
            self.mode_switches += 1
            epoch = self._epoch if self._leader else None
        if mode == "database":
            log.warning("%s: switching to database mode: %s", self.instance_id, reason)
        else:
            log.info("%s: switching back to %s mode: %s", self.instance_id, mode, reason)
        self._emit(Change("mode_switched", epoch, mode, reason))

    # -- plumbing ---------------------------------------------------------------------------

    def _db(self, statement: Callable[[Any], T]) -> T:
        """Run ``statement`` in one transaction on the term connection (opened on demand)."""
        with self._db_lock:
            try:
                if self._conn is None:
                    self._conn = self.target.connect(self.settings.db_statement_timeout_ms,
                                                     self.settings.db_connect_timeout_s,
                                                     application_name="ledger-coordinator")
                with transaction(self._conn, self.dialect) as cursor:
                    return statement(cursor)
            except DATABASE_ERRORS:
                self.db_errors += 1
                if getattr(self._conn, "broken", False) or getattr(self._conn, "closed", False):
                    close_quietly(self._conn)
                    self._conn = None
                raise

    def _emit(self, change: Change) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:
                log.exception("coordination listener failed on %s", change.kind)


def _redact(url: str) -> str:
    """A Redis URL without its password, for logs."""
    if "@" not in url:
        return url
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"


class Leadership:
    """Held while the coordinator leads. Acquiring and releasing are the coordinator's
    business (its thread, its ``stop``): here they only ask."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator

    @property
    def held(self) -> bool:
        return self.coordinator.is_leader

    def try_acquire(self) -> bool:
        return self.coordinator.is_leader

    def check(self) -> bool:
        return self.coordinator.is_leader

    def release(self) -> None:
        pass  # the coordinator hands over in stop(), after the runner's last batch
