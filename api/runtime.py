"""What the endpoints share while the service runs: the ledger, the read model, the worker
pools, the coordinator (leadership and heartbeats), the projection runner, the leader jobs
and the metrics. Opened by the lifespan; closed after in-flight work ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, Protocol

from api.dedupe import Dedupe
from api.metrics import Metrics
from api.pool import WorkerPool
from api.read_model import ReadModel
from api.settings import ServeSettings
from coordination.coordinator import Coordinator
from coordination.heartbeat import Heartbeat
from coordination.lease import redis_client
from coordination.signal_lock import SignalLocks
from ledger import instances
from ledger.application import Ledger
from projections.runner import ProjectionRunner

log = logging.getLogger("ledger.api")


class BackgroundJobs(Protocol):
    """Leader-only jobs (``service.jobs.ServeJobs``): started once the coordinator and the
    projection runner run, stopped before anything else on close."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Runtime:
    """What the endpoints share. Opened by the lifespan; closed after in-flight work ends."""

    def __init__(self, settings: ServeSettings, open_ledger: Callable[[], Ledger],
                 read_model: Callable[[Ledger], ReadModel],
                 open_runner: Callable[[], ProjectionRunner] | None,
                 coordinator: Coordinator | None = None,
                 recover: Callable[[Ledger], Any] | None = None,
                 jobs: BackgroundJobs | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._open_ledger = open_ledger
        self._read_model = read_model
        self._open_runner = open_runner
        self.coordinator = coordinator  # None: the runner leads by its own session lock
        self.jobs = jobs  # None: no leader jobs in this process
        self.heartbeat: Heartbeat | None = None
        self.dedupe = Dedupe(None, lambda: "single")
        self.desk: Callable[[], Any] | None = None  # an order desk on this runtime's ledger
        self._recover = recover
        self.recovery: Any = None  # what the start found (``as_dict()``), shown by /ready
        self.projections: ProjectionRunner | None = None  # None: another process projects
        self._ledger: Ledger | None = None
        self._reads: ReadModel | None = None
        self._decisions: WorkerPool | None = None
        self._reads_pool: WorkerPool | None = None

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None, "runtime not opened"
        return self._ledger

    @property
    def reads(self) -> ReadModel:
        assert self._reads is not None, "runtime not opened"
        return self._reads

    @property
    def decisions(self) -> WorkerPool:
        assert self._decisions is not None, "runtime not opened"
        return self._decisions

    @property
    def reads_pool(self) -> WorkerPool:
        assert self._reads_pool is not None, "runtime not opened"
        return self._reads_pool

    def open(self) -> None:
        s = self.settings
        self._ledger = self._open_ledger()
        if self._recover is not None:
            self.recovery = self._recover(self._ledger)
        self._reads = self._read_model(self._ledger)
        self._decisions = WorkerPool("decide", s.decision_threads, s.queue_depth_max)
        # Reads queue only as deep as their threads: a scan must not hold back the next one.
        self._reads_pool = WorkerPool("read", s.read_threads, s.read_threads)
        ledger = self._ledger
        decisions = self._decisions
        self.metrics.watch(conflicts=lambda: ledger.conflicts_retried,
                           outstanding=lambda: decisions.outstanding)
        self._record_instance(started=True)
        if self.coordinator is not None:
            c = self.coordinator
            c.start()
            self.heartbeat = Heartbeat(c, port=self.settings.port or None,
                                       version=version("portfolio-ledger")).start()
            if c.redis_url:
                locks = SignalLocks(redis_client(c.redis_url, c.settings.redis_socket_timeout_ms),
                                    c.namespace, c.settings.signal_lock_ttl_ms,
                                    c.settings.signal_lock_poll_ms)
                self.dedupe = Dedupe(locks, lambda: c.mode)
        if self._open_runner is not None:
            self.projections = self._open_runner()
            self.projections.start()
        self.metrics.watch_projections(ledger, self.projections)
        if self.coordinator is not None:
            self.metrics.watch_coordinator(self.coordinator)
        if self.jobs is not None:
            self.jobs.start()

    def _record_instance(self, *, started: bool) -> None:
        try:
            if started:
                instances.record_started(self.ledger, self.settings.port or None,
                                         version("portfolio-ledger"))
            else:
                instances.record_stopped(self.ledger)
        except Exception as e:  # instance_metadata is informative; serving is what matters
            log.warning("could not record this instance %s: %s",
                        "starting" if started else "stopping", e)

    def close(self) -> None:
        """Let running decisions commit (bounded), then release the store's connections."""
        wait_s = self.settings.shutdown_wait_ms / 1000
        if self.jobs is not None:
            self.jobs.stop()  # first: no leader-only work starts while we hand over
        for pool in (self._decisions, self._reads_pool):
            if pool is not None and not pool.shutdown(timeout_s=wait_s):
                log.warning("%s: calls still running after %d ms; closing the store under "
                            "them (each is one transaction: none commits half)", pool.name,
                            self.settings.shutdown_wait_ms)
        if self._ledger is not None:
            self._record_instance(started=False)
        if self.projections is not None:
            self.projections.stop(timeout_s=wait_s)  # its last batch, while still leading
            self.projections.ledger.close()
        if self.heartbeat is not None:
            self.heartbeat.stop()  # reads "stopped", not "crashed"
        if self.coordinator is not None:
            self.coordinator.stop()  # ends the term and releases the lease: handover at once
        if self._ledger is not None:
            self._ledger.close()
