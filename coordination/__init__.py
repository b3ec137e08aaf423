"""Coordination between instances: one leader, fenced; heartbeats; signal locks.

Redis elects quickly; the store's ``leader_term`` row decides who may act (docs/HA.md).
Nothing here touches the event log or the projections: this is operational state.
"""

from coordination.coordinator import Change, Coordinator, Mode
from coordination.heartbeat import Heartbeat, InstanceRow, instances, mark_stopped
from coordination.lease import RedisLease, redis_client
from coordination.settings import CoordinationSettings, SettingsError
from coordination.signal_lock import Hold, SignalLocks
from coordination.terms import (
    Fenced,
    assert_current,
    begin_term,
    end_term,
    fence_stats,
    renew_term,
)

__all__ = [
    "Change",
    "CoordinationSettings",
    "Coordinator",
    "Fenced",
    "Heartbeat",
    "Hold",
    "InstanceRow",
    "Mode",
    "RedisLease",
    "SettingsError",
    "SignalLocks",
    "assert_current",
    "begin_term",
    "end_term",
    "fence_stats",
    "instances",
    "mark_stopped",
    "redis_client",
    "renew_term",
]
