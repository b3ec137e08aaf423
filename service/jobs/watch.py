"""The watch job: alert when the projections fall behind, or an instance is newly crashed.

Leader-only so that each problem is alerted by one instance, not by all. It only reads:

- projection lag (``projections.runner.lag``) beyond ``Limits.projection_lag_events_max``
  events or ``projection_lag_s_max`` seconds (the bounds ``/ready`` answers 503 beyond);
- ``coordination.heartbeat.instances``: an instance whose heartbeat is older than
  ``heartbeat_stale_ms`` and that did not stop cleanly reads as crashed. Each crashed
  instance id is alerted once (again only if it recovers and crashes anew). On its first run
  a leader alerts the instances that crashed recently (``CRASH_RECENT_S``) and takes older
  crashes, already alerted by an earlier leader or long forgotten, as known.
"""

from __future__ import annotations

from datetime import UTC, timedelta

from coordination import heartbeat
from ledger import wire
from ledger.application import Ledger
from projections.runner import lag
from service.alerts import Alerts
from service.jobs.runner import Clock, JobReport, SystemClock

WATCH_INTERVAL_S = 5  # how often the leader looks
WATCH_TIMEOUT_MS = 500  # a few indexed reads
CRASH_RECENT_S = 600  # a first run alerts crashes whose last heartbeat is this recent
CRASHED_LISTED_MAX = 20  # instance ids named in one alert


class WatchJob:
    """Alerts on projection lag and newly crashed instances."""

    name = "watch"

    def __init__(self, ledger: Ledger, alerts: Alerts, *, stale_ms: int,
                 clock: Clock | None = None, interval_s: float = WATCH_INTERVAL_S,
                 timeout_ms: int = WATCH_TIMEOUT_MS) -> None:
        self.ledger = ledger
        self.alerts = alerts
        self.stale_ms = stale_ms
        self.clock: Clock = clock or SystemClock()
        self.interval_s = interval_s
        self.timeout_ms = timeout_ms
        self._alerted: set[str] | None = None  # crashed ids alerted (None: not run yet)

    def run(self, epoch: int | None) -> JobReport:
        report = JobReport()
        self._projection_lag(report)
        self._crashed(report)
        return report

    def _projection_lag(self, report: JobReport) -> None:
        limits = self.ledger.config.limits
        behind = lag(self.ledger)
        report.facts.update(lag_events=behind.events, lag_seconds=round(behind.seconds, 3))
        if (behind.events > limits.projection_lag_events_max
                or behind.seconds > limits.projection_lag_s_max):
            self.alerts.alert(
                "projection_lag", "the projection tables are behind the log beyond their bound",
                events=behind.events, seconds=round(behind.seconds, 1),
                events_max=limits.projection_lag_events_max,
                seconds_max=limits.projection_lag_s_max, position=behind.position,
                head=behind.head)
            report.done.append({"alert": "projection_lag"})

    def _crashed(self, report: JobReport) -> None:
        with self.ledger.transaction(read_only=True) as cursor:
            rows = heartbeat.instances(cursor, self.ledger.dialect.name, self.stale_ms)
        crashed = {r.instance_id: r for r in rows if r.status == "crashed"}
        if self._alerted is None:  # first run: older crashes are known already
            recent = self.clock.now() - timedelta(seconds=CRASH_RECENT_S)
            self._alerted = {i for i, r in crashed.items()
                             if r.last_heartbeat is not None and r.last_heartbeat < recent}
        new = sorted(set(crashed) - self._alerted)
        self._alerted = set(crashed)  # one that recovers and crashes again is new again
        report.facts["crashed"] = len(crashed)
        if not new:
            return
        named = new[:CRASHED_LISTED_MAX]
        last = {i: crashed[i].last_heartbeat for i in named}
        self.alerts.alert(
            "instance_crashed",
            f"{len(new)} instance(s) stopped heartbeating without a clean stop: "
            + ", ".join(f"{i} (last heartbeat {wire.iso(last[i].astimezone(UTC))})"
                        if last[i] is not None else i for i in named)
            + (f" and {len(new) - len(named)} more" if len(new) > len(named) else ""),
            stale_ms=self.stale_ms)
        report.done.extend({"alert": "instance_crashed", "instance_id": i} for i in new)
