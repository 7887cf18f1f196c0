"""Ingest end to end: HTTP ingest on a running worker, `foodrisk import`, and outside Kafka clients.

One real `foodrisk worker` (Apache Kafka, chdb) for the module, spoken to over real HTTP; the
importer runs as a child process; the contract tests produce with confluent-kafka (librdkafka 2.x)
and with Debian's kcat (librdkafka 2.0.2), running the README's own kcat commands.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer, TopicPartition

from pipeline.ingest.tokens import add_device, revoke_device
from pipeline.localstack.kafka import KafkaBroker
from pipeline.settings import Settings
from pipeline.topics import group_lag
from schemas.reference import default_reference
from schemas.result import parse_result
from tests.bench.bench_import import count_topic_items, run_import_cli, write_csv
from tests.conftest import unavailable
from tests.integration.factories import result
from tests.integration.workers import WorkerProcess

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
RATE_PER_S, BURST, MAX_ITEMS, MAX_BYTES = 100, 1000, 1000, 1_048_576
FUZZ_DEVICES = [f"fuzz-{i:02d}" for i in range(10)]


class Stack:
    def __init__(self, broker: KafkaBroker, worker: WorkerProcess, topics: dict[str, str], db: str, app_id: str,
                 tokens: dict[str, str], workdir: Path) -> None:
        self.broker, self.worker, self.topics, self.db, self.app_id = broker, worker, topics, db, app_id
        self.tokens, self.workdir = tokens, workdir
        self.tokens_file = workdir / "devices.json"

    def env(self) -> dict[str, str]:
        return {
            "FOODRISK_BROKER_URL": self.broker.url,
            "FOODRISK_RESULTS_TOPIC": self.topics["results"], "FOODRISK_ALERTS_TOPIC": self.topics["alerts"],
            "FOODRISK_DEADLETTER_TOPIC": self.topics["deadletter"], "FOODRISK_DATA_DIR": str(self.workdir / "cli"),
            "FOODRISK_TOPIC_PARTITIONS": "3",
        }

    def count(self, where: str, table: str = "results", **params: Any) -> Any:
        return self.worker.scalar(f"SELECT count() FROM {self.db}.{table} FINAL WHERE {where}", **params)

    def wait_count(self, where: str, expected: int, table: str = "results", **params: Any) -> None:
        self.worker.wait_for(f"SELECT count() FROM {self.db}.{table} FINAL WHERE {where}", expected, **params)

    def wait_drained(self, timeout_s: float = 60) -> None:
        s = Settings(broker_url=self.broker.url)
        deadline = time.monotonic() + timeout_s
        while (left := group_lag(s, [self.broker.bootstrap], self.app_id, self.topics["results"])) != 0:
            assert time.monotonic() < deadline, f"{left} results messages not committed after {timeout_s}s"
            time.sleep(0.3)


@pytest.fixture(scope="module")
def stack(broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    unique = uuid.uuid4().hex[:8]
    workdir = tmp_path_factory.mktemp("ingest")
    tokens_file = workdir / "devices.json"
    tokens = {dev: add_device(tokens_file, dev) for dev in ["dev-01", "dev-02", "dev-rate", "dev-gone", *FUZZ_DEVICES]}
    tokens["dev-site"] = add_device(tokens_file, "dev-site", site="site-a")
    revoke_device(tokens_file, "dev-gone")
    topics = {k: f"ingest.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    db, app_id = f"ingest_{unique}", f"ingest-{unique}"
    worker = WorkerProcess(
        workdir / "worker", broker_url=broker.url, clickhouse_url=f"chdb://{workdir / 'chdb'}", app_id=app_id,
        topics=topics, FOODRISK_CLICKHOUSE_DATABASE=db, FOODRISK_INGEST_TOKENS_FILE=str(tokens_file),
        FOODRISK_INGEST_RATE_PER_S=str(RATE_PER_S), FOODRISK_INGEST_BURST=str(BURST),
        FOODRISK_INGEST_MAX_ITEMS=str(MAX_ITEMS), FOODRISK_INGEST_MAX_BYTES=str(MAX_BYTES),
    )
    worker.start()
    try:
        yield Stack(broker, worker, topics, db, app_id, tokens, workdir)
    finally:
        worker.stop()


# -- a small HTTP client ---------------------------------------------------------------------------


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, body

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)

    def __repr__(self) -> str:
        return f"<{self.status} {self.raw[:300]!r}>"


class Client:
    """http.client with one kept-alive connection, reopened when the server closed it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                ) -> Answer:
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self._conn.request(method, path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest,
                    http.client.ResponseNotReady, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def post(self, payload: Any, token: str | None, *, raw: bytes | None = None) -> Answer:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else orjson.dumps(payload)
        return self.request("POST", "/v1/results", body, headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@pytest.fixture
def client(stack: Stack) -> Iterator[Client]:
    c = Client(stack.worker.port)
    yield c
    c.close()


def rid(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}"


def topic_ids(bootstrap: str, topic: str) -> set[str]:
    """Every result_id in the topic up to its end offsets at the time of the call."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    try:
        tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or set()]
        c.assign(tps)
        end = c.end_offsets(tps)
        ids: set[str] = set()
        deadline = time.monotonic() + 30
        while any(c.position(tp) < end[tp] for tp in tps):
            assert time.monotonic() < deadline, "could not read the topic up to its end offsets"
            for records in c.poll(timeout_ms=300).values():
                for r in records:
                    v = orjson.loads(r.value)
                    ids.update(str(d.get("result_id")) for d in (v if isinstance(v, list) else [v])
                               if isinstance(d, dict))
        return ids
    finally:
        c.close()


# -- HTTP ingest -------------------------------------------------------------------------------------


def test_single_result_is_in_the_topic_when_202_answers_and_lands_in_clickhouse(stack: Stack, client: Client) -> None:
    r = rid("one")
    ans = client.post(result(r, device_id="dev-01"), stack.tokens["dev-01"])
    assert ans.status == 202, ans
    assert ans.json == {"accepted": [r], "rejected": [], "duplicates": []}
    # Read right after the 202: the broker already has it.
    assert r in topic_ids(stack.broker.bootstrap, stack.topics["results"])
    stack.wait_count("result_id = %(r)s", 1, r=r)


def test_batch_accepts_valid_items_and_reports_invalid_ones_field_by_field(stack: Stack, client: Client) -> None:
    good = [result(rid("b"), device_id="dev-02", value=float(i)) for i in range(5)]
    bad_unit = result(rid("bu"), device_id="dev-02", unit="furlongs")
    no_site = {k: v for k, v in result(rid("bs"), device_id="dev-02").items() if k != "site"}
    items = [good[0], bad_unit, good[1], no_site, good[2], "text", good[3], good[4], good[0]]
    ans = client.post(items, stack.tokens["dev-02"])
    assert ans.status == 202, ans
    body = ans.json
    assert body["accepted"] == [g["result_id"] for g in good]
    assert body["duplicates"] == [good[0]["result_id"]]
    rejected = {r["index"]: r for r in body["rejected"]}
    assert set(rejected) == {1, 3, 5}
    assert rejected[1]["result_id"] == bad_unit["result_id"]
    assert {"field": "unit", "reason": "unknown unit: use mg/kg, µg/kg (or ug/kg), mg/L or %"} in rejected[1]["errors"]
    assert {"field": "site", "reason": "required"} in rejected[3]["errors"]
    assert rejected[5]["errors"] == [{"field": "$", "reason": "a result must be a JSON object, not a string"}]
    stack.wait_count("device_id = 'dev-02' AND result_id IN %(ids)s", 5, ids=tuple(body["accepted"]))
    # Nothing invalid was published: the worker dead-lettered nothing from this batch.
    assert stack.count("payload LIKE %(p)s", table="deadletters", p=f"%{bad_unit['result_id']}%") == 0


def test_422_when_no_item_is_valid(stack: Stack, client: Client) -> None:
    ans = client.post([result(rid("x"), device_id="dev-01", value=-1.0), {}], stack.tokens["dev-01"])
    assert ans.status == 422, ans
    body = ans.json
    assert body["accepted"] == []
    assert [r["index"] for r in body["rejected"]] == [0, 1]
    assert any(e["field"] == "value" for e in body["rejected"][0]["errors"])
    assert {"field": "result_id", "reason": "required"} in body["rejected"][1]["errors"]
    assert client.post([], stack.tokens["dev-01"]).status == 422


def test_401_without_a_valid_token(stack: Stack, client: Client) -> None:
    payload = result(rid("auth"), device_id="dev-01")
    for token in (None, "", "frk_00000000_nope", stack.tokens["dev-01"] + "x", stack.tokens["dev-gone"]):
        ans = client.post(payload, token)
        assert ans.status == 401, (token, ans)
        assert ans.headers.get("www-authenticate", "").startswith("Bearer")
        assert "token" in ans.json["error"]
    ans = client.request("POST", "/v1/results", orjson.dumps(payload), {"Authorization": "Basic ZGV2OnB3"})
    assert ans.status == 401


def test_revoking_a_device_takes_effect_on_the_running_worker(stack: Stack, client: Client) -> None:
    token = add_device(stack.tokens_file, "dev-temp")
    payload = result(rid("rv"), device_id="dev-temp")
    deadline = time.monotonic() + 10
    while (ans := client.post(payload, token)).status == 401 and time.monotonic() < deadline:
        time.sleep(0.3)  # the worker re-reads the registry within a second
    assert ans.status == 202, ans
    revoke_device(stack.tokens_file, "dev-temp")
    deadline = time.monotonic() + 10
    while (ans := client.post(payload, token)).status == 202 and time.monotonic() < deadline:
        time.sleep(0.3)
    assert ans.status == 401, ans


def test_403_when_an_item_belongs_to_another_device(stack: Stack, client: Client) -> None:
    mine, theirs = result(rid("m"), device_id="dev-01"), result(rid("t"), device_id="dev-02")
    ans = client.post([mine, theirs], stack.tokens["dev-01"])
    assert ans.status == 403, ans
    assert ans.json["detail"] == [{"index": 1, "device_id": "dev-02"}]
    assert client.post(theirs, stack.tokens["dev-01"]).status == 403
    time.sleep(1.5)
    assert stack.count("result_id IN %(ids)s", ids=(mine["result_id"], theirs["result_id"])) == 0


def test_413_over_the_size_or_count_limit(stack: Stack, client: Client) -> None:
    token = stack.tokens["dev-01"]
    big = client.post(None, token, raw=b"[" + b" " * MAX_BYTES + b"]")
    assert big.status == 413, big
    assert "bytes" in big.json["error"]
    many = client.post([{}] * (MAX_ITEMS + 1), token)
    assert many.status == 413, many
    assert str(MAX_ITEMS) in many.json["error"]
    # Chunked (no Content-Length): the body is cut off while reading.
    conn = http.client.HTTPConnection("127.0.0.1", stack.worker.port, timeout=30)
    try:
        chunks = (b"[" + b" " * 65536 for _ in range(MAX_BYTES // 65536 + 2))
        conn.request("POST", "/v1/results", body=chunks, headers={"Authorization": f"Bearer {token}"},
                     encode_chunked=True)
        assert conn.getresponse().status == 413
    finally:
        conn.close()


def test_429_with_retry_after_past_the_rate_limit(stack: Stack, client: Client) -> None:
    token = stack.tokens["dev-rate"]
    first = client.post([{}] * BURST, token)  # spends the whole bucket (invalid items cost too)
    assert first.status == 422, first
    # Validating the first batch takes a moment, which refills a little: ask for more than that.
    second = client.post([{}] * 300, token)
    assert second.status == 429, second
    retry_after = int(second.headers["retry-after"])
    assert 1 <= retry_after <= 300 / RATE_PER_S + 1
    assert "rate limit" in second.json["error"]
    time.sleep(retry_after)
    assert client.post([{}] * 300, token).status == 422  # refilled


def test_reposting_a_result_is_idempotent_end_to_end(stack: Stack, client: Client) -> None:
    r = rid("idem")
    payload = result(r, device_id="dev-01", analyte="carbofuran", method="lc_msms", value=0.08, unit="mg/kg")
    for body in (payload, payload, [payload, result(rid("idem2"), device_id="dev-01")]):
        ans = client.post(body, stack.tokens["dev-01"])
        assert ans.status == 202, ans
        assert r in ans.json["accepted"]
    stack.wait_count("result_id = %(r)s", 1, r=r)
    stack.wait_drained()
    assert stack.count("result_id = %(r)s", r=r) == 1


def test_openapi_docs_health_and_readiness(stack: Stack, client: Client) -> None:
    doc = client.request("GET", "/openapi.json")
    assert doc.status == 200
    spec = doc.json
    assert spec["openapi"].startswith("3.1")
    post = spec["paths"]["/v1/results"]["post"]
    assert {"202", "401", "403", "413", "422", "429"} <= set(post["responses"])
    schemas = spec["components"]["schemas"]
    assert {"Result", "Site", "IngestResponse", "ErrorResponse"} <= set(schemas)
    assert "result_id" in schemas["Result"]["required"]
    for ref in re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', doc.raw.decode()):
        assert ref in schemas, ref
    page = client.request("GET", "/docs")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "Authorization: Bearer" in page.raw.decode() and "site.district" in page.raw.decode()
    assert client.request("GET", "/healthz").status == 200
    ready = client.request("GET", "/readyz")
    assert ready.status == 200, ready
    assert ready.json["broker"] is True and ready.json["clickhouse"] is True


def test_the_device_port_serves_only_its_own_paths(stack: Stack, client: Client) -> None:
    """/v1/query moved to the query port; Faust's own pages (/router/ shows the cluster, /table/...
    the table contents) are not served to anyone."""
    body = orjson.dumps({"sql": "SELECT 1"})
    assert client.request("POST", "/v1/query", body, {"Content-Type": "application/json"}).status == 404
    for path in ("/router/", "/router", "/table/", "/table/early-meta/x/", "/", "/assignment/", "/graph/",
                 "/performance/", "/stats/"):
        ans = client.request("GET", path)
        assert ans.status == 404, (path, ans)
    assert client.request("GET", "/metrics").status == 200
    assert "/v1/query" not in client.request("GET", "/openapi.json").json["paths"]


def query_port(stack: Stack) -> Client:
    return Client(stack.worker.query_port)


def ask(c: Client, body: Any, token: str | None) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return c.request("POST", "/v1/query", body if isinstance(body, bytes) else orjson.dumps(body), headers)


def test_the_query_port_wants_an_analyst_token_and_results_refuse_it(stack: Stack, client: Client) -> None:
    analyst = stack.worker.analyst_token
    assert analyst.startswith("fra_")
    q = query_port(stack)
    try:
        for token in (None, stack.tokens["dev-01"], analyst + "x"):
            ans = ask(q, {"sql": "SELECT 1"}, token)
            assert ans.status == 401, (token and token[:4], ans)
            assert ans.headers["www-authenticate"].startswith("Bearer")
        ok = ask(q, {"sql": "SELECT 41 + 1 AS x"}, analyst)
        assert ok.status == 200, ok
        assert ok.json == {"columns": ["x"], "rows": [[42]], "truncated": False}
        spec = q.request("GET", "/openapi.json").json
        assert set(spec["paths"]) == {"/v1/query", "/v1/plan", "/openapi.json"}
        for path in ("/v1/results", "/metrics", "/router/", "/table/early-meta/x/"):
            assert q.request("GET", path).status == 404
        # Item 7: never a 500 on malformed numbers, nesting or bodies.
        for bad in (b'{"sql": "SELECT 1", "max_rows": Infinity}', b'{"sql": "SELECT 1", "max_rows": 1e400}',
                    b"[" * 30_000 + b"]" * 30_000, b"[1]", b'{"sql": 5}'):
            assert ask(q, bad, analyst).status == 400, bad[:40]
        assert ask(q, b"[" * 100_000 + b"]" * 100_000, analyst).status == 413
    finally:
        q.close()
    ans = client.post(result(rid("ana"), device_id="dev-01"), analyst)
    assert ans.status == 401 and "analyst token" in ans.json["error"], ans


def test_403_when_a_device_bound_to_a_site_claims_another(stack: Stack, client: Client) -> None:
    here, there = result(rid("s-a"), device_id="dev-site", site_id="site-a"), result(rid("s-b"), device_id="dev-site",
                                                                                     site_id="site-b")
    ans = client.post([here, there], stack.tokens["dev-site"])
    assert ans.status == 403, ans
    assert "site-a" in ans.json["error"] and ans.json["detail"] == [{"index": 1, "site_id": "site-b"}]
    assert client.post(there, stack.tokens["dev-site"]).status == 403
    assert client.post(here, stack.tokens["dev-site"]).status == 202
    stack.wait_count("result_id = %(r)s", 1, r=here["result_id"])
    assert there["result_id"] not in topic_ids(stack.broker.bootstrap, stack.topics["results"])  # nothing published
    # Unbound devices may name any site, as before.
    assert client.post(result(rid("s-any"), device_id="dev-01", site_id="site-b"), stack.tokens["dev-01"]).status == 202


def test_slow_analyst_queries_neither_hold_ingest_back_nor_queue_without_bound(stack: Stack, client: Client) -> None:
    """Six slow queries at once (concurrency 1, queue 4): one runs, four wait, the sixth gets 429;
    meanwhile /readyz answers and a posted result is written at once (they share nothing)."""
    import concurrent.futures

    analyst = stack.worker.analyst_token
    tag = rid("for-slow")
    for k in range(4):  # rows for the slow query to wait on (table functions like numbers() are refused)
        assert client.post(result(f"{tag}-{k}", device_id="dev-01"), stack.tokens["dev-01"]).status == 202
    stack.wait_count("result_id LIKE %(p)s", 4, p=f"{tag}-%")
    slow = {"sql": "SELECT sum(sleepEachRow(0.5)) FROM (SELECT 1 FROM results FINAL WHERE result_id LIKE %(p)s)",
            "params": {"p": f"{tag}-%"}}  # 2 s each, no CPU
    answers: list[Answer] = []

    def one() -> None:
        c = query_port(stack)
        try:
            answers.append(ask(c, slow, analyst))
        finally:
            c.close()

    stack.wait_drained()  # nothing of earlier tests still on its way to ClickHouse
    written_before = stack.worker.metric("foodrisk_sink_rows_total", table="results")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(one) for _ in range(6)]
        time.sleep(0.5)
        started = time.monotonic()
        ready = client.request("GET", "/readyz")
        ready_s = time.monotonic() - started
        r = rid("while-slow")
        assert client.post(result(r, device_id="dev-01"), stack.tokens["dev-01"]).status == 202
        while stack.worker.metric("foodrisk_sink_rows_total", table="results") <= written_before:
            assert time.monotonic() - started < 5, "the result waited for the analyst queries"
            time.sleep(0.05)
        stored_s = time.monotonic() - started
        for f in futures:
            f.result()
    print(f"while 5 slow queries ran or waited: /readyz {ready_s * 1000:.0f} ms, result written {stored_s:.2f} s")
    assert ready.status == 200 and ready_s < 2
    statuses = sorted(a.status for a in answers)
    assert statuses == [200] * 5 + [429], answers
    busy = next(a for a in answers if a.status == 429)
    assert int(busy.headers["retry-after"]) >= 1


# -- fuzz --------------------------------------------------------------------------------------------

_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_json = st.recursive(_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=12)
_FIELDS = list(result("x").keys())


@st.composite
def _mutated_result(draw: st.DrawFn, device: str) -> Any:
    d = result(f"fz-{draw(st.integers(0, 10**6))}", device_id=device)
    for key in draw(st.lists(st.sampled_from([*_FIELDS, "schema_version", "qualitative", "lod", "loq", "confirms"]),
                             max_size=4)):
        action = draw(st.sampled_from(["drop", "junk", "other_device", "big"]))
        if action == "drop":
            d.pop(key, None)
        elif action == "junk":
            d[key] = draw(_json)
        elif action == "other_device":
            d["device_id"] = draw(st.sampled_from(["dev-01", "", device, 7]))
        else:
            d[key] = "x" * draw(st.sampled_from([129, 70_000]))
    return d


@st.composite
def _request(draw: st.DrawFn, tokens: dict[str, str]) -> tuple[str, str, bytes, dict[str, str]]:
    device = draw(st.sampled_from(FUZZ_DEVICES))
    auth = draw(st.sampled_from(["good", "good", "good", "good", "none", "junk", "revoked", "scheme"]))
    headers = {}
    if auth == "good":
        headers["Authorization"] = f"Bearer {tokens[device]}"
    elif auth == "junk":
        headers["Authorization"] = "Bearer " + draw(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126),
                                                            max_size=70))
    elif auth == "revoked":
        headers["Authorization"] = f"Bearer {tokens['dev-gone']}"
    elif auth == "scheme":
        headers["Authorization"] = draw(st.sampled_from(["Basic abc", "Bearer", "bearer  ", tokens[device]]))
    headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "application/x-www-form"]))
    kind = draw(st.sampled_from(["one", "batch", "batch", "json", "bytes", "nested", "truncated"]))
    if kind == "one":
        body = json.dumps(draw(_mutated_result(device))).encode()
    elif kind == "batch":
        body = json.dumps(draw(st.lists(_mutated_result(device) | _json, max_size=6))).encode()
    elif kind == "json":
        body = json.dumps(draw(_json)).encode()
    elif kind == "bytes":
        body = draw(st.binary(max_size=300))
    elif kind == "nested":
        depth = draw(st.integers(1, 3000))
        body = b"[" * depth + b"]" * depth
    else:
        full = json.dumps([draw(_mutated_result(device))]).encode()
        body = full[: draw(st.integers(0, len(full)))]
    method, path = draw(st.sampled_from([("POST", "/v1/results")] * 12 + [
        ("GET", "/v1/results"), ("PUT", "/v1/results"), ("POST", "/openapi.json"), ("GET", "/nope"),
        ("POST", "/v1/results/"), ("DELETE", "/v1/results"),
    ]))
    return method, path, body, headers


FUZZ_EXAMPLES = int(os.environ.get("FOODRISK_FUZZ_EXAMPLES", "2500"))


def test_fuzz_the_api_no_5xx_and_the_worker_stays_healthy(stack: Stack) -> None:
    client = Client(stack.worker.port)
    statuses: dict[int, int] = {}

    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(req=_request(stack.tokens))
    def one(req: tuple[str, str, bytes, dict[str, str]]) -> None:
        method, path, body, headers = req
        ans = client.request(method, path, body, headers)
        statuses[ans.status] = statuses.get(ans.status, 0) + 1
        assert ans.status < 500, (method, path, body[:500], ans)
        if path == "/v1/results" and method == "POST":
            assert ans.headers["content-type"].startswith("application/json")
            assert isinstance(ans.json, dict)

    started = time.monotonic()
    one()
    elapsed = time.monotonic() - started
    client.close()
    print(f"fuzz: {sum(statuses.values())} requests in {elapsed:.1f}s, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= FUZZ_EXAMPLES
    assert {202, 400, 401, 422} <= set(statuses)  # the generator reaches the main answers
    # Still healthy and still ingesting.
    c = Client(stack.worker.port)
    assert c.request("GET", "/healthz").status == 200
    deadline = time.monotonic() + 60  # right after start-up the consumer group may still be joining
    while (ready := c.request("GET", "/readyz")).status != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ready.status == 200, ready
    r = rid("after-fuzz")
    assert c.post(result(r, device_id="dev-01"), stack.tokens["dev-01"]).status == 202
    stack.wait_count("result_id = %(r)s", 1, r=r)
    metrics = c.request("GET", "/metrics").raw.decode()
    assert not re.search(r'foodrisk_ingest_requests_total\{status="5\d\d"\}', metrics)
    c.close()


# -- foodrisk import -----------------------------------------------------------------------------------


def test_import_a_lims_export_with_the_example_mapping(stack: Stack, tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.csv"
    s = run_import_cli(
        REPO / "deploy/import/lims-export.example.csv", stack.env(),
        "--mapping", str(REPO / "deploy/import/lims-mapping.example.yaml"), "--rejects", str(rejects),
    )
    assert (s["rows"], s["accepted"], s["rejected"], s["duplicates"], s["not_delivered"]) == (6, 3, 2, 1, 0)
    ids = ("R2026-000101", "R2026-000102", "R2026-000103")
    stack.wait_count("result_id IN %(ids)s", 3, ids=ids)
    rows = stack.worker.query(
        f"SELECT result_id, commodity, analyte, method, value_mg_kg, toString(sampled_at), site_type "
        f"FROM {stack.db}.results FINAL WHERE result_id IN %(ids)s ORDER BY result_id", ids=ids)
    assert rows[0][1:] == ["cowpea", "chlorpyrifos", "lc_msms", 0.012, "2026-11-19 23:30:00", "testing_centre"]
    assert rows[2][2:5] == ["cadmium", "icp_ms", 0.035]  # 35 µg/kg
    lines = rejects.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line,outcome,result_id,reasons"
    assert lines[1].startswith("5,rejected,R2026-000104,") and "unknown unit" in lines[1]
    assert lines[2] == "6,duplicate,R2026-000101,result_id accepted on an earlier line"
    assert lines[3].startswith("7,rejected,R2026-000105,") and "value and qualitative are both missing" in lines[3]


def test_import_a_wire_format_csv_end_to_end(stack: Stack, tmp_path: Path) -> None:
    prefix = f"csv{uuid.uuid4().hex[:6]}"
    path = tmp_path / "results.csv"
    expected = write_csv(path, 3000, invalid_every=400, duplicate_every=250, prefix=prefix)
    s = run_import_cli(path, stack.env())
    assert (s["rows"], s["accepted"], s["rejected"], s["duplicates"]) == (
        expected.rows, expected.accepted, expected.rejected, expected.duplicates)
    assert s["messages"] == 3  # batch form: up to FOODRISK_MAX_BATCH_ITEMS (1000) results per message
    stack.wait_count("result_id LIKE %(p)s", expected.accepted, p=f"{prefix}-%")
    rejects = (tmp_path / "results.csv.rejects.csv").read_text(encoding="utf-8").splitlines()
    assert len(rejects) == 1 + expected.rejected + expected.duplicates


def test_import_refuses_a_file_missing_required_columns(stack: Stack, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("result_id,value\nr1,1\n", encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "import", str(path), "--quiet"],
                          env={**os.environ, **stack.env()}, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2
    assert "no column(s) sample_id, device_id, site_id" in proc.stderr
    assert "--mapping" in proc.stderr


def test_import_memory_stays_flat_and_every_row_is_accounted_for(broker: KafkaBroker, tmp_path: Path) -> None:
    """20k vs 100k rows into a scratch topic (no worker): peak RSS must not grow with the rows beyond
    the duplicate filter (16 bytes an id at most)."""
    figures = {}
    for n in (20_000, 100_000):
        topic = f"import.rss.{uuid.uuid4().hex[:8]}"
        path = tmp_path / f"{n}.csv"
        expected = write_csv(path, n)
        s = run_import_cli(path, {"FOODRISK_BROKER_URL": broker.url,
                                  "FOODRISK_RESULTS_TOPIC": topic, "FOODRISK_DATA_DIR": str(tmp_path / "var")})
        assert s["accepted"] + s["rejected"] + s["duplicates"] == n
        assert (s["accepted"], s["rejected"], s["duplicates"], s["not_delivered"]) == (
            expected.accepted, expected.rejected, expected.duplicates, 0)
        items, distinct = count_topic_items(broker.bootstrap, topic)
        assert items == distinct == expected.accepted
        figures[n] = s
        path.unlink()
    small, large = figures[20_000], figures[100_000]
    print(f"import 20k: {small['peak_rss_mib']:.0f} MiB, {small['rows_per_s']:,.0f} rows/s; "
          f"100k: {large['peak_rss_mib']:.0f} MiB, {large['rows_per_s']:,.0f} rows/s")
    assert large["peak_rss_mib"] - small["peak_rss_mib"] < 12, figures


# -- outside Kafka clients: the message contract --------------------------------------------------------


def test_contract_confluent_kafka_single_and_batch_messages(stack: Stack) -> None:
    """What an outside client does per the README: JSON value (object or array), key = device id,
    no headers, naive times in Asia/Shanghai."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    single = result(rid("ck1"), device_id="lab-ck")
    single["sampled_at"] = "2026-11-20T07:30:00"  # naive: Asia/Shanghai
    single["tested_at"] = "2026-11-20T08:10:00"
    batch = [result(rid("ck2"), device_id="lab-ck"), result(rid("ck3"), device_id="lab-ck", unit="furlongs"),
             result(rid("ck4"), device_id="lab-ck", value=63.0)]
    p = confluent_kafka.Producer({"bootstrap.servers": stack.broker.bootstrap, "acks": "all",
                                  "enable.idempotence": True})
    errors: list[Any] = []
    for value in (single, batch):
        p.produce(stack.topics["results"], key=b"lab-ck", value=orjson.dumps(value),
                  on_delivery=lambda e, m: errors.append(e) if e else None)
    assert p.flush(30) == 0
    assert not errors
    ids = (single["result_id"], batch[0]["result_id"], batch[2]["result_id"])
    stack.wait_count("result_id IN %(ids)s", 3, ids=ids)
    assert stack.worker.scalar(
        f"SELECT toString(sampled_at) FROM {stack.db}.results FINAL WHERE result_id = %(r)s", r=single["result_id"]
    ) == "2026-11-19 23:30:00"
    stack.wait_count("src_item = 1 AND payload LIKE %(p)s", 1, table="deadletters", p=f"%{batch[1]['result_id']}%")


def readme_kcat_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- kcat-example -->\n```sh\n(.*?)```", readme, re.S)
    assert m, "README: the kcat example block is marked <!-- kcat-example -->"
    return m.group(1)


def test_contract_kcat_runs_the_readme_commands(stack: Stack, tmp_path: Path) -> None:
    """The README's two kcat commands, as printed (only the broker address and topic swapped for
    this test's), with Debian's kcat: one result keyed by -K, and a batch file as one message."""
    kcat = shutil.which("kcat")
    if kcat is None:
        unavailable("kcat is not installed (apt-get install -y kcat)")
    block = readme_kcat_block()
    assert block.count("kcat -P") == 2, block
    assert "batch.json" in block, block
    single_id = re.search(r'"result_id":"([^"]+)"', block)
    assert single_id, block
    batch = [result(rid("kc1"), device_id="lab-07"), result(rid("kc2"), device_id="lab-07", unit="furlongs"),
             result(rid("kc3"), device_id="lab-07", value=63.0)]
    (tmp_path / "batch.json").write_bytes(orjson.dumps(batch))
    script = block.replace("kafka-1:9092", stack.broker.bootstrap).replace("foodrisk.results", stack.topics["results"])
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, f"kcat failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    assert "ERROR" not in done.stderr, done.stderr
    ids = (single_id.group(1), batch[0]["result_id"], batch[2]["result_id"])
    stack.wait_count("result_id IN %(ids)s", 3, ids=ids)
    assert stack.count("result_id IN %(ids)s AND device_id = 'lab-07'", ids=ids) == 3
    stack.wait_count("src_item = 1 AND payload LIKE %(p)s", 1, table="deadletters", p=f"%{batch[1]['result_id']}%")


def test_readme_kcat_example_is_a_valid_result() -> None:
    block = readme_kcat_block()
    payload = re.search(r"echo '([^|']+)\|(\{.*?\})'", block, re.S)
    assert payload, block
    key, value = payload.group(1), payload.group(2)
    r = parse_result(value.encode(), reference=default_reference(), now=datetime(2026, 11, 28, tzinfo=UTC))
    assert r.device_id == key
