"""Two `ledger serve` instances on one Postgres store, as behind the load balancer: both take
webhooks, one runs the projections, and when it dies (SIGKILL) the other takes over and the
reads keep answering everyone's writes.
"""

from __future__ import annotations

import time

import pytest

import migrations
from ledger.application import Ledger
from tests.alerts import Alerts
from tests.api_server import ServeProcess
from tests.conftest import make_config
from tests.test_api_serve import SECRET, TOKEN, signed

pytestmark = pytest.mark.postgres
TAKEOVER_S_MAX = 15  # standby poll (1 s) + the dead leader's lock released with its socket


@pytest.fixture
def store_url(new_store_url):
    url = new_store_url("postgres")
    with Ledger(make_config(), url) as ledger:
        migrations.migrate(ledger)
    return url


def leads(server: ServeProcess) -> bool:
    with server.client() as client:
        return "ledger_projection_leader 1.0" in client.get("/metrics").text


def test_the_standby_takes_over_projections_when_the_leader_dies(store_url):
    env = {"LEDGER_WEBHOOK_SECRET": SECRET, "LEDGER_API_TOKEN": TOKEN}
    a = Alerts()
    auth = {"authorization": f"Bearer {TOKEN}"}
    with ServeProcess(store_url, env=env) as first, ServeProcess(store_url, env=env) as second:
        deadline = time.monotonic() + TAKEOVER_S_MAX
        while sum(map(leads, (first, second))) != 1:
            assert time.monotonic() < deadline, "no single projection leader"
            time.sleep(0.1)
        leader, standby = (first, second) if leads(first) else (second, first)

        # Both take webhooks; a write on either is readable on either (?after=).
        with leader.client() as on_leader, standby.client(headers=auth) as on_standby:
            base = on_leader.post("/webhook", json=signed(a.base(52000, 51900, 100))).json()
            r = on_standby.get(f"/positions/{base['position_id']}",
                               params={"after": base["log_position"]})
            assert r.status_code == 200 and r.json()["status"] == "open"

        leader.kill()  # SIGKILL: no goodbye, its advisory lock goes with its connection
        with standby.client() as hook, standby.client(headers=auth) as reads:
            mark = hook.post("/webhook", json=signed(a.mark(52800, 100))).json()
            deadline = time.monotonic() + TAKEOVER_S_MAX
            while not leads(standby):
                assert time.monotonic() < deadline, "the standby never took over"
                time.sleep(0.1)
            r = reads.get(f"/positions/{base['position_id']}",
                          params={"after": mark["log_position"]})
            assert r.status_code == 200 and r.json()["current_stop"] == "52550.0"
            ready = hook.get("/ready").json()
            assert ready["projections"]["runner"] == "leader"
            assert ready["projections"]["lag_events"] == 0
