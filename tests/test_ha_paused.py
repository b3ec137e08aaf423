"""A leader paused past its term (SIGSTOP, as a GC pause, a VM migration or a debugger would)
wakes up as a follower, and nothing it had in hand reaches the books.

Two `ledger serve` instances on one Postgres store with a redis-server of their own (lease
and term 1000 ms). Alerts go to the leader right up to the pause, so its projection runner
has work in hand, and to the other instance during the pause, so the log moves on under the
sleeping leader.

- Paused anywhere: the other instance leads within 2.5 s under a newer epoch; on SIGCONT the
  old leader says ``leader: false`` at once, and it either stepped down before trying a write
  (its own clock says the term ran out) or its write was refused by the fence
  (``ledger_fenced_writes_total``). Which of the two happened is printed.
- Paused in the middle of a projection batch's writes (caught by the test in pg_locks and
  pg_stat_activity): the next term must still begin within about one term, and the batch is
  refused by the fence when the process wakes. (Before the fence was taken last in the
  batch, its share lock was held across the batch's pipelined statements, where Postgres runs
  no idle timeout: the next term waited for as long as the pause.)

Either way every alert is answered 200 (after retries, as TradingView sends them), decided
once, and `ledger verify` finds every table equal to the log.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

from tests.ha_cluster import (
    CLIENT_TIMEOUT_S,
    Answer,
    Cluster,
    Delivery,
    Instance,
    Prober,
    alert_plan,
    caught_up,
    check_exactly_once,
    decisions_in_log,
    migrate,
    plain_conninfo,
    send_with_retries,
    signal_rows,
    single_leader,
    until,
    verify,
    write_config,
)

pytestmark = pytest.mark.postgres

PAUSE_S = 3.0  # three lease TTLs
TAKEOVER_S_MAX = 2.5  # another leads this soon after the pause began (the term is 1 s)
AWAKE_S_MAX = 2.0  # the woken leader says leader:false this soon after SIGCONT
SETTLE_S = 20
CATCH_UP_S = 30
RETRIES = 5  # an alert caught in the paused process's locks is retried, as TradingView does
SENDERS = 4
CATCH_ATTEMPTS = 60  # tries at pausing the leader inside a fenced batch
LOCK_POLL_S = 5  # bound on seeing one fenced batch while alerts flow


class Senders:
    """SENDERS threads sending alerts to one instance (``target``, switchable) until
    stopped; every answer kept."""

    def __init__(self, plan: list[Delivery], target: Instance) -> None:
        self.plan = iter(plan)
        self.target = target
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(SENDERS)]
        for t in self.threads:
            t.start()

    def _next(self) -> tuple[Delivery, Instance] | None:
        with self._lock:
            if self._halt.is_set():
                return None
            delivery = next(self.plan, None)
            return None if delivery is None else (delivery, self.target)

    def _run(self) -> None:
        clients: dict[str, httpx.Client] = {}
        try:
            while (item := self._next()) is not None:
                delivery, target = item
                client = clients.get(target.url)
                if client is None:
                    client = clients[target.url] = httpx.Client(base_url=target.url,
                                                                timeout=CLIENT_TIMEOUT_S)
                answer = send_with_retries(client, delivery, retries=RETRIES, backoff_s=0.5)
                with self._lock:
                    self.answers.append(answer)
        finally:
            for client in clients.values():
                client.close()

    def switch(self, target: Instance) -> None:
        with self._lock:
            self.target = target

    def stop(self) -> list[Answer]:
        self._halt.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT_S * (RETRIES + 1))
        return self.answers


@pytest.fixture
def store(new_store_url, tmp_path: Path) -> tuple[str, Path]:
    url = new_store_url("postgres")
    config = write_config(tmp_path)
    migrate(url, config)
    return url, config


@pytest.fixture
def cluster(store, tmp_path: Path) -> Iterator[Cluster]:
    url, config = store
    with Cluster(tmp_path, url, config, instances=2, nginx=False) as running:
        yield running


def batch_backend(url: str, conn: psycopg.Connection) -> int | None:
    """The server pid of a session in the middle of a projection batch's writes: it holds
    the tracking row (taken first, kept to the commit; only the leader runs batches) and
    its latest statement writes a projection table (not the tracking row itself)."""
    _, schema = plain_conninfo(url)
    row = conn.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE n.nspname = %s AND c.relname = 'projection_tracking'"
        " AND l.mode = 'RowExclusiveLock' AND l.granted"
        " AND a.query ~ '^(INSERT|UPDATE|COPY)' AND a.query !~ 'projection_tracking'"
        " LIMIT 1", (schema,)).fetchone()
    return None if row is None else int(row[0])


def stepped_down_because(instance: Instance) -> list[str]:
    return re.findall(r"no longer leader of 'leader' \(epoch \d+\): ([^\n]+)",
                      instance.output())


def finish(url: str, config: Path, answers: list[Answer], reader: Instance) -> None:
    """Every alert answered 200 and decided once; the tables caught up and equal to the log."""
    counts = check_exactly_once(answers)
    print(f"alerts: {counts}")
    fingerprints = {a.body["fingerprint"] for a in answers if a.body}
    head = max(a.body["log_position"] for a in answers if a.body)
    with httpx.Client(base_url=reader.url, timeout=CLIENT_TIMEOUT_S) as client:
        until(lambda: caught_up(client, head), CATCH_UP_S, "the projections to catch up",
              poll_s=0.2)
    assert set(signal_rows(url)) == fingerprints
    receipts, journal = decisions_in_log(url)
    assert receipts == dict.fromkeys(fingerprints, 1)
    assert journal == dict.fromkeys(fingerprints, 1)
    result = verify(url, config)
    assert result.returncode == 0, result.stdout + result.stderr
    print(result.stdout.strip())


def test_a_leader_paused_past_its_term_wakes_as_a_follower_and_writes_nothing(
        cluster: Cluster, store):
    url, config = store
    with Prober() as prober:
        old, health = single_leader(prober, cluster.instances, SETTLE_S)
        (other,) = [i for i in cluster.instances if i is not old]
        old_epoch = health["leader_epoch"]
        senders = Senders(alert_plan(400, duplicate_share=0.3, seed=21), target=old)
        try:
            until(lambda: len(senders.answers) >= 40, 30, "alerts decided by the leader")
            paused_at = time.monotonic()
            old.send_signal(signal.SIGSTOP)  # its runner has a batch in hand, or is about to
            senders.switch(other)  # the log moves on while it sleeps
            new_health = until(lambda: (h := prober.health(other)) and h["leader"] and h,
                               TAKEOVER_S_MAX, "the other instance to lead")
            takeover = time.monotonic() - paused_at
            assert new_health["leader_epoch"] > old_epoch
            time.sleep(max(0.0, paused_at + PAUSE_S - time.monotonic()))

            woke_at = time.monotonic()
            old.send_signal(signal.SIGCONT)
            awake = until(lambda: prober.health(old), AWAKE_S_MAX, "the woken leader to answer")
            answered = time.monotonic() - woke_at
            assert awake["leader"] is False, awake
            assert awake["leader_epoch"] is None
            time.sleep(1.0)  # its threads have run a few ticks since waking
            assert prober.health(old)["leader"] is False
            assert prober.health(other)["leader"] is True
        finally:
            old.send_signal(signal.SIGCONT)  # (again, if an assertion left it stopped)
            answers = senders.stop()

        metrics = prober.metrics(old)
        fenced = metrics["ledger_fenced_writes_total"]
        reasons = stepped_down_because(old)
        print(f"\npaused {PAUSE_S} s: the other led after {takeover:.3f} s (epoch "
              f"{old_epoch} -> {new_health['leader_epoch']}); woken leader answered "
              f"leader:false {answered:.3f} s after SIGCONT")
        print(f"woken leader: fenced writes {fenced:.0f}, terms lost "
              f"{metrics['ledger_leader_terms_lost_total']:.0f}, projection batches failed "
              f"{metrics['ledger_projection_batches_failed_total']:.0f}; stepped down "
              f"because: {reasons}")
        # Refused by the fence, or it stepped down on its own before trying: nothing else.
        assert fenced >= 1 or any("ran out before it was renewed" in r or "no longer ours" in r
                                  for r in reasons), reasons
        assert metrics["ledger_leader_terms_lost_total"] >= 1
    finish(url, config, answers, other)


def test_a_leader_paused_inside_a_projection_batch_is_fenced_and_replaced_within_a_term(
        cluster: Cluster, store):
    url, config = store
    conninfo, _ = plain_conninfo(url)
    with Prober() as prober, psycopg.connect(conninfo, autocommit=True) as watcher:
        old, health = single_leader(prober, cluster.instances, SETTLE_S)
        (other,) = [i for i in cluster.instances if i is not old]
        senders = Senders(alert_plan(1000, duplicate_share=0.1, seed=23), target=old)
        try:
            caught, attempts = None, 0
            while caught is None and attempts < CATCH_ATTEMPTS:
                attempts += 1
                backend = until(lambda: batch_backend(url, watcher), LOCK_POLL_S,
                                "a projection batch in its transaction", poll_s=0)
                old.send_signal(signal.SIGSTOP)
                paused_at = time.monotonic()
                time.sleep(0.05)  # a batch that was not caught commits within this
                if batch_backend(url, watcher) == backend:
                    caught = backend
                else:
                    old.send_signal(signal.SIGCONT)  # missed: the batch had committed
            assert caught is not None, f"never paused inside a batch in {CATCH_ATTEMPTS} tries"
            senders.switch(other)
            takeover_health = until(lambda: (h := prober.health(other)) and h["leader"] and h,
                                    PAUSE_S + 5, "the other instance to lead")
            takeover = time.monotonic() - paused_at
            time.sleep(max(0.0, paused_at + PAUSE_S - time.monotonic()))
            old.send_signal(signal.SIGCONT)
            awake = until(lambda: prober.health(old), AWAKE_S_MAX, "the woken leader to answer")
            assert awake["leader"] is False
            metrics = until(lambda: (m := prober.metrics(old))["ledger_fenced_writes_total"]
                            + m["ledger_projection_batches_failed_total"] >= 1 and m,
                            AWAKE_S_MAX, "the paused batch to be refused")
        finally:
            old.send_signal(signal.SIGCONT)  # (again, if an assertion left it stopped)
            answers = senders.stop()

        print(f"\npaused {PAUSE_S} s inside a projection batch (attempt {attempts}): the other "
              f"led {takeover:.3f} s after the pause (epoch {health['leader_epoch']} -> "
              f"{takeover_health['leader_epoch']}); woken leader: fenced writes "
              f"{metrics['ledger_fenced_writes_total']:.0f}, batches failed "
              f"{metrics['ledger_projection_batches_failed_total']:.0f}; stepped down because: "
              f"{stepped_down_because(old)}")
        assert takeover < TAKEOVER_S_MAX, (
            f"the next term waited {takeover:.3f} s for the paused batch: a fenced "
            f"transaction must hold off the next term for about one lease TTL at most")
    finish(url, config, answers, other)
