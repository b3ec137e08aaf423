"""Prometheus metrics of one `ledger serve` process (its own registry: no globals).

- ``ledger_signals_total{outcome}``: every webhook call, by what became of it: accepted,
  rejected, duplicate (decided), invalid (400/415/422), too_large (413), unauthorized (401),
  forbidden (403, source address), unavailable (503: store down, timed out or contended).
- ``ledger_decision_seconds``: time from a valid authenticated alert to its answer, queueing
  for a worker thread included (histogram).
- ``ledger_version_conflicts_retried_total``: decisions that lost a stream-version conflict
  and decided again (the ledger's own counter).
- ``ledger_decisions_outstanding``: decisions queued or running right now.
- ``ledger_projection_lag_events`` / ``ledger_projection_lag_seconds``: how far the projection
  tables are behind the log (events not yet applied; age of the oldest of them), read from the
  store at scrape time (absent while the store does not answer).
- ``ledger_projection_position``: the log position the tables are at.
- ``ledger_projection_leader``: 1 if this process runs the projections, 0 if it stands by
  (absent when the service runs no runner).
- ``ledger_projection_events_applied_total``: events this process's runner has applied.
- ``ledger_leader`` / ``ledger_leader_epoch`` / ``ledger_coordination_mode{mode}``: whether
  this instance leads, under which term, and how leaders are elected (redis, database, single);
  ``ledger_leader_terms_begun_total``, ``ledger_leader_terms_lost_total``,
  ``ledger_coordination_mode_switches_total``, ``ledger_fenced_writes_total`` (leader-only
  writes the store refused: a paused leader woke up after its term had passed).
- ``ledger_projection_batches_failed_total``: batches that raised and were retried (a runner
  stuck on one batch shows here, in the log, and as growing lag).
- ``ledger_projection_copy_tables``: rebuild copy tables in the store (``<table>__r<hex>``),
  read at scrape time: a running rebuild's, or left by one that was killed; above 0 for
  longer than a rebuild takes, run ``ledger migrate`` (the next rebuild drops them too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

OUTCOMES = ("accepted", "rejected", "duplicate", "invalid", "too_large", "unauthorized",
            "forbidden", "unavailable")
# TradingView's 3 s budget sits at the top; our p99 target (25 ms) in the middle.
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0,
                     3.0)
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

if TYPE_CHECKING:
    from coordination.coordinator import Coordinator
    from ledger.application import Ledger
    from projections.runner import ProjectionRunner

log = logging.getLogger("ledger.api")


class _LiveValues:
    """Values read from the ledger and the worker pool at scrape time."""

    def __init__(self, conflicts: Callable[[], int], outstanding: Callable[[], int]) -> None:
        self.conflicts = conflicts
        self.outstanding = outstanding

    def collect(self) -> Iterable[Metric]:
        yield CounterMetricFamily(
            "ledger_version_conflicts_retried",
            "Decisions that lost a stream-version conflict and were decided again",
            value=self.conflicts())
        yield GaugeMetricFamily("ledger_decisions_outstanding",
                                "Decisions queued for or running in a worker thread",
                                value=self.outstanding())


class _ProjectionValues:
    def __init__(self, ledger: Ledger, runner: ProjectionRunner | None) -> None:
        self.ledger = ledger
        self.runner = runner

    def collect(self) -> Iterable[Metric]:
        from eventsourcing.persistence import PersistenceError

        from projections.rebuild import copy_tables
        from projections.runner import lag

        if self.runner is not None:
            yield GaugeMetricFamily("ledger_projection_leader",
                                    "1 if this process runs the projections, 0 if it stands by",
                                    value=int(self.runner.leadership.held))
            yield CounterMetricFamily("ledger_projection_events_applied",
                                      "Events this process's projection runner has applied",
                                      value=self.runner.applied)
            yield CounterMetricFamily("ledger_projection_batches_failed",
                                      "Projection batches that raised and were retried",
                                      value=self.runner.failures)
        try:
            behind = lag(self.ledger)
            copies = len(copy_tables(self.ledger))
        except PersistenceError as e:
            log.warning("metrics: projection lag unknown: %s", type(e).__name__)
            return
        yield GaugeMetricFamily("ledger_projection_lag_events",
                                "Events in the log not yet applied to the projection tables",
                                value=behind.events)
        yield GaugeMetricFamily("ledger_projection_lag_seconds",
                                "Age of the oldest event not yet applied (0 when caught up)",
                                value=behind.seconds)
        yield GaugeMetricFamily("ledger_projection_position",
                                "Log position the projection tables are at",
                                value=behind.position)
        yield GaugeMetricFamily("ledger_projection_copy_tables",
                                "Rebuild copy tables in the store (a running rebuild's, or "
                                "left by a killed one)", value=copies)


class _CoordinatorValues:
    def __init__(self, coordinator: Coordinator) -> None:
        self.c = coordinator

    def collect(self) -> Iterable[Metric]:
        c = self.c
        yield GaugeMetricFamily("ledger_leader", "1 while this instance leads (its term is "
                                "current), else 0", value=int(c.is_leader))
        yield GaugeMetricFamily("ledger_leader_epoch", "The epoch of the term this instance "
                                "holds (0 when it holds none)", value=c.epoch or 0)
        mode = GaugeMetricFamily("ledger_coordination_mode",
                                 "1 for the coordination mode in force", labels=["mode"])
        for name in ("redis", "database", "single"):
            mode.add_metric([name], int(c.mode == name))
        yield mode
        for name, value, text in (
                ("ledger_leader_terms_begun", c.terms_begun, "Terms this instance began"),
                ("ledger_leader_terms_lost", c.terms_lost, "Terms this instance lost"),
                ("ledger_coordination_mode_switches", c.mode_switches,
                 "Switches between redis and database mode"),
                ("ledger_fenced_writes", c.fenced_writes,
                 "Leader-only writes refused because a newer term existed")):
            yield CounterMetricFamily(name, text, value=value)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.signals = Counter("ledger_signals", "Webhook calls by outcome", ["outcome"],
                               registry=self.registry)
        for outcome in OUTCOMES:
            self.signals.labels(outcome)  # every series exists from the start, at 0
        self.decision_seconds = Histogram(
            "ledger_decision_seconds", "Time from a valid alert to its answer",
            buckets=LATENCY_BUCKETS_S, registry=self.registry)

    def watch(self, conflicts: Callable[[], int], outstanding: Callable[[], int]) -> None:
        self.registry.register(_LiveValues(conflicts, outstanding))

    def watch_projections(self, ledger: Ledger, runner: ProjectionRunner | None) -> None:
        self.registry.register(_ProjectionValues(ledger, runner))

    def watch_coordinator(self, coordinator: Coordinator) -> None:
        self.registry.register(_CoordinatorValues(coordinator))

    def count(self, outcome: str) -> None:
        assert outcome in OUTCOMES, outcome
        self.signals.labels(outcome).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
