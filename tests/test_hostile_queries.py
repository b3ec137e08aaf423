"""Hostile query parameters on the read endpoints: absurdly long numbers. Each is 400 naming
the parameter, before the store is asked (never a 5xx, never a 503 that invites a retry). On
SQLite and on Postgres.
"""

from __future__ import annotations

import pytest

from tests.api_client import TOKEN, service

AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(store_url, ledger):
    with service(store_url, api_token=TOKEN) as client:
        yield client


@pytest.mark.parametrize("path", ["/signals", "/positions"])
@pytest.mark.parametrize("limit", ["9" * 5000, "0" * 4000 + "5", "1" * 30])
def test_a_limit_with_absurdly_many_digits_is_400_naming_limit(api, path, limit):
    r = api.get(path, params={"limit": limit}, headers=AUTH)
    assert r.status_code == 400, r.text
    assert [p["field"] for p in r.json()["problems"]] == ["limit"]


def test_refused_parameters_never_reach_the_store(new_store_url):
    # An unmigrated store answers every read with an error (503); these never ask it.
    with service(new_store_url("sqlite"), api_token=TOKEN) as unmigrated:
        assert unmigrated.get("/signals", headers=AUTH).status_code == 503
        for path in ("/signals?limit=" + "9" * 5000, "/positions?limit=" + "9" * 5000):
            assert unmigrated.get(path, headers=AUTH).status_code == 400, path
