"""What the webhook tells an operator about an alert it refuses: the source address a 403
turned away (in the log line, never in the answer), and a TradingView template whose
placeholders arrived unfilled (a 422 naming each field and its placeholder).
"""

from __future__ import annotations

import ipaddress
import json
import logging

import pytest
from starlette.testclient import TestClient

from api.app import create_app
from api.settings import ServeSettings
from ledger.application import Ledger
from tests.alerts import Alerts
from tests.api_client import SECRET, service, with_secret
from tests.conftest import make_config


def forbidden_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "webhook forbidden" in r.getMessage()]


@pytest.mark.parametrize("peer, forwarded, named", [
    ("203.0.113.9", None, "from 203.0.113.9"),
    ("10.0.0.2", "198.51.100.7", "from 198.51.100.7 via 10.0.0.2"),  # nginx speaking for it
])
def test_a_forbidden_alert_is_logged_with_the_source_it_came_from(store_url, ledger, caplog,
                                                                    peer, forwarded, named):
    caplog.set_level(logging.INFO, logger="ledger.api")
    settings = ServeSettings(webhook_secret=SECRET,
                             allowlist=(ipaddress.ip_network("52.89.214.238/32"),),
                             trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))
    app = create_app(settings, lambda: Ledger(make_config(), store_url),
                     run_projections=False)
    headers = {"x-forwarded-for": forwarded} if forwarded else {}
    with TestClient(app, client=(peer, 40000)) as client:
        r = client.post("/webhook", content=json.dumps(with_secret(Alerts().mark(52000, 100))),
                        headers=headers)
    assert r.status_code == 403
    assert peer not in r.text and (forwarded or peer) not in r.text  # the log's, not theirs
    (line,) = forbidden_lines(caplog)
    assert line.endswith(named), line


@pytest.fixture
def api(store_url, ledger):
    with service(store_url, webhook_secret=SECRET) as client:
        yield client


def test_an_unfilled_template_is_422_naming_each_field_and_placeholder(api, ledger):
    before = ledger.recorder.max_notification_id()
    alert = with_secret({**Alerts().base(52000, 51900, 100), "type": "{{strategy.order.action}}",
                         "price": "{{close}}", "stop": 51900,
                         "extra": {"levels": [1, "{{plot(\"ATR\")}} pts"]}})
    r = api.post("/webhook", content=json.dumps(alert))
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["error"] == "invalid_signal"
    assert "template was not filled in" in body["message"]
    problems = {p["field"]: p["message"] for p in body["problems"]}
    assert "{{strategy.order.action}}" in problems["type"]
    assert "{{close}}" in problems["price"]
    assert '{{plot("ATR")}}' in problems["extra.levels[1]"]
    assert all("not filled in" in problems[f] for f in ("type", "price", "extra.levels[1]"))
    assert ledger.recorder.max_notification_id() == before


def test_braces_that_are_not_a_placeholder_are_no_problem(api):
    alert = with_secret(Alerts().base(52000, 51900, 100, reason="a {b} c {{ d"))
    r = api.post("/webhook", content=json.dumps(alert))
    assert r.status_code == 200, r.text
