"""Fuzzing the worker's HTTP APIs (the device port's ingest API and the analyst query port) from
their own OpenAPI documents with schemathesis.

schemathesis (a kept, maintained API fuzzer built on hypothesis) reads the document the worker
serves, generates valid and invalid requests for every operation and checks each answer: no
server error (5xx), a status code the document lists, the documented content type and headers,
and a body that matches the documented schema. One real worker (broker + chdb) answers; the
examples per operation are bounded so the suite stays quick (FOODRISK_FUZZ_EXAMPLES raises them
for a longer run).
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from pipeline.ingest.openapi import openapi_document
from pipeline.ingest.tokens import add_device
from pipeline.localstack.process import http_ok
from pipeline.query.server import query_openapi_document
from pipeline.settings import Settings
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("FOODRISK_FUZZ_EXAMPLES", "60"))
DEVICE = "fuzz-dev"
METRICS_TOKEN = "ops-metrics-token-5c1a"  # a test credential
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

ingest_schema = schemathesis.openapi.from_dict(openapi_document(Settings()))
query_schema = schemathesis.openapi.from_dict(query_openapi_document(Settings()))


class Fuzzed:
    def __init__(self, worker: WorkerProcess, token: str) -> None:
        self.worker, self.token = worker, token

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.worker.port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.worker.query_port}"


@pytest.fixture(scope="module")
def fuzzed(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    unique = uuid.uuid4().hex[:8]
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    tokens_file = workdir / "devices.json"
    token = add_device(tokens_file, DEVICE)
    topics = {k: f"fuzz.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    worker = WorkerProcess(
        workdir / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{workdir / 'chdb'}",
        app_id=f"fuzz-{unique}", topics=topics, FOODRISK_CLICKHOUSE_DATABASE=f"fuzz_{unique}",
        FOODRISK_INGEST_TOKENS_FILE=str(tokens_file),
        # the fuzzer sends far more than a device would: the rate limit is not what is tested here
        FOODRISK_INGEST_RATE_PER_S="100000", FOODRISK_INGEST_BURST="100000",
        FOODRISK_METRICS_TOKEN=METRICS_TOKEN,
    )
    worker.start()
    try:
        # /readyz answers 503 until the consumer group is assigned: fuzz a worker that is ready,
        # so that a 5xx means a defect
        deadline = time.monotonic() + 90
        while not http_ok(f"http://127.0.0.1:{worker.port}/readyz"):
            assert time.monotonic() < deadline, f"worker not ready after 90 s:\n{worker.log_tail()}"
            time.sleep(0.3)
        yield Fuzzed(worker, token)
    finally:
        worker.stop()


@ingest_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_ingest_api_answers_every_request_within_its_document(case: Any, fuzzed: Fuzzed) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.token}"}
    if case.body is not None and isinstance(case.body, dict) and "device_id" in case.body:
        # mostly our own device, so that generated results get past the ownership check and
        # reach validation, publishing and the 202 path; the 403 path is kept by other examples
        case.body["device_id"] = DEVICE
    case.call_and_validate(base_url=fuzzed.base_url, headers=headers, checks=CHECKS, timeout=60)


@query_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
def test_query_api_answers_every_request_within_its_document(case: Any, fuzzed: Fuzzed) -> None:
    headers = {"Authorization": f"Bearer {fuzzed.worker.analyst_token}"}
    case.call_and_validate(base_url=fuzzed.query_url, headers=headers, checks=CHECKS, timeout=60)


def test_metrics_need_the_operators_token_when_one_is_set(fuzzed: Fuzzed) -> None:
    url = f"{fuzzed.base_url}/metrics"
    for headers in ({}, {"Authorization": f"Bearer {fuzzed.token}"}, {"Authorization": "Bearer wrong-token"}):
        req = urllib.request.Request(url, headers=headers)  # noqa: S310 - loopback test worker
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=15)  # noqa: S310
        assert err.value.code == 401
        assert err.value.headers["WWW-Authenticate"].startswith("Bearer")
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})  # noqa: S310
    with urllib.request.urlopen(req, timeout=15) as resp:  # noqa: S310
        assert resp.status == 200
        assert b"foodrisk_results_consumed_total" in resp.read()
