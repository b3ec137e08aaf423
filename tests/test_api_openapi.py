"""Schemathesis against a running `ledger serve`, driven by its own /openapi.json: every
operation fuzzed from the document, every answer checked against it (status codes, content
types, response schemas, no 5xx), and no refused webhook call appends anything.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import migrations
from api.app import create_app
from api.settings import ServeSettings
from ledger.application import Ledger
from ledger.config import default_config
from tests.alerts import Alerts
from tests.api_server import ServeProcess

TOKEN = "schema-token"
EXAMPLES_PER_OPERATION = 40


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'ledger.sqlite3'}"
    with Ledger(default_config(), url) as ledger:
        migrations.migrate(ledger)
        a = Alerts()  # something to read back: an open base, a closed pyramid
        ledger.decide(a.base(52000, 51900, 100))
        ledger.decide(a.pyramid("Long_2", 52400, 52300, 100))
        ledger.decide(a.exit("Long_2", 52500))
        # No webhook secret: generated alerts reach validation and the ledger itself.
        with ServeProcess(url, env={"LEDGER_API_TOKEN": TOKEN}) as server:
            yield server, ledger


READ_PATHS = ("/portfolio", "/positions", "/signals", "/statistics")
TAKES_NO_INPUT = ("/health", "/ready", "/ready/webhook", "/metrics")
# The answer conforms to the document. (Not "schema-valid alerts are accepted": an alert's
# cross-field rules, such as a stop below the price, are the ledger's, answered 422.)
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance,
               response_headers_conformance, response_schema_conformance]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_keeps_its_documented_contract(served, mode):
    # Schemathesis' pytest loader does not run under this pytest; its strategies and
    # response validation are used directly instead, one Hypothesis run per operation.
    server, ledger = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    # Every route but the document itself, which Schemathesis leaves out.
    assert {o.path for o in operations} == {
        "/webhook", "/webhook/{portfolio}", "/portfolio", "/positions",
        "/positions/{position_id}", "/positions/{position_id}/history", "/signals",
        "/signals/{fingerprint}/trail", "/statistics", "/health", "/ready", "/ready/webhook",
        "/metrics", "/instances",
        "/orders", "/orders/{intent_id}", "/reconciliation", "/halt", "/reconcile", "/resume"}

    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.path in TAKES_NO_INPUT:
            continue  # nothing to make invalid
        check_operation(operation, mode, server, ledger)


def check_operation(operation: Any, mode: GenerationMode, server: Any, ledger: Any) -> None:
    reads = operation.path.startswith(READ_PATHS)
    webhook = operation.path.startswith("/webhook")

    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"} if reads else None
        before = ledger.recorder.max_notification_id()
        response = case.call(base_url=server.url, headers=headers, timeout=10)
        assert response.status_code < 500, (case.path, response.text)
        case.validate_response(response, headers=headers, checks=CONFORMANCE)
        if webhook and response.status_code != 200:
            assert ledger.recorder.max_notification_id() == before, response.text

    check()


def test_the_document_is_served_and_names_every_route(served):
    server, _ = served
    with server.client() as client:
        document = client.get("/openapi.json").json()
    assert document["openapi"].startswith("3.0")
    app = create_app(ServeSettings(), lambda: None)  # type: ignore[arg-type,return-value]
    assert set(document["paths"]) == {route.path for route in app.routes}


def test_audit_answers_about_real_signals_keep_the_contract(served):
    # Fuzzing finds no decided fingerprint and no interesting time by chance: ask about the
    # fixture's own signals, positions, signal times and decision times, and check each answer.
    server, ledger = served
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    trail = schema["/signals/{fingerprint}/trail"]["GET"]
    history = schema["/positions/{position_id}/history"]["GET"]
    portfolio = schema["/portfolio"]["GET"]
    cases = []
    for position_id in ("default:BANK_NIFTY:Long_1:1", "default:BANK_NIFTY:Long_2:1"):
        cases.append(history.Case(path_parameters={"position_id": position_id}))
        for entry in ledger.position_history(position_id):
            fingerprint = entry["signal"]["fingerprint"]
            cases.append(trail.Case(path_parameters={"fingerprint": fingerprint}))
            cases.append(portfolio.Case(query={"known_at": entry["recorded_at"]}))
            cases.append(portfolio.Case(query={"as_of": entry["signal"]["signal_timestamp"]}))
            cases.append(portfolio.Case(query={"as_of": entry["signal"]["signal_timestamp"],
                                               "known_at": entry["recorded_at"]}))
    for case in cases:
        response = case.call(base_url=server.url, headers=headers, timeout=10)
        assert response.status_code == 200, (case.path, response.text)
        case.validate_response(response, headers=headers, checks=CONFORMANCE)
