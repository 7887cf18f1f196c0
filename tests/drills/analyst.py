"""Drill "hostile analyst queries": an analyst credential in the wrong hands tries to read files, the
environment, other databases and the server's internals, to write, to lift the limits, and to
starve ingest; meanwhile devices keep posting results and the time from post to stored is timed.

An escape is an answer that carries the canary (a secret in the worker's environment and in a
file beside it), or a statement that must be refused (anything but one SELECT over the foodrisk
database with allowed functions) answered 200. Ingest latency is the time from POST /v1/results (device
token) until the worker's `foodrisk_sink_rows_total{table="results"}` counts the row; it is
measured with no query running and again while hostile queries run back to back from several
clients, and the row reports the ratio of the medians.
"""

from __future__ import annotations

import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from pipeline.ingest.tokens import add_device
from tests.drills.core import DrillRow, Run, Stack
from tests.integration.factories import result
from tests.integration.workers import WorkerProcess, metrics_text, sample

CANARY = "canary-8d1f3e0b7c"  # put in the worker's environment and in a file beside it
CANARY_FILE_NAME = "canary.txt"


@dataclass(frozen=True)
class Attempt:
    name: str
    sql: str
    params: dict[str, Any] | None = None
    must_refuse: bool = True  # False: legitimate SQL that is merely heavy (limits must end it)


def hostile_queries(canary_path: Path, db: str) -> list[Attempt]:
    path = str(canary_path)
    codes = ",".join(str(ord(c)) for c in path)
    a: list[Attempt] = [
        Attempt("scalar file()", f"SELECT file('{path}')"),
        Attempt("scalar file() of the environment", "SELECT file('/proc/self/environ')"),
        Attempt("FILE() upper case", f"SELECT FILE('{path}') AS x"),
        Attempt("file() from char codes", f"SELECT file(char({codes}))"),
        Attempt("file() in a CTE", f"WITH file('{path}') AS x SELECT x"),
        Attempt("file() in a subquery", f"SELECT * FROM (SELECT file('{path}') AS x)"),
        Attempt("file() in a lambda", f"SELECT arrayMap(p -> file(p), ['{path}'])"),
        Attempt("file() in WHERE", f"SELECT 1 WHERE file('{path}') != ''"),
        Attempt("file() after UNION", f"SELECT 'a' AS x UNION ALL SELECT file('{path}')"),
        Attempt("table function file", f"SELECT * FROM file('{path}', 'LineAsString')"),
        Attempt("table function in a JOIN", f"SELECT * FROM {db}.results AS r JOIN file('{path}', 'LineAsString') "
                "AS f ON 1 = 1"),
        Attempt("url()", "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')"),
        Attempt("remote()", "SELECT * FROM remote('127.0.0.1:9000', system.one)"),
        Attempt("s3()", "SELECT * FROM s3('http://127.0.0.1:1/b/k', 'CSV')"),
        Attempt("executable()", "SELECT * FROM executable('cat /proc/self/environ', 'LineAsString', 'x String')"),
        Attempt("input()", "SELECT * FROM input('x String')"),
        Attempt("dictGet", "SELECT dictGet('d', 'x', toUInt64(1))"),
        Attempt("system tables", "SELECT name FROM system.tables"),
        Attempt("system users", "SELECT * FROM system.users"),
        Attempt("system settings", "SELECT name, value FROM system.settings"),
        Attempt("another database", "SELECT * FROM default.t"),
        Attempt("getSetting", "SELECT getSetting('readonly')"),
        Attempt("hash comment hides SETTINGS", "SELECT 1 AS x # '\nSETTINGS readonly=0 -- '"),
        Attempt("SETTINGS in the query", "SELECT 1 SETTINGS readonly = 0"),
        Attempt("FORMAT in the query", "SELECT 1 FORMAT TSV"),
        Attempt("INTO OUTFILE", f"SELECT 1 INTO OUTFILE '{path}.out'"),
        Attempt("two statements", f"SELECT 1; DROP TABLE {db}.results"),
        Attempt("DROP", f"DROP TABLE {db}.results"),
        Attempt("INSERT", f"INSERT INTO {db}.results (result_id) VALUES ('x')"),
        Attempt("ALTER DELETE", f"ALTER TABLE {db}.results DELETE WHERE 1"),
        Attempt("CREATE", f"CREATE TABLE {db}.x (a Int8) ENGINE = Memory"),
        Attempt("OPTIMIZE", f"OPTIMIZE TABLE {db}.results FINAL"),
        Attempt("SYSTEM", "SYSTEM SHUTDOWN"),
        Attempt("KILL", "KILL QUERY WHERE 1"),
        Attempt("SET", "SET readonly = 0"),
        Attempt("placeholder inside quotes (%)", "SELECT '%(a)s' AS v",
                {"a": f"AS w, file(char({codes})) AS x, "}),
        Attempt("placeholder inside quotes ({})", "SELECT '{a:String}' AS v",
                {"a": f"' AS w, file('{path}') AS x, '"}),
        # legitimate: the value comes back as the string it is (must not run, must not be refused)
        Attempt("parameter carrying SQL", "SELECT %(a)s AS v", {"a": f"x'), file('{path}'), ('"}, must_refuse=False),
        Attempt("huge scan", "SELECT count() FROM numbers(1000000000000)", must_refuse=False),
        Attempt("memory bomb", "SELECT groupArray(number) FROM numbers(2000000000)", must_refuse=False),
        Attempt("result bomb", "SELECT repeat('x', 1000000) FROM numbers(100000)", must_refuse=False),
        # allowed but heavy: hashes until the time limit ends them (or they finish), two cores busy
        Attempt("CPU burner", f"SELECT sum(sipHash64(x, y)) FROM {db}.results "
                "ARRAY JOIN range(20000) AS x ARRAY JOIN range(1000) AS y", must_refuse=False),
        Attempt("memory burner", f"SELECT uniqExact(cityHash64(x, result_id)) FROM {db}.results "
                "ARRAY JOIN range(2000000) AS x", must_refuse=False),
        Attempt("cross join bomb", f"SELECT count() FROM {db}.results AS a, {db}.results AS b, "
                f"{db}.results AS c", must_refuse=False),
    ]
    return a


def _post(url: str, token: str, body: bytes, timeout_s: float = 120) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST", headers={  # noqa: S310 - loopback drill server
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def _stored(worker: WorkerProcess) -> float:
    return sample(metrics_text(worker.port, timeout_s=30), "foodrisk_sink_rows_total", table="results")


def _ingest_latencies(worker: WorkerProcess, token: str, device: str, prefix: str, n: int) -> list[float]:
    """Seconds from each POST of one result until the worker counts it stored, one at a time."""
    out: list[float] = []
    for i in range(n):
        before = _stored(worker)
        body = orjson.dumps(result(f"{prefix}-{i:04d}", device_id=device))
        started = time.monotonic()
        status, answer = _post(f"http://127.0.0.1:{worker.port}/v1/results", token, body)
        assert status == 202, (status, answer)
        while _stored(worker) < before + 1:
            if time.monotonic() - started > 120:
                raise AssertionError(f"result {prefix}-{i} not stored after 120 s:\n{worker.log_tail()}")
            time.sleep(0.01)
        out.append(time.monotonic() - started)
    return out


def drill_hostile_analyst_queries(stack: Stack, workdir: Path, *, rounds: int, clients: int = 3,
                                  samples: int = 20) -> DrillRow:
    run = Run(stack, "analyst", workdir / "analyst")
    run.prepare()
    run.workdir.mkdir(parents=True, exist_ok=True)
    canary_path = run.workdir / CANARY_FILE_NAME
    canary_path.write_text(CANARY)
    tokens_file = run.workdir / "devices.json"
    device = "drill-dev-01"
    token = add_device(tokens_file, device)
    w = run.worker("w", clickhouse_url=f"chdb://{run.workdir / 'chdb'}",
                   FOODRISK_INGEST_TOKENS_FILE=str(tokens_file), FOODRISK_DRILL_CANARY=CANARY).start()
    attempts = hostile_queries(canary_path, run.db)
    outcomes: list[tuple[Attempt, int, bytes]] = []
    lock = threading.Lock()
    try:
        idle = _ingest_latencies(w, token, device, "idle", samples)  # also the rows the joins scan
        analyst = w.analyst_token
        query_url = f"http://127.0.0.1:{w.query_port}/v1/query"
        stop = threading.Event()

        measured = threading.Event()

        def ask(att: Attempt) -> int:
            body = orjson.dumps({"sql": att.sql, "params": att.params or {}, "max_rows": 100})
            status, answer = _post(query_url, analyst, body)
            with lock:
                outcomes.append((att, status, answer))
            if status == 429:
                time.sleep(0.2)
            return status

        def attack(k: int) -> None:
            # client 0 keeps the heavy (allowed) queries running all through the measurement; the
            # others share the hostile corpus, each round in a different split
            r = 0
            while r < rounds or not measured.is_set():
                r += 1
                for j, att in enumerate(attempts):
                    if stop.is_set():
                        return
                    if (k == 0) == att.must_refuse or (k > 0 and (j + k + r) % (clients - 1)):
                        continue
                    ask(att)

        threads = [threading.Thread(target=attack, args=(k,), daemon=True) for k in range(max(2, clients))]
        attack_started = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.0)  # the attack is under way
        loaded = _ingest_latencies(w, token, device, "loaded", samples)
        measured.set()
        for t in threads:
            t.join(timeout=900)
        stop.set()
        attack_s = time.monotonic() - attack_started
        count_after = w.scalar("SELECT count() FROM results FINAL")
    finally:
        w.stop()
    escapes = [
        (att.name, status) for att, status, answer in outcomes
        if CANARY.encode() in answer or (att.must_refuse and status == 200)
    ]
    refused = sum(1 for att, status, _ in outcomes if status in (400, 413, 429))
    idle_median, loaded_median = statistics.median(idle), statistics.median(loaded)
    ratio = loaded_median / idle_median if idle_median > 0 else float("inf")
    stored = int(count_after)
    note = (f"{len(outcomes)} hostile queries ({len(attempts)} kinds, {clients} clients, {attack_s:.0f} s), "
            f"{len(escapes)} escapes, {refused} refused; "
            f"ingest post->stored median {idle_median * 1000:.0f} ms idle, {loaded_median * 1000:.0f} ms under "
            f"attack ({ratio:.2f}x)")
    row = DrillRow("hostile analyst queries", len(outcomes), stored, 0, 0 if stored == 2 * samples else 1, 0,
                   None, note)
    by_kind: dict[str, set[int]] = {}
    for att, status, _ in outcomes:
        by_kind.setdefault(att.name, set()).add(status)
    row.extra.update(by_kind={k: sorted(v) for k, v in by_kind.items()}, escapes=escapes, tried=len(outcomes),
                     ratio=ratio, idle_median_s=idle_median, loaded_median_s=loaded_median,
                     statuses=sorted({s for _, s, _ in outcomes}))
    return row
