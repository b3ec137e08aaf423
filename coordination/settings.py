"""The coordination layer's bounds, in one frozen object. Every number names its unit.

The defaults give a failover of at most about 1.5 s after a leader is SIGKILLed: its term and
lease run out 1000 ms after its last renewal, and a follower looks every 100 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class SettingsError(ValueError):
    """The settings cannot work together; ``problems`` names each one."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid coordination settings:\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CoordinationSettings:
    lease_ttl_ms: int = 1000  # Redis lease and Postgres term both run out this long after renewal
    renew_interval_ms: int = 250  # a leader renews both this often
    follower_poll_ms: int = 100  # a follower tries to take over this often
    redis_socket_timeout_ms: int = 200  # bound on any one Redis call (and on connecting)
    redis_probe_interval_ms: int = 2000  # in database mode, how often Redis is tried again
    db_statement_timeout_ms: int = 200  # bound on any one term statement (incl. lock waits)
    db_connect_timeout_s: int = 2  # libpq's smallest connect timeout is 2 s
    heartbeat_interval_ms: int = 1000  # each instance records itself this often
    heartbeat_stale_ms: int = 5000  # a heartbeat older than this reads as "crashed"
    signal_lock_ttl_ms: int = 5000  # a signal lock outlives a crashed holder by no more
    signal_lock_poll_ms: int = 10  # a waiter looks again this often
    stop_join_timeout_ms: int = 2000  # stop() waits this long for the thread's last tick

    def __post_init__(self) -> None:
        problems = [f"{f.name} must be a positive integer, not {getattr(self, f.name)!r}"
                    for f in fields(self)
                    if not isinstance(getattr(self, f.name), int)
                    or isinstance(getattr(self, f.name), bool) or getattr(self, f.name) <= 0]
        if problems:
            raise SettingsError(problems)
        if not self.renew_interval_ms < self.lease_ttl_ms / 2:
            problems.append(
                f"renew_interval_ms ({self.renew_interval_ms}) must be under half of "
                f"lease_ttl_ms ({self.lease_ttl_ms}): one late renewal must not lose the term")
        if not self.follower_poll_ms < self.lease_ttl_ms:
            problems.append(
                f"follower_poll_ms ({self.follower_poll_ms}) must be under lease_ttl_ms "
                f"({self.lease_ttl_ms}), or failover waits on the poll, not the lease")
        renewal_ms = self.redis_socket_timeout_ms + self.db_statement_timeout_ms
        if not renewal_ms <= self.lease_ttl_ms - self.renew_interval_ms:
            problems.append(
                f"redis_socket_timeout_ms + db_statement_timeout_ms ({renewal_ms}) must be at "
                f"most lease_ttl_ms - renew_interval_ms "
                f"({self.lease_ttl_ms - self.renew_interval_ms}): a renewal that waits out "
                f"both bounds must still land before the term runs out")
        if not self.heartbeat_stale_ms >= 2 * self.heartbeat_interval_ms:
            problems.append(
                f"heartbeat_stale_ms ({self.heartbeat_stale_ms}) must be at least twice "
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}): one late beat is not "
                f"a crash")
        if not self.signal_lock_poll_ms < self.signal_lock_ttl_ms:
            problems.append(
                f"signal_lock_poll_ms ({self.signal_lock_poll_ms}) must be under "
                f"signal_lock_ttl_ms ({self.signal_lock_ttl_ms})")
        if problems:
            raise SettingsError(problems)
