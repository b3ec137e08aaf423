"""An alert's payload comes back as it was sent: the receipt keeps the body's text (``raw``,
the secret's member cut out), and GET /signals and the trail answer its numbers with their
own text (``0.82``, not ``"0.82"``), its keys in their order. The secret is never stored.

In-process (the real app, lifespan and projection tables), on SQLite and on Postgres.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ledger.domain import SignalRecord
from projections.verify import verify
from tests.api_client import SECRET, TOKEN, projected, service

# As a person writes them: numbers TradingView's placeholders never change, in every form
# JSON allows, and the secret between two fields.
SENT = ('{"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1",\n'
        ' "price": 52000.50, "stop": 51650.0, "secret": "' + SECRET + '", "atr": 350,'
        ' "er": 0.82, "lots": 5, "timestamp": "2025-11-28T10:30:00Z",\n'
        ' "extra": {"tiny": 1e-7, "big": 1180591620717411303424, "minus_zero": -0,'
        ' "exp": 1.5E+3, "zeros": 0.10, "text": "caf\\u00e9 \\"quoted\\""}}')
KEPT = SENT.replace(' "secret": "' + SECRET + '",', "")


def as_written(text: str | bytes) -> Any:
    """JSON with every number as its text and every object as its (key, value) pairs, in
    order: what "the same JSON as sent" means."""
    def number(literal: str) -> tuple[str, str]:
        return ("number", literal)

    return json.loads(text, parse_float=number, parse_int=number,
                      object_pairs_hook=lambda pairs: ("object", pairs))


@pytest.fixture
def api(store_url, ledger):
    with service(store_url, webhook_secret=SECRET, api_token=TOKEN) as client:
        client.headers["authorization"] = f"Bearer {TOKEN}"
        yield client


def test_the_receipt_keeps_the_body_as_sent_without_its_secret(api, ledger):
    r = api.post("/webhook", content=SENT.encode(), headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "accepted"
    receipt = ledger.repository.get(SignalRecord.create_id(r.json()["fingerprint"]))
    assert receipt.raw == KEPT  # byte for byte, whitespace and escapes too
    stored = b"".join(n.state for n in ledger.recorder.select_notifications(1, 10_000))
    assert SECRET.encode() not in stored and json.dumps(SECRET).encode() not in stored


def test_signals_and_the_trail_answer_the_payload_as_sent(api, ledger):
    fingerprint = api.post("/webhook", content=SENT.encode()).json()["fingerprint"]
    projected(api)
    expected = as_written(KEPT)
    answered = as_written(api.get("/signals").content)
    (_, row) = dict(answered[1])["signals"][0]
    assert dict(row)["payload"] == expected
    trail = as_written(api.get(f"/signals/{fingerprint}/trail").content)
    assert dict(trail[1])["payload"] == expected
    # The tables still equal what the log says, numbers and all.
    assert verify(ledger)[1] == []


def test_an_alert_sent_without_its_secret_field_is_kept_whole(store_url, ledger):
    with service(store_url) as api:
        body = KEPT.encode()
        fingerprint = api.post("/webhook", content=body).json()["fingerprint"]
    receipt = ledger.repository.get(SignalRecord.create_id(fingerprint))
    assert receipt.raw == KEPT


@pytest.mark.parametrize("body, kept", [
    ('{"secret": "S", "type": "MARKET_DATA"}', '{"type": "MARKET_DATA"}'),
    ('{"type": "MARKET_DATA" , "secret":"S"}', '{"type": "MARKET_DATA"}'),
    ('{"a": 1, "secr\\u0065t": "S", "b": {"secret": 2}, "secret": "T"}',
     '{"a": 1, "b": {"secret": 2}}'),
    ('{"secret": "S"}', "{}"),
])
def test_every_top_level_secret_member_is_cut_out_however_written(body, kept):
    from ledger.signals import without_secret

    assert without_secret(body) == kept
