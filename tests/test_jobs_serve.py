"""`ledger serve` runs the leader jobs and the alerts: a real process on a migrated store,
its alert webhook a receiver on 127.0.0.1."""

from __future__ import annotations

import subprocess

from tests.api_server import LEDGER, ServeProcess
from tests.coordination_servers import until
from tests.jobs_support import Receiver

DELIVERY_S = 10  # bound on the first alert arriving after the process starts


def test_serve_leads_runs_its_jobs_and_alerts_through_the_webhook(ledger, store_url):
    with Receiver() as receiver, ServeProcess(
            store_url, env={"LEDGER_ALERT_WEBHOOK_URL": receiver.url}) as serve:
        until(lambda: receiver.bodies, DELIVERY_S, "the leader_gained alert")
        until(lambda: "leader jobs: rollover, watch, signal_log_retention" in serve.output(),
              DELIVERY_S, "the jobs to start")
        assert serve.terminate() == 0
        output = serve.output()
    assert receiver.texts()[0].startswith("[ledger leader_gained]")
    assert "alerts: to the log and the webhook" in output
    assert "SECRETPATH" not in output and "Traceback" not in output


def test_serve_refuses_bad_job_settings_before_starting(ledger, store_url):
    done = subprocess.run([LEDGER, "serve", "--port", "0"], capture_output=True, text=True,
                          timeout=30, env={"LEDGER_DATABASE_URL": store_url,
                                           "LEDGER_ROLL_AT": "9.20",
                                           "LEDGER_SIGNAL_LOG_RETENTION_DAYS": "week"})
    assert done.returncode == 2
    assert "LEDGER_ROLL_AT" in done.stderr and "LEDGER_SIGNAL_LOG_RETENTION_DAYS" in done.stderr
