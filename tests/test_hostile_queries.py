"""Hostile query and path parameters on the read endpoints: absurdly long numbers, control
characters, absurd lengths. Each is 400 naming the parameter, before the store is asked (never
a 5xx, never a 503 that invites a retry). On SQLite and on Postgres.
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


BAD_POSITION_IDS = ["x%00y", "default:BANK_NIFTY:Long_1:1%00", "a%0Ab", "%1B%5B31m",
                    "%7F", "x" * 4000]


@pytest.mark.parametrize("suffix", ["", "/history"])
@pytest.mark.parametrize("position_id", BAD_POSITION_IDS)
def test_a_position_id_with_control_characters_or_absurd_length_is_400(api, position_id,
                                                                       suffix):
    r = api.get(f"/positions/{position_id}{suffix}", headers=AUTH)
    assert r.status_code == 400, r.text
    assert "retry-after" not in r.headers
    assert [p["field"] for p in r.json()["problems"]] == ["position_id"]
    assert len(r.content) < 1000  # the id is not echoed back


def test_the_token_is_checked_before_the_position_id(api):
    assert api.get("/positions/x%00y").status_code == 401


def test_a_plausible_unknown_position_is_still_404(api):
    for suffix in ("", "/history"):
        r = api.get(f"/positions/default:BANK_NIFTY:Long_9:1{suffix}", headers=AUTH)
        assert r.status_code == 404 and r.json()["error"] == "unknown_position"


def test_refused_parameters_never_reach_the_store(new_store_url):
    # An unmigrated store answers every read with an error (503); these never ask it.
    with service(new_store_url("sqlite"), api_token=TOKEN) as unmigrated:
        assert unmigrated.get("/positions/default:BANK_NIFTY:Long_1:1",
                              headers=AUTH).status_code == 503
        for path in ("/signals?limit=" + "9" * 5000, "/positions?limit=" + "9" * 5000,
                     "/positions/x%00y", "/positions/x%00y/history"):
            assert unmigrated.get(path, headers=AUTH).status_code == 400, path
