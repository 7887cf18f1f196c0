"""The drills: real embedded broker, real ClickHouse server, real worker processes.

Each drill returns a `DrillRow`: inputs, stored, dead-lettered, lost (must be 0), duplicated (must
be 0) and recovery time. `lost` counts valid results (distinct ids) missing from `results` FINAL
and invalid messages missing from `deadletters`; `duplicated` counts rows of `results` FINAL beyond
one per result id plus alert ids stored more than once per status.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kafka import KafkaProducer

from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.localstack.kafka import KafkaBroker
from pipeline.settings import Settings
from pipeline.topics import ensure_topics, group_lag
from schemas.alert import SINGLE_RESULT_KINDS, alert_for_verdict
from schemas.reference import default_reference
from schemas.result import InvalidResult, parse_result
from schemas.rules import screen
from sinks.clickhouse import ClickHouse, DriverBackend
from tests.drills.hostile import INJECTIONS, hostile_corpus
from tests.integration.factories import mixed_batch
from tests.integration.workers import WorkerProcess, metrics_text

PARTITIONS = 4


@dataclass
class DrillRow:
    drill: str
    inputs: int
    stored: int
    deadlettered: int
    lost: int
    duplicated: int
    recovery_s: float | None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass
class Expected:
    valid_ids: set[str]
    invalid: int
    alert_ids: set[str]


def expected_outcome(values: list[bytes], now: datetime) -> Expected:
    ref = default_reference()
    ids: set[str] = set()
    alerts: set[str] = set()
    invalid = 0
    for v in values:
        try:
            r = parse_result(v, reference=ref, now=now)
        except InvalidResult:
            invalid += 1
            continue
        ids.add(r.result_id)
        a = alert_for_verdict(r, screen(r, ref))
        if a is not None:
            alerts.add(a.alert_id)
    return Expected(ids, invalid, alerts)


class Stack:
    """A broker and a ClickHouse server for one drill run (each drill gets fresh topics and a database)."""

    def __init__(self, workdir: Path, *, users: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.broker = KafkaBroker(workdir / "kafka")
        self.clickhouse = ClickHouseServer(workdir / "clickhouse", users=users)

    def start(self) -> Stack:
        self.broker.start()
        self.clickhouse.start()
        return self

    def stop(self) -> None:
        self.broker.stop()
        self.clickhouse.stop()


class BrokerEndpoint(Protocol):
    """What a drill needs of its Kafka: one broker or a cluster (``bootstrap`` comma-separated)."""

    @property
    def url(self) -> str: ...

    @property
    def bootstrap(self) -> str: ...


class Servers(Protocol):
    """A Kafka and the ClickHouse server the workers write to (a cluster's entry node)."""

    @property
    def broker(self) -> BrokerEndpoint: ...

    @property
    def clickhouse(self) -> ClickHouseServer: ...


@dataclass
class Run:
    stack: Servers
    name: str
    workdir: Path
    replication: int = 1  # FOODRISK_TOPIC_REPLICATION of the topics and of the workers

    @property
    def db(self) -> str:
        return f"drill_{self.name}"

    @property
    def topics(self) -> dict[str, str]:
        return {k: f"drill.{self.name}.{k}" for k in ("results", "alerts", "deadletter")}

    @property
    def settings(self) -> Settings:
        return Settings(broker_url=self.stack.broker.url, topic_partitions=PARTITIONS,
                        topic_replication=self.replication)

    @property
    def bootstrap(self) -> list[str]:
        return self.stack.broker.bootstrap.split(",")

    def prepare(self) -> None:
        ensure_topics(self.settings, self.bootstrap, list(self.topics.values()), partitions=PARTITIONS)

    def worker(self, tag: str = "w", clickhouse_url: str | None = None, **env: str) -> WorkerProcess:
        url = clickhouse_url or f"clickhouse://default:@127.0.0.1:{self.stack.clickhouse.tcp_port}"
        return WorkerProcess(
            self.workdir / tag, broker_url=self.stack.broker.url, clickhouse_url=url, app_id=f"drill-{self.name}",
            topics=self.topics, FOODRISK_CLICKHOUSE_DATABASE=self.db, FOODRISK_TOPIC_PARTITIONS=str(PARTITIONS),
            FOODRISK_TOPIC_REPLICATION=str(self.replication), **env,
        )

    def ch(self) -> ClickHouse:
        return DriverBackend(host="127.0.0.1", port=self.stack.clickhouse.tcp_port, database=self.db)

    def lag(self) -> int | None:
        return group_lag(self.settings, self.bootstrap, f"drill-{self.name}", self.topics["results"])

    def stored(self) -> tuple[int, int]:
        """(distinct result ids in `results`, rows of `deadletters` FINAL)."""
        ch = self.ch()
        try:
            return (int(ch.query(f"SELECT uniqExact(result_id) FROM {self.db}.results").scalar()),
                    int(ch.query(f"SELECT count() FROM {self.db}.deadletters FINAL").scalar()))
        except Exception:  # noqa: BLE001 - ClickHouse may be the thing that is down
            return (-1, -1)
        finally:
            ch.close()

    def wait_drained(self, timeout_s: float, exp: Expected, *workers: WorkerProcess) -> float:
        """Until the group committed everything, or everything expected is stored (whichever the
        broker lets us see first); TimeoutError with both figures (and the tails of the given
        workers' logs) otherwise."""
        started = time.monotonic()
        while True:
            lag = self.lag()
            if lag == 0:
                break
            stored = self.stored()
            if stored == (len(exp.valid_ids), exp.invalid):
                break
            if time.monotonic() - started > timeout_s:
                logs = "".join(f"\n--- {w.workdir.name} (running: {w.proc.running}):\n{w.log_tail(3000)}"
                               for w in workers)
                raise TimeoutError(
                    f"drill {self.name}: after {timeout_s:.0f}s lag is {lag}, stored {stored[0]} of "
                    f"{len(exp.valid_ids)} results and {stored[1]} of {exp.invalid} dead letters{logs}"
                )
            time.sleep(0.3)
        return time.monotonic() - started

    def wait_alerts_archived(self, exp: Expected, timeout_s: float = 180) -> None:
        """Until the archivers committed the alerts and dead-letter topics, or every expected alert
        and dead letter is stored (the archivers trail the screening agent, and retry like it)."""
        started = time.monotonic()
        group = f"drill-{self.name}"
        pending = {"alerts", "deadletter"}
        while pending and time.monotonic() - started < timeout_s:
            for name in sorted(pending):
                if group_lag(self.settings, self.bootstrap, group, self.topics[name]) == 0:
                    pending.discard(name)
            ch = self.ch()
            try:
                stored = {r[0] for r in ch.query(f"SELECT DISTINCT alert_id FROM {self.db}.alerts").rows}
                dead = int(ch.query(f"SELECT count() FROM {self.db}.deadletters FINAL").scalar())
            except Exception:  # noqa: BLE001 - ClickHouse may be restarting; try again
                stored, dead = set(), -1
            finally:
                ch.close()
            if exp.alert_ids <= stored:
                pending.discard("alerts")
            if dead >= exp.invalid:
                pending.discard("deadletter")
            if pending:
                time.sleep(0.5)

    def row(self, drill: str, values: list[bytes], exp: Expected, recovery: float | None, note: str = "") -> DrillRow:
        ch = self.ch()
        try:
            stored_ids = {r[0] for r in ch.query(f"SELECT result_id FROM {self.db}.results FINAL").rows}
            final_rows = ch.query(f"SELECT count() FROM {self.db}.results FINAL").scalar()
            dead = ch.query(f"SELECT count() FROM {self.db}.deadletters FINAL").scalar()
            alert_rows = ch.query(f"SELECT alert_id, status, kind FROM {self.db}.alerts FINAL").rows
        finally:
            ch.close()
        # Single-result alerts are predicted exactly; pattern alerts (early warning) are checked for duplicates only.
        alert_ids = {a for a, _, kind in alert_rows if kind in SINGLE_RESULT_KINDS}
        lost = len(exp.valid_ids - stored_ids) + max(0, exp.invalid - int(dead)) + len(exp.alert_ids - alert_ids)
        keys = [(a, status) for a, status, _ in alert_rows]
        duplicated = (int(final_rows) - len(stored_ids)) + (len(keys) - len(set(keys)))
        extra: dict[str, Any] = {"alerts_expected": len(exp.alert_ids), "alerts_stored": len(alert_ids),
                                    "unexpected_alerts": len(alert_ids - exp.alert_ids),
                                    "extra_deadletters": max(0, int(dead) - exp.invalid)}
        return DrillRow(drill, len(values), len(stored_ids), int(dead), lost, duplicated, recovery, note, extra)


def allow_large_messages(bootstrap: str, topic: str, max_bytes: int) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"max.message.bytes": str(max_bytes)})])
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, values: list[bytes], *, rate: float | None = None) -> None:
    # The one producer path (acks=all, idempotent, batching); kafka-python retries sends across a
    # broker restart until its delivery timeout (120 s).
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                      max_request_size=16 * 1024 * 1024)
    started = time.monotonic()
    for i, v in enumerate(values):
        p.send(topic, key=f"dev-{i % 13}".encode(), value=v)
        if rate and i % 100 == 99:
            ahead = (i + 1) / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    p.flush()
    p.close()


@contextmanager
def producing(bootstrap: str, topic: str, values: list[bytes], rate: float | None = None) -> Iterator[threading.Thread]:
    t = threading.Thread(target=produce, args=(bootstrap, topic, values), kwargs={"rate": rate}, daemon=True)
    t.start()
    try:
        yield t
    finally:
        t.join(timeout=600)


def owned(worker: WorkerProcess, topic: str) -> set[int]:
    """Partitions of ``topic`` the worker reports as its own (its consumer-lag gauges, one per
    assigned partition); empty while it cannot answer."""
    try:
        text = metrics_text(worker.port, timeout_s=5)
    except OSError:
        return set()
    found = set()
    for labels in re.findall(r"^foodrisk_consumer_lag_messages\{([^}]*)\}", text, re.MULTILINE):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if pairs.get("topic") == topic:
            found.add(int(pairs["partition"]))
    return found


def _inputs(name: str, n: int) -> list[bytes]:
    valid, invalid, _ = mixed_batch(name, n)
    out = list(valid)
    step = max(1, len(out) // max(1, len(invalid)))
    for k, bad in enumerate(invalid):
        out.insert(min(len(out), (k + 1) * step), bad)
    return out


def drill_worker_crash(stack: Stack, workdir: Path, *, n: int, kills: int, seed: int = 5) -> DrillRow:
    run = Run(stack, "crash", workdir / "crash")
    run.prepare()
    values = _inputs("crash", n)
    exp = expected_outcome(values, datetime.now(UTC))
    rng = random.Random(seed)
    w = run.worker("w0").start()
    recoveries: list[float] = []
    try:
        with producing(stack.broker.bootstrap, run.topics["results"], values, rate=4000) as t:
            for k in range(kills):
                time.sleep(rng.uniform(1.0, 4.0))
                w.proc.kill()
                killed = time.monotonic()
                ch = run.ch()
                before = ch.query(f"SELECT count() FROM {run.db}.results").scalar()
                w = run.worker(f"w{k + 1}").start()
                while time.monotonic() - killed < 120:
                    if ch.query(f"SELECT count() FROM {run.db}.results").scalar() > before or run.lag() == 0:
                        break
                    time.sleep(0.2)
                recoveries.append(time.monotonic() - killed)
                ch.close()
            t.join(timeout=600)
        run.wait_drained(300, exp, w)
        run.wait_alerts_archived(exp)  # the alert archiver trails the screening agent
    finally:
        w.stop()
    return run.row(f"worker crash (kill -9 x{kills})", values, exp, max(recoveries) if recoveries else None,
                   "recovery = kill to first new row after restart (max)")


def drill_two_workers_one_dies(stack: Stack, workdir: Path, *, n: int) -> DrillRow:
    run = Run(stack, "twoworkers", workdir / "two")
    run.prepare()
    values = _inputs("two", n)
    exp = expected_outcome(values, datetime.now(UTC))
    a = run.worker("a").start()
    b = run.worker("b").start()
    try:
        # Both members own partitions before any input: otherwise the first to join may have read
        # everything by the time the second gets a share, and b would be killed idle.
        deadline = time.monotonic() + 90
        while not (owned(a, run.topics["results"]) and owned(b, run.topics["results"])):
            if time.monotonic() > deadline:
                raise AssertionError(f"the two workers did not share the partitions in 90 s:\n{b.log_tail()}")
            time.sleep(0.2)
        with producing(stack.broker.bootstrap, run.topics["results"], values, rate=3000) as t:
            deadline = time.monotonic() + 60  # kill b while it works (it owns partitions), not while it joins
            while b.consumed() == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            b.proc.kill()
            killed = time.monotonic()
            t.join(timeout=600)
        run.wait_drained(300, exp, a)
        recovery = time.monotonic() - killed
        run.wait_alerts_archived(exp)
    finally:
        a.stop()
        b.stop()
    return run.row("two workers, one killed", values, exp, recovery, "recovery = kill to all committed")


def drill_clickhouse_outage(stack: Stack, workdir: Path, *, n: int, outage_s: float) -> DrillRow:
    run = Run(stack, "outage", workdir / "outage")
    run.prepare()
    values = _inputs("outage", n)
    exp = expected_outcome(values, datetime.now(UTC))
    w = run.worker("w").start()
    try:
        with producing(stack.broker.bootstrap, run.topics["results"], values, rate=2000) as t:
            time.sleep(1)
            stack.clickhouse.stop()
            time.sleep(outage_s)
            if not w.proc.running:
                raise AssertionError(f"worker died during the outage:\n{w.log_tail()}")
            stack.clickhouse.start()
            back = time.monotonic()
            t.join(timeout=600)
        run.wait_drained(300, exp, w)
        recovery = time.monotonic() - back
        run.wait_alerts_archived(exp)
    finally:
        if not stack.clickhouse.running:
            stack.clickhouse.start()
        w.stop()
    return run.row(f"ClickHouse down {outage_s:.0f}s", values, exp, recovery, "recovery = server back to all committed")


def drill_broker_restart(stack: Stack, workdir: Path, *, n: int, down_s: float) -> DrillRow:
    """kill -9 of the broker while results flow, ``down_s`` seconds away, then started again on the
    same log dir and ports. The worker is not restarted: it must reconnect by itself."""
    run = Run(stack, "brokerrestart", workdir / "brokerrestart")
    run.prepare()
    values = _inputs("brokerrestart", n)
    exp = expected_outcome(values, datetime.now(UTC))
    w = run.worker("w").start()
    worker_pid = w.proc.pid
    try:
        with producing(stack.broker.bootstrap, run.topics["results"], values, rate=1000) as t:
            deadline = time.monotonic() + 120  # kill while the worker is busy, not while it joins
            while w.consumed() < n / 5 and time.monotonic() < deadline:
                time.sleep(0.1)
            stack.broker.kill()
            killed = time.monotonic()
            ch = run.ch()
            before = int(ch.query(f"SELECT count() FROM {run.db}.results").scalar())
            time.sleep(down_s)
            stack.broker.start()
            restarted_in = stack.broker.ready_s
            resumed: float | None = None
            while time.monotonic() - killed < 180:
                if int(ch.query(f"SELECT count() FROM {run.db}.results").scalar()) > before:
                    resumed = time.monotonic() - killed
                    break
                time.sleep(0.2)
            ch.close()
            t.join(timeout=600)
        run.wait_drained(300, exp, w)
        drained = time.monotonic() - killed
        run.wait_alerts_archived(exp)
        same_worker = w.proc.running and w.proc.pid == worker_pid
    finally:
        w.stop()
    row = run.row(f"broker restart (kill -9, {down_s:.0f}s down)", values, exp, resumed,
                  "recovery = kill to first new row, broker restarted on the same log dir; worker not restarted")
    row.extra.update(same_worker=same_worker, broker_ready_s=restarted_in, drained_s=drained)
    return row


def drill_hostile_input(stack: Stack, workdir: Path, *, n: int, huge_every: int) -> DrillRow:
    run = Run(stack, "hostile", workdir / "hostile")
    run.prepare()
    if huge_every:
        # Kafka refuses a message over the topic's max.message.bytes (1 MB by default) at produce
        # time; this topic takes up to 16 MB so that the 10 MB messages reach the worker, whose
        # own limit is the one under test.
        allow_large_messages(stack.broker.bootstrap, run.topics["results"], 16 * 1024 * 1024)
    values = hostile_corpus("hostile", n, huge_every=huge_every)
    exp = expected_outcome(values, datetime.now(UTC))
    w = run.worker("w").start()
    pid = w.proc.pid
    try:
        produce(stack.broker.bootstrap, run.topics["results"], values)
        run.wait_drained(300, exp)
        run.wait_alerts_archived(exp)
        restarted = w.proc.pid != pid or not w.proc.running or "Traceback" in w.log_tail(10_000_000)
        ch = run.ch()
        try:
            verbatim = ch.query(
                f"SELECT count() FROM {run.db}.results FINAL WHERE site_id IN %(s)s", {"s": tuple(INJECTIONS)}
            ).scalar()
            tables = ch.query("SELECT count() FROM system.tables WHERE database = %(d)s", {"d": run.db}).scalar()
        finally:
            ch.close()
    finally:
        w.stop()
    row = run.row("hostile input corpus", values, exp, None,
                  f"worker restarted: {'yes' if restarted else 'no'}; injection strings stored verbatim: {verbatim}")
    row.extra.update(restarted=restarted, verbatim=int(verbatim), tables=int(tables))
    return row


def drill_secrets_not_logged(workdir: Path) -> DrillRow:
    """A run with secrets configured; the logs of the worker are searched for them."""
    secret_ch, secret_sasl = "drill-ch-pass-7f3e9", "drill-sasl-pass-91c2"
    stack = Stack(workdir / "secrets-stack", users={"drill": secret_ch}).start()
    try:
        run = Run(stack, "secrets", workdir / "secrets")
        run.prepare()
        values = _inputs("secrets", 200)
        exp = expected_outcome(values, datetime.now(UTC))
        w = run.worker(
            "w", clickhouse_url=f"clickhouse://drill:{secret_ch}@127.0.0.1:{stack.clickhouse.tcp_port}",
            FOODRISK_BROKER_SASL_PASSWORD=secret_sasl, FOODRISK_LOG_LEVEL="debug",
        ).start()
        try:
            produce(stack.broker.bootstrap, run.topics["results"], values)
            run.wait_drained(120, exp)
            run.wait_alerts_archived(exp)
        finally:
            w.stop()
        text = w.log_tail(50_000_000)
        leaks = text.count(secret_ch) + text.count(secret_sasl)
        row = run.row("secrets never logged", values, exp, None, f"secret occurrences in the worker log: {leaks}")
        row.extra["leaks"] = leaks
        row.extra["log_bytes"] = len(text)
        return row
    finally:
        stack.stop()


def table(rows: list[DrillRow]) -> str:
    head = ["drill", "inputs", "stored", "dead-lettered", "lost", "duplicated", "recovery", "note"]
    cells = [head] + [
        [r.drill, str(r.inputs), str(r.stored), str(r.deadlettered), str(r.lost), str(r.duplicated),
         f"{r.recovery_s:.1f}s" if r.recovery_s is not None else "-", r.note]
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(head) - 1)]
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(v.ljust(w) for v, w in zip(c[:-1], widths, strict=True)) + "  " + c[-1])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  ----")
    return "\n".join(lines)
