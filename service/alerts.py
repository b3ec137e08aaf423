"""Operator alerts: a WARNING in the log always, and a Slack-compatible webhook when set.

``Alerts.alert(kind, text, **facts)`` never blocks its caller (a decision, the coordinator's
thread, a leader job): it logs, then puts ``{"text": ...}`` on a bounded queue that one
background thread POSTs to ``LEDGER_ALERT_WEBHOOK_URL`` with a bounded timeout. A full queue
drops the alert (counted); each kind is posted at most once per ``min_interval_s`` (the
suppressed ones are counted and the next post of that kind says how many there were).

Alert text is redacted before it is logged or sent: passwords in URLs
(``scheme://user:PASSWORD@host``), ``password=...`` pairs, and facts whose names say they are
secret. The webhook URL itself (it carries the channel's token) is never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from coordination.coordinator import Change, Coordinator

log = logging.getLogger("ledger.alerts")

ENV_WEBHOOK_URL = "LEDGER_ALERT_WEBHOOK_URL"
MIN_INTERVAL_S_DEFAULT = 60.0  # at most one post per kind this often
QUEUE_MAX = 100  # alerts waiting to be posted; more are dropped (counted)
POST_TIMEOUT_MS = 3000  # bound on one POST: connect, send and read the answer
CLOSE_WAIT_MS = 3000  # close() waits this long for the queue to drain
TEXT_CHARS_MAX = 3000  # an alert's text is cut here (Slack shows about 4000)

_URL_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_KEY_VALUE_SECRET = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key)"
                               r"(\s*[=:]\s*)\S+")
_SECRET_NAMES = ("password", "passwd", "secret", "token", "key", "authorization", "cookie",
                 "webhook")


def redact(text: str) -> str:
    """``text`` without credentials: URL user info and ``password=...`` values."""
    text = _URL_PASSWORD.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _KEY_VALUE_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


def _fact(name: str, value: Any) -> str:
    if any(word in name.lower() for word in _SECRET_NAMES):
        return f"{name}=***"
    return f"{name}={value}"


_STOP = object()


class Alerts:
    """Log every alert; post it to ``webhook_url`` too (rate-limited per kind, never blocking)."""

    def __init__(self, webhook_url: str | None = None, *,
                 min_interval_s: float = MIN_INTERVAL_S_DEFAULT, queue_max: int = QUEUE_MAX,
                 post_timeout_ms: int = POST_TIMEOUT_MS, source: str | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if webhook_url and not webhook_url.startswith(("http://", "https://")):
            raise ValueError(f"{ENV_WEBHOOK_URL}: expected an http(s) URL")
        if min_interval_s < 0 or queue_max <= 0 or post_timeout_ms <= 0:
            raise ValueError("min_interval_s >= 0, queue_max > 0 and post_timeout_ms > 0")
        self.webhook_url = webhook_url or None
        self.min_interval_s = min_interval_s
        self.post_timeout_ms = post_timeout_ms
        self.source = source or socket.gethostname()
        self._monotonic = monotonic
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self._lock = threading.Lock()
        self._last_posted: dict[str, float] = {}
        self._suppressed_since: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._closed = False
        # metrics
        self.alerts = 0  # alert() calls
        self.posted = 0  # POSTs answered 2xx
        self.failed = 0  # POSTs that failed or timed out
        self.dropped = 0  # not queued: the queue was full, or alerts closed
        self.suppressed = 0  # not posted: the kind was posted less than min_interval_s ago

    def alert(self, kind: str, text: str, **facts: Any) -> str:
        """Log and (if a webhook is set) queue one alert; never waits. What became of it:
        ``logged`` (no webhook), ``queued``, ``suppressed`` or ``dropped``."""
        details = ", ".join(_fact(k, v) for k, v in sorted(facts.items()))
        line = redact(f"{text} ({details})" if details else text)[:TEXT_CHARS_MAX]
        with self._lock:
            self.alerts += 1
        log.warning("alert %s: %s", kind, line)
        if self.webhook_url is None:
            return "logged"
        with self._lock:
            if self._closed:
                self.dropped += 1
                return "dropped"
            now = self._monotonic()
            last = self._last_posted.get(kind)
            if last is not None and now - last < self.min_interval_s:
                self.suppressed += 1
                self._suppressed_since[kind] = self._suppressed_since.get(kind, 0) + 1
                return "suppressed"
            self._last_posted[kind] = now
            before = self._suppressed_since.pop(kind, 0)
            self._ensure_thread()
        more = f" ({before} more {kind} alerts were suppressed before this one)" if before else ""
        body = {"text": f"[ledger {kind}] {self.source}: {line}{more}"}
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            with self._lock:
                self.dropped += 1
            return "dropped"
        return "queued"

    def close(self, timeout_ms: int = CLOSE_WAIT_MS) -> None:
        """Post what is queued (waiting at most ``timeout_ms``), then stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout_ms / 1000
        with contextlib.suppress(queue.Full):
            self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("alerts: %d still queued after %d ms; not sent", self._queue.qsize(),
                        timeout_ms)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._send_loop, name="alerts", daemon=True)
            self._thread.start()

    def _send_loop(self) -> None:
        while True:
            body = self._queue.get()
            if body is _STOP:
                return
            self._post(body)

    def _post(self, body: dict[str, str]) -> None:
        assert self.webhook_url is not None
        request = urllib.request.Request(
            self.webhook_url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "portfolio-ledger"})
        try:
            with urllib.request.urlopen(request, timeout=self.post_timeout_ms / 1000) as answer:
                answer.read(1024)
            with self._lock:
                self.posted += 1
        except urllib.error.HTTPError as e:
            with self._lock:
                self.failed += 1
            log.warning("alert webhook answered %d", e.code)  # never the URL: it is a secret
        except (OSError, ValueError) as e:  # URLError, timeouts, refused connections
            with self._lock:
                self.failed += 1
            log.warning("alert webhook failed: %s", type(e).__name__)


def alert_on_changes(coordinator: Coordinator, alerts: Alerts) -> None:
    """Alert on leadership gained or lost and on a switch of coordination mode (from the
    coordinator's ``on_change``, in its thread: ``alert`` only queues). A leader handing over
    because this instance is stopping is an orderly change: the next leader's
    ``leader_gained`` reports it, so it is logged by the coordinator and not alerted."""

    def changed(change: Change) -> None:
        if change.kind == "leader_lost" and change.reason == "stopping":
            return
        texts = {
            "leader_gained": "this instance now leads",
            "leader_lost": "this instance no longer leads",
            "mode_switched": f"coordination switched to {change.mode} mode",
        }
        alerts.alert(change.kind, texts.get(change.kind, change.kind),
                     instance=coordinator.instance_id, epoch=change.epoch, mode=change.mode,
                     reason=change.reason)

    coordinator.on_change(changed)
