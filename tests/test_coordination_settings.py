"""Coordination settings that cannot work together are refused, each problem named."""

from __future__ import annotations

import pytest

from coordination import CoordinationSettings, SettingsError


def test_the_defaults_are_the_failover_budget():
    s = CoordinationSettings()
    assert (s.lease_ttl_ms, s.renew_interval_ms, s.follower_poll_ms) == (1000, 250, 100)
    # a SIGKILLed leader: its term runs out one TTL after its last renewal, and a follower
    # looks within one poll of that
    assert s.lease_ttl_ms + s.follower_poll_ms <= 1500


def test_renewing_at_half_the_ttl_or_slower_is_refused():
    with pytest.raises(SettingsError, match=r"renew_interval_ms .* under half"):
        CoordinationSettings(lease_ttl_ms=1000, renew_interval_ms=500)


def test_a_renewal_that_cannot_land_within_the_ttl_is_refused():
    with pytest.raises(SettingsError, match="must still land"):
        CoordinationSettings(redis_socket_timeout_ms=500, db_statement_timeout_ms=500)


def test_every_problem_is_named_at_once():
    with pytest.raises(SettingsError) as caught:
        CoordinationSettings(follower_poll_ms=2000, heartbeat_stale_ms=1500,
                             signal_lock_poll_ms=6000)
    assert len(caught.value.problems) == 3


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "250"])
def test_bounds_are_positive_integers(value):
    with pytest.raises(SettingsError, match="renew_interval_ms must be a positive integer"):
        CoordinationSettings(renew_interval_ms=value)
