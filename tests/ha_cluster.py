"""Helpers for the end-to-end high-availability tests (tests/test_ha_*.py) and the failover
benchmark (bench/failover.py): real `ledger serve` instances on one Postgres store, a
redis-server of their own, and the shipped nginx config in front.

- ``Instance``: one slot on a fixed port, so a killed instance restarts where nginx expects
  it (``ledger serve --port N``); SIGKILL, SIGTERM, SIGSTOP/SIGCONT by the process id.
- ``Cluster``: the instances, the redis-server and nginx together; ``close`` kills every
  process it started (SIGCONT first, so a stopped one dies too).
- ``Prober``: /health and /metrics of each instance through one client per thread.
- ``LeaderWatch``: a thread polling every instance's /health, recording who says it leads
  under which epoch; ``split_brain`` checks no stale leader ever answered after a newer term.
- ``alert_plan``: TradingView-like alerts (BASE_ENTRY, MARKET_DATA, EXIT) on several
  portfolios, with a share of exact redeliveries of earlier bodies.
- ``send_with_retries``: one alert, retried after a 503 or a broken connection as TradingView
  does (bounded).

Nothing here touches the machine's own Redis; the store is whatever URL the test gives
(a throwaway schema of the machine's Postgres, or a PrivatePostgres).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx2 as httpx
import psycopg

from tests.api_server import LEDGER, ROOT, ServeProcess, free_port
from tests.coordination_servers import RedisServer
from tests.nginx_server import DOCKER, Nginx, render

SECRET = "ha-test-secret"
TOKEN = "ha-test-token"
PORTFOLIOS = ("alpha", "beta", "gamma", "delta")
INSTRUMENTS = {"BANK_NIFTY": Decimal(52000), "GOLD_MINI": Decimal(72000)}
HTTP_SITE = DOCKER / "nginx" / "ledger-http.conf"

# The coordinator's bounds, spelled out (they are the defaults, except the faster Redis probe
# and heartbeats, so the tests see mode switches and crashed instances sooner).
COORDINATION_ENV = {
    "LEDGER_LEASE_TTL_MS": "1000",
    "LEDGER_RENEW_INTERVAL_MS": "250",
    "LEDGER_FOLLOWER_POLL_MS": "100",
    "LEDGER_REDIS_PROBE_INTERVAL_MS": "300",
    "LEDGER_HEARTBEAT_INTERVAL_MS": "500",
    "LEDGER_HEARTBEAT_STALE_MS": "1500",
}
PROBE_TIMEOUT_S = 1.0  # one /health or /metrics call; a SIGSTOPped instance costs this much
CLIENT_TIMEOUT_S = 10.0  # one webhook through nginx or straight to an instance
VERIFY_TIMEOUT_S = 120
MIGRATE_TIMEOUT_S = 60


def config_toml() -> str:
    return "".join(f'[portfolios.{name}]\ninitial_capital = "5000000"\n\n'
                   for name in PORTFOLIOS)


def write_config(directory: Path) -> Path:
    path = directory / "ledger.toml"
    path.write_text(config_toml())
    return path


def ledger_command(*args: str, url: str, config: Path, timeout_s: float
                   ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    env.update({"LEDGER_DATABASE_URL": url, "LEDGER_CONFIG": str(config)})
    return subprocess.run([LEDGER, *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout_s)


def migrate(url: str, config: Path) -> None:
    result = ledger_command("migrate", url=url, config=config, timeout_s=MIGRATE_TIMEOUT_S)
    assert result.returncode == 0, result.stderr


def verify(url: str, config: Path) -> subprocess.CompletedProcess[str]:
    """`ledger verify`: replay the log and compare every projection table (exit 0: equal)."""
    return ledger_command("verify", url=url, config=config, timeout_s=VERIFY_TIMEOUT_S)


def plain_conninfo(url: str) -> tuple[str, str]:
    """(a libpq URL without ``?schema=``, the schema) of a ``LEDGER_DATABASE_URL``."""
    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("schema", ["public"])[0]
    return urlunsplit(parts._replace(query="")), schema


def query(url: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` in the store's schema (read by the test, beside the instances)."""
    conninfo, schema = plain_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"SET search_path TO {schema}")
        return list(conn.execute(sql, params).fetchall())


# --- instances --------------------------------------------------------------------------------


class Instance:
    """One `ledger serve` slot on a fixed port: started, killed and restarted in place."""

    def __init__(self, name: str, store_url: str, env: dict[str, str],
                 port: int | None = None) -> None:
        self.name = name
        self.store_url = store_url
        self.env = env
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ServeProcess | None = None
        self.logs: list[str] = []  # output of earlier lives (kept for failure messages)
        self.started_at = 0.0  # monotonic: when the current process was spawned

    def start(self) -> Instance:
        assert self.server is None or self.server.process.poll() is not None
        self._forget()
        self.started_at = time.monotonic()
        self.server = ServeProcess(self.store_url, env=self.env,
                                   args=("--port", str(self.port)))
        return self

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.process.pid

    @property
    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def send_signal(self, signum: signal.Signals) -> None:
        assert self.server is not None
        self.server.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL (a stopped process too: SIGKILL needs no SIGCONT) and reap it."""
        if self.server is not None and self.server.process.poll() is None:
            self.server.process.kill()
            self.server.process.wait(timeout=30)

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM, and the exit code once it has stopped (bounded)."""
        assert self.server is not None
        self.server.process.send_signal(signal.SIGTERM)
        return self.server.process.wait(timeout=timeout_s)

    def output(self) -> str:
        now = self.server.output() if self.server is not None else ""
        return "".join(self.logs) + now

    def _forget(self) -> None:
        if self.server is not None:
            self.logs.append(self.server.output())
            self.server.log.unlink(missing_ok=True)
            self.server = None

    def close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(ProcessLookupError):
                self.server.process.send_signal(signal.SIGCONT)
            self.kill()
            self.server.log.unlink(missing_ok=True)


def instance_env(config: Path, redis_url: str | None, **extra: str) -> dict[str, str]:
    env = {"LEDGER_CONFIG": str(config), "LEDGER_WEBHOOK_SECRET": SECRET,
           "LEDGER_API_TOKEN": TOKEN, "LEDGER_TRUSTED_PROXIES": "127.0.0.1",
           **COORDINATION_ENV, **extra}
    if redis_url:
        env["LEDGER_REDIS_URL"] = redis_url
    return env


class Cluster:
    """N instances on ``store_url``, a redis-server of their own, nginx in front (optional).

    Instances start in parallel (each `ledger serve` takes a second or two to import and
    listen); ``close`` kills everything, whatever state the test left it in."""

    def __init__(self, directory: Path, store_url: str, config: Path, *, instances: int = 3,
                 redis: bool = True, nginx: bool = True, env: dict[str, str] | None = None
                 ) -> None:
        self.directory = directory
        self.store_url = store_url
        self.config = config
        self.redis: RedisServer | None = None
        self.nginx: Nginx | None = None
        self.instances: list[Instance] = []
        try:
            if redis:
                (directory / "redis").mkdir(exist_ok=True)
                self.redis = RedisServer(directory / "redis").start()
            environment = instance_env(config, self.redis.url if self.redis else None,
                                       **(env or {}))
            self.instances = [Instance(f"i{n}", store_url, environment)
                              for n in range(instances)]
            start_all(self.instances)
            if nginx:
                port = free_port()
                main = render(directory / "nginx", HTTP_SITE.read_text(), listen={80: port},
                              upstream=[f"127.0.0.1:{i.port}" for i in self.instances],
                              trust_loopback=True)
                self.nginx = Nginx(directory / "nginx", main, port)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        assert self.nginx is not None, "this cluster runs without nginx"
        return self.nginx.url

    def close(self) -> None:
        for instance in self.instances:
            with contextlib.suppress(Exception):
                instance.close()
        if self.nginx is not None:
            with contextlib.suppress(Exception):
                self.nginx.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.kill()

    def outputs(self) -> str:
        return "\n".join(f"--- {i.name} (port {i.port}) ---\n{i.output()[-4000:]}"
                         for i in self.instances)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_all(instances: Iterable[Instance]) -> None:
    instances = list(instances)
    with ThreadPoolExecutor(len(instances)) as pool:
        for future in [pool.submit(i.start) for i in instances]:
            future.result()


# --- probing ----------------------------------------------------------------------------------


class Prober:
    """/health and /metrics of instances, through one keep-alive client (one per thread)."""

    def __init__(self, timeout_s: float = PROBE_TIMEOUT_S) -> None:
        self.client = httpx.Client(timeout=timeout_s)

    def health(self, instance: Instance) -> dict[str, Any] | None:
        """The instance's /health, or None if it does not answer (dead, stopped, starting)."""
        try:
            r = self.client.get(f"{instance.url}/health")
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    def metrics(self, instance: Instance) -> dict[str, float]:
        """Every sample of /metrics, by its name and labels as printed."""
        text = self.client.get(f"{instance.url}/metrics").text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Prober:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def until(condition: Callable[[], Any], timeout_s: float, what: str,
          poll_s: float = 0.02) -> Any:
    """Wait (bounded) for ``condition`` to return something true; return it."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def leaders(prober: Prober, instances: Sequence[Instance]
            ) -> tuple[list[tuple[Instance, dict[str, Any]]], int]:
    """(the instances saying leader:true with their /health, how many answered at all)."""
    answers = [(i, prober.health(i)) for i in instances]
    answered = [(i, h) for i, h in answers if h is not None]
    return [(i, h) for i, h in answered if h["leader"]], len(answered)


def single_leader(prober: Prober, instances: Sequence[Instance], timeout_s: float
                  ) -> tuple[Instance, dict[str, Any]]:
    """Wait until every instance answers and exactly one says it leads; that one."""
    def one() -> tuple[Instance, dict[str, Any]] | None:
        found, answered = leaders(prober, instances)
        return found[0] if len(found) == 1 and answered == len(instances) else None

    return until(one, timeout_s, "exactly one leader among the instances")


@dataclass(frozen=True)
class Observation:
    """One /health answer: asked at ``sent``, answered at ``received`` (monotonic s)."""

    sent: float
    received: float
    instance: str
    instance_id: str
    leader: bool
    epoch: int | None
    mode: str


class LeaderWatch(threading.Thread):
    """Polls every instance's /health, one after another, until stopped; keeps every answer.

    ``split_brain()`` checks the observations against the fence's promise: once a /health
    answer said "leader under epoch E", no /health asked *after* that answer arrived may
    say "leader" under an older epoch, and an epoch is only ever claimed by one instance."""

    def __init__(self, instances: Sequence[Instance], pause_s: float = 0.005) -> None:
        super().__init__(name="leader-watch", daemon=True)
        self.instances = instances
        self.pause_s = pause_s
        self.observations: list[Observation] = []
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._new = threading.Condition(self._lock)

    def run(self) -> None:
        with Prober(timeout_s=0.5) as prober:
            while not self._halt.is_set():
                for instance in self.instances:
                    sent = time.monotonic()
                    health = prober.health(instance)
                    received = time.monotonic()
                    if health is None:
                        continue
                    o = Observation(sent, received, instance.name, health["instance_id"],
                                    bool(health["leader"]), health["leader_epoch"],
                                    health["coordination"])
                    with self._new:
                        self.observations.append(o)
                        self._new.notify_all()
                self._halt.wait(self.pause_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def first(self, predicate: Callable[[Observation], bool], after: float,
              timeout_s: float) -> Observation | None:
        """The first observation asked after ``after`` that satisfies ``predicate`` (waiting
        at most ``timeout_s``), or None."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        with self._new:
            while True:
                for o in self.observations[seen:]:
                    if o.sent >= after and predicate(o):
                        return o
                seen = len(self.observations)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._new.wait(remaining)

    def split_brain(self) -> list[str]:
        """Every observation that breaks the fence's promise (empty: none)."""
        with self._lock:
            claims = [o for o in self.observations if o.leader]
        problems = []
        holder: dict[int, str] = {}
        for o in claims:
            assert o.epoch is not None, o
            if holder.setdefault(o.epoch, o.instance_id) != o.instance_id:
                problems.append(f"epoch {o.epoch} claimed by {holder[o.epoch]} and "
                                f"{o.instance_id}")
        by_received = sorted(claims, key=lambda o: o.received)
        newest, k = 0, 0
        for o in sorted(claims, key=lambda o: o.sent):
            while k < len(by_received) and by_received[k].received < o.sent:
                newest = max(newest, by_received[k].epoch or 0)
                k += 1
            if (o.epoch or 0) < newest:
                problems.append(f"{o.instance} ({o.instance_id}) said leader under epoch "
                                f"{o.epoch} after epoch {newest} had been seen leading")
        return problems


# --- alerts -----------------------------------------------------------------------------------


@dataclass
class _Stream:
    """One (portfolio, instrument): bars on a random walk, entries and exits along it."""

    portfolio: str
    instrument: str
    price: Decimal
    at: datetime
    rng: random.Random
    in_trade: bool = False

    def next_alert(self) -> dict[str, Any]:
        self.at += timedelta(minutes=1)
        self.price = (self.price * Decimal(1 + self.rng.gauss(0.0002, 0.002))).quantize(
            Decimal("0.05"))
        atr = (self.price * Decimal("0.007")).quantize(Decimal("0.01"))
        common = {"instrument": self.instrument, "price": str(self.price),
                  "timestamp": self.at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        roll = self.rng.random()
        if not self.in_trade and roll < 0.25:
            self.in_trade = True
            return {"type": "BASE_ENTRY", "position": "Long_1", "stop": str(self.price - atr),
                    "atr": str(atr), "er": "0.8", "lots": 3, **common}
        if self.in_trade and roll > 0.85:
            self.in_trade = False
            return {"type": "EXIT", "position": "Long_1", "stop": 0, "lots": 0,
                    "reason": "trailing_stop", **common}
        return {"type": "MARKET_DATA", "atr": str(atr), **common}


@dataclass(frozen=True)
class Delivery:
    """One alert to send: where, the exact body, and whether it repeats an earlier one."""

    path: str
    body: bytes
    redelivery: bool = False


def alert_plan(distinct: int, *, duplicate_share: float = 0.3, seed: int = 7,
               portfolios: Sequence[str] = PORTFOLIOS,
               start: datetime | None = None) -> list[Delivery]:
    """``distinct`` different alerts (marks, entries and exits interleaved over every
    portfolio and instrument) plus redeliveries of earlier bodies, byte for byte: about
    ``duplicate_share`` of all deliveries, each a few places after its original."""
    rng = random.Random(seed)
    at = start or datetime(2025, 1, 6, 3, 45, tzinfo=UTC) + timedelta(days=rng.randrange(3000))
    streams = [_Stream(p, i, price, at, random.Random(rng.random()))
               for p in portfolios for i, price in INSTRUMENTS.items()]
    plan: list[Delivery] = []
    originals: list[Delivery] = []
    while len(originals) < distinct:
        if originals and rng.random() < duplicate_share:
            original = originals[-rng.randrange(1, min(len(originals), 12) + 1)]
            plan.append(Delivery(original.path, original.body, redelivery=True))
            continue
        stream = streams[len(originals) % len(streams)]
        alert = {**stream.next_alert(), "secret": SECRET}
        delivery = Delivery(f"/webhook/{stream.portfolio}", json.dumps(alert).encode())
        originals.append(delivery)
        plan.append(delivery)
    return plan


@dataclass
class Answer:
    """What became of one delivery: every attempt's status, and the final answer."""

    delivery: Delivery
    statuses: list[int] = field(default_factory=list)  # 0: no HTTP answer at all
    body: dict[str, Any] | None = None
    seconds: list[float] = field(default_factory=list)

    @property
    def status(self) -> int:
        return self.statuses[-1] if self.statuses else 0

    @property
    def retries(self) -> int:
        return len(self.statuses) - 1


RETRYABLE = {0, 502, 503, 504}


def send_with_retries(client: httpx.Client, delivery: Delivery, *, retries: int = 3,
                      backoff_s: float = 0.3) -> Answer:
    """POST one alert; after a 503 (or no answer, or nginx's 502/504) send it again, as
    TradingView does, at most ``retries`` times."""
    answer = Answer(delivery)
    for attempt in range(retries + 1):
        started = time.monotonic()
        try:
            r = client.post(delivery.path, content=delivery.body,
                            headers={"content-type": "application/json"})
            status = r.status_code
        except httpx.HTTPError:
            status = 0
        answer.seconds.append(time.monotonic() - started)
        answer.statuses.append(status)
        if status == 200:
            answer.body = r.json()
            return answer
        if status not in RETRYABLE or attempt == retries:
            return answer
        time.sleep(backoff_s)
    return answer


def decision_of(body: dict[str, Any]) -> dict[str, Any]:
    """A webhook answer without what differs between deliveries of one alert."""
    return {k: v for k, v in body.items() if k not in ("duplicate", "log_position")}


def check_exactly_once(answers: Sequence[Answer]) -> dict[str, int]:
    """Every answer 200; per fingerprint at most one first decision (duplicate:false), every
    other delivery duplicate:true with the same decision. Counts, for the report."""
    failed = [(a.statuses, a.delivery.path) for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} alerts never answered 200: {failed[:5]}"
    by_fingerprint: dict[str, list[dict[str, Any]]] = {}
    by_body: dict[bytes, set[str]] = {}
    for a in answers:
        assert a.body is not None
        by_fingerprint.setdefault(a.body["fingerprint"], []).append(a.body)
        by_body.setdefault(a.delivery.body, set()).add(a.body["fingerprint"])
    assert all(len(f) == 1 for f in by_body.values()), "one body, several fingerprints"
    for fingerprint, bodies in by_fingerprint.items():
        firsts = [b for b in bodies if not b["duplicate"]]
        assert len(firsts) <= 1, f"{fingerprint} decided {len(firsts)} times"
        decisions = {json.dumps(decision_of(b), sort_keys=True) for b in bodies}
        assert len(decisions) == 1, f"{fingerprint}: deliveries answered differently"
    return {
        "deliveries": len(answers),
        "distinct": len(by_fingerprint),
        "duplicate_answers": sum(b["duplicate"] for bs in by_fingerprint.values() for b in bs),
        "retried": sum(1 for a in answers if a.retries),
        "attempts_not_200": sum(1 for a in answers for s in a.statuses if s != 200),
    }


def caught_up(client: httpx.Client, position: int) -> bool:
    """The projection tables have applied the log at least to ``position``."""
    try:
        r = client.get("/ready")
    except httpx.HTTPError:
        return False
    if r.status_code != 200:
        return False
    projections = r.json().get("projections", {})
    return projections.get("position", -1) >= position and projections.get("lag_events") == 0


def signal_rows(url: str) -> dict[str, int]:
    """signal_log as stored: fingerprint -> deliveries."""
    return dict(query(url, "SELECT fingerprint, deliveries FROM signal_log"))


def decisions_in_log(url: str) -> tuple[dict[str, int], dict[str, int]]:
    """From the event log itself, independent of the projections: per fingerprint, how many
    receipts (``SignalDecided``) and how many decision events in the portfolio journals
    (every decision appends exactly one, carrying its fingerprint)."""
    def count(topic_like: str) -> dict[str, int]:
        rows = query(url, "SELECT convert_from(state, 'UTF8')::jsonb ->> 'fingerprint', count(*)"
                          " FROM ledger_events WHERE topic LIKE %s GROUP BY 1", (topic_like,))
        return {fingerprint: n for fingerprint, n in rows if fingerprint is not None}

    return (count("ledger.domain:SignalRecord.SignalDecided"),
            count("ledger.domain:Portfolio.%"))
