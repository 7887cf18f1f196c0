"""The scale-out drills on real distributed engines: a three-broker Kafka cluster and a
replicated, sharded ClickHouse, each losing a node mid-stream.

- :func:`drill_kafka_ha`: three KRaft nodes (combined roles, one voter set), topics created by
  foodrisk with replication 3 and ``min.insync.replicas`` 2, two workers. The node leading the
  most results partitions is killed with -9 while results flow and started again; then two nodes
  are killed at once, a batch is sent while only one runs (it must wait: acks=all with one replica
  in sync is refused by min.insync.replicas 2, and the lone controller has no quorum), and one
  node is started again.
- :func:`drill_clickhouse_cluster`: two shards x two replicas of clickhouse-server 18.16 with a
  ZooKeeper; ``foodrisk migrate`` with FOODRISK_CLICKHOUSE_CLUSTER lays the schema out ON CLUSTER;
  two workers write through the Distributed tables; one replica is killed with -9 mid-stream and
  started again. Afterwards every replica holds its shard's results once under FINAL, the hourly
  view equals a count over ``results`` FINAL, and every Grafana panel returns the same answer
  through two different nodes.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError
from kafka.metrics.stats import Total

from pipeline.localstack.clickhouse_cluster import ClickHouseCluster
from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.localstack.kafka import KafkaBroker, KafkaCluster
from sinks.clickhouse import DriverBackend
from sinks.clickhouse.schema import HOURLY_COUNTS, HOURLY_DIMENSIONS, RESULT_KEY_SQL
from tests.drills.core import DrillRow, Expected, Run, _inputs, expected_outcome, owned
from tests.integration.workers import WorkerProcess

log = logging.getLogger(__name__)


@dataclass
class KafkaHAStack:
    broker: KafkaCluster
    clickhouse: ClickHouseServer


@dataclass
class ClusterStack:
    broker: KafkaBroker
    cluster: ClickHouseCluster

    @property
    def clickhouse(self) -> ClickHouseServer:
        """The entry node the workers write to: shard 1, replica 1."""
        return self.cluster.nodes[0]


# ------------------------------------------------------------------------------------------------
# A producer that keeps count


@dataclass
class Phase:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    ack_times: list[float] = field(default_factory=list)

    def max_gap_s(self, start: float) -> float:
        """The longest time without an acknowledgement, from ``start`` to the last one."""
        times = sorted([start, *self.ack_times])
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)


class CountingProducer:
    """kafka-python's producer as the drills' devices use it (acks=all, idempotent, retries until
    the 120 s delivery timeout), counting per phase what was acknowledged and what was refused,
    and the records it sent again (``retried``: its own record-retries sensor, totalled)."""

    def __init__(self, bootstrap: str) -> None:
        self._p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
        # kafka-python keeps only a rate of retried records; a Total on the same sensor counts them.
        metrics = self._p._metrics
        self._retries = metrics.metric_name("record-retry-total-drill", "producer-metrics")
        metrics.sensor("record-retries").add(self._retries, Total())
        self._metrics = metrics
        self._closed_retried: int | None = None
        self._lock = threading.Lock()
        self.phases: dict[str, Phase] = {}

    @property
    def retried(self) -> int:
        if self._closed_retried is not None:
            return self._closed_retried
        return int(self._metrics.metrics[self._retries].value())

    def _done(self, phase: Phase, md: Any) -> None:
        with self._lock:
            phase.acked += 1
            phase.ack_times.append(time.monotonic())

    def _failed(self, phase: Phase, exc: BaseException) -> None:
        with self._lock:
            phase.failed += 1
            phase.errors.append(repr(exc))

    def send(self, tag: str, topic: str, values: list[bytes], *, rate: float | None = None) -> Phase:
        phase = self.phases.setdefault(tag, Phase())
        started = time.monotonic()
        for i, v in enumerate(values):
            fut = self._p.send(topic, key=f"dev-{i % 13}".encode(), value=v)
            fut.add_callback(lambda md, ph=phase: self._done(ph, md))
            fut.add_errback(lambda exc, ph=phase: self._failed(ph, exc))
            phase.sent += 1
            if rate and i % 50 == 49:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        return phase

    def send_in_thread(self, tag: str, topic: str, values: list[bytes], *,
                       rate: float | None = None) -> threading.Thread:
        self.phases.setdefault(tag, Phase())
        t = threading.Thread(target=self.send, args=(tag, topic, values), kwargs={"rate": rate}, daemon=True)
        t.start()
        return t

    def wait_acked(self, tag: str, timeout_s: float) -> float:
        """Seconds until every record of ``tag`` was acknowledged or refused."""
        started = time.monotonic()
        phase = self.phases[tag]
        while phase.acked + phase.failed < phase.sent or phase.sent == 0:
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"phase {tag}: {phase.acked} acked, {phase.failed} refused of {phase.sent} "
                                   f"after {timeout_s:.0f}s")
            time.sleep(0.05)
        return time.monotonic() - started

    def close(self) -> None:
        self._p.flush(timeout=180)
        self._closed_retried = self.retried  # close() drops the producer's metrics
        self._p.close(timeout=30)


# ------------------------------------------------------------------------------------------------
# Kafka: three brokers, one lost, then two


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    """``{partition: leader node id}`` (-1: no leader) as the cluster reports it now; empty while
    the brokers asked do not answer (a node just killed is still in the client's metadata)."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    except KafkaError:
        return {}
    try:
        described = admin.describe_topics([topic])
    except KafkaError:
        return {}
    finally:
        admin.close()
    return {int(p["partition_index"]): int(p["leader_id"]) for t in described for p in t["partitions"]}


def under_replicated(bootstrap: str) -> int | None:
    """Partitions of every topic whose in-sync replicas are fewer than their replicas (None: no
    answer); Kafka's UnderReplicatedPartitions, summed over the cluster."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5_000)
    except KafkaError:
        return None
    try:
        described = admin.describe_topics()
    except KafkaError:
        return None
    finally:
        admin.close()
    return sum(len(p["isr_nodes"]) < len(p["replica_nodes"]) for t in described for p in t["partitions"])


def wait_fully_replicated(bootstrap: str, timeout_s: float) -> float:
    """Until no partition is under-replicated (a broker that came back has caught up); seconds."""
    started = time.monotonic()
    while under_replicated(bootstrap) != 0:
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"partitions still under-replicated after {timeout_s:.0f}s")
        time.sleep(0.2)
    return time.monotonic() - started


def topic_layout(bootstrap: str, topic: str, timeout_s: float = 30) -> tuple[int, str]:
    """(replicas of each partition, the topic's min.insync.replicas), once the metadata of a
    topic just created has reached the broker asked."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    try:
        deadline = time.monotonic() + timeout_s
        parts: list[Any] = []
        while not parts and time.monotonic() < deadline:
            parts = [p for t in admin.describe_topics([topic]) for p in t["partitions"]]
            if not parts:
                time.sleep(0.2)
        replicas = min((len(p["replica_nodes"]) for p in parts), default=0)
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        admin.close()
    found = re.search(r"min\.insync\.replicas\W+(?:value\W+)?(\d+)", repr(configs))
    return replicas, found.group(1) if found else repr(configs)[:300]


def _wait_two_own(run: Run, a: WorkerProcess, b: WorkerProcess, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not (owned(a, run.topics["results"]) and owned(b, run.topics["results"])):
        if time.monotonic() > deadline:
            raise AssertionError(f"the two workers did not share the partitions in {timeout_s:.0f}s:\n{b.log_tail()}")
        time.sleep(0.2)


def drill_kafka_ha(workdir: Path, *, n: int, rate: float, down_s: float, outage_s: float, n_outage: int) -> DrillRow:
    """See the module docstring. ``n`` results are sent at ``rate``/s while the leader is killed
    (after a quarter of them) and restarted ``down_s`` later; ``n_outage`` more are sent while two
    nodes are down for ``outage_s``."""
    stack = KafkaHAStack(KafkaCluster(workdir / "kafka", size=3), ClickHouseServer(workdir / "clickhouse"))
    started = time.monotonic()
    stack.broker.start()
    stack.clickhouse.start()
    cluster_ready = time.monotonic() - started
    run = Run(stack, "kafkaha", workdir / "kafkaha", replication=3)
    workers: list[WorkerProcess] = []
    try:
        run.prepare()
        topic = run.topics["results"]
        replicas, min_isr = topic_layout(stack.broker.bootstrap, topic)
        values = _inputs("kafkaha", n)
        extra_values = _inputs("kafkahaout", n_outage)
        exp = expected_outcome(values + extra_values, datetime.now(UTC))
        workers = [run.worker("a").start(), run.worker("b").start()]
        pids = [w.proc.pid for w in workers]
        _wait_two_own(run, workers[0], workers[1])
        producer = CountingProducer(stack.broker.bootstrap)

        # 1. the leader of the most results partitions, killed mid-stream, back after down_s
        t = producer.send_in_thread("one", topic, values, rate=rate)
        deadline = time.monotonic() + 120
        while producer.phases["one"].acked < n // 4:
            if time.monotonic() > deadline:
                raise AssertionError(f"a quarter of the results not acknowledged in 120 s: {producer.phases}")
            time.sleep(0.05)
        by_leader = Counter(leaders(stack.broker.bootstrap, topic).values())
        if not by_leader:
            raise AssertionError("no partition leaders reported before the kill")
        victim_id = by_leader.most_common(1)[0][0]
        led = by_leader[victim_id]
        victim = stack.broker.broker(victim_id)
        victim.kill()
        killed = time.monotonic()
        moved: float | None = None
        survivors = ",".join(b.bootstrap for b in stack.broker.brokers if b.node_id != victim_id)
        while moved is None and time.monotonic() - killed < 60:
            now_leaders = leaders(survivors, topic).values()
            if now_leaders and all(x not in (victim_id, -1) for x in now_leaders):
                moved = time.monotonic() - killed
            else:
                time.sleep(0.1)
        time.sleep(max(0.0, down_s - (time.monotonic() - killed)))
        victim.start()
        rejoined = victim.ready_s
        t.join(timeout=600)
        producer.wait_acked("one", 180)
        retried_one = producer.retried
        stall_one = producer.phases["one"].max_gap_s(killed)

        # 2. two nodes lost: writes wait until one returns. First the restarted node must be in
        # sync again: had it not caught up, losing the two others could leave a partition whose
        # only in-sync replica is down, and it would wait for that very node (no unclean election).
        caught_up = wait_fully_replicated(stack.broker.bootstrap, 120)
        first, second = (b for b in stack.broker.brokers if b.node_id != victim_id)
        first.kill()
        second.kill()
        both_down = time.monotonic()
        time.sleep(1.0)
        t = producer.send_in_thread("outage", topic, extra_values)
        time.sleep(outage_s)
        out = producer.phases["outage"]
        acked_while_down, refused_while_down = out.acked, out.failed
        first.start()  # the one killed first: its log is as fresh as the other's, quorum 2 of 3 again
        back = time.monotonic()
        t.join(timeout=120)
        waited_out = producer.wait_acked("outage", 180)
        second.start()
        stack.broker.wait_registered()
        producer.close()
        retried_total = producer.retried
        drained = run.wait_drained(300, exp, *workers)
        run.wait_alerts_archived(exp)
        same_workers = [w.proc.running and w.proc.pid == pid for w, pid in zip(workers, pids, strict=True)]
        logs = [w.log_tail(6000) for w in workers]
        row = run.row("Kafka 3 brokers: leader killed, then 2 lost", values + extra_values, exp, moved,
                      "recovery = kill -9 of the leader to every results partition led by a live broker")
    finally:
        for w in workers:
            w.stop()
        stack.broker.stop()
        stack.clickhouse.stop()
    refused = sum(p.failed for p in producer.phases.values())
    row.extra.update(
        cluster_ready_s=cluster_ready, replicas=replicas, min_insync=min_isr, victim=victim_id, victim_led=led,
        leaders_moved_s=moved, victim_ready_s=rejoined, victim_in_sync_s=caught_up, stall_one_s=stall_one,
        retried_one=retried_one,
        retried=retried_total, refused=refused,
        errors=sorted({e for p in producer.phases.values() for e in p.errors})[:5],
        acked_while_down=acked_while_down, refused_while_down=refused_while_down, outage_sent=out.sent,
        outage_acked=out.acked,
        outage_waited_s=waited_out, outage_total_s=back - both_down + waited_out, drained_s=drained,
        same_workers=same_workers, worker_logs=logs,
    )
    row.note = (f"leader of {led} of 4 partitions killed; leaders moved in {moved or -1:.1f}s, longest producer stall "
                f"{stall_one:.1f}s, {retried_total} records retried, {refused} refused; 2 of 3 down {outage_s:.0f}s: "
                f"{acked_while_down} of {out.sent} acked while down, all acked {waited_out:.1f}s after one was back")
    return row


# ------------------------------------------------------------------------------------------------
# ClickHouse: 2 shards x 2 replicas, one replica lost


def _node(server: ClickHouseServer) -> DriverBackend:
    return DriverBackend(server.host, server.tcp_port, database="default", create_database=False,
                         connect_timeout=5, send_receive_timeout=30, sync_request_timeout=10)


def foodrisk_migrate(node: ClickHouseServer, database: str, cluster: str) -> float:
    """``foodrisk migrate`` with FOODRISK_CLICKHOUSE_CLUSTER against ``node``; returns its seconds."""
    env = dict(os.environ, FOODRISK_CLICKHOUSE_URL=f"clickhouse://default:@{node.host}:{node.tcp_port}",
               FOODRISK_CLICKHOUSE_CLUSTER=cluster, FOODRISK_CLICKHOUSE_DATABASE=database)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "migrate"], env=env, capture_output=True, text=True,
                          timeout=300, check=False, cwd=Path(__file__).resolve().parents[2])
    if done.returncode != 0:
        raise AssertionError(f"foodrisk migrate on the cluster failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def cluster_layout(cluster: ClickHouseCluster, db: str) -> dict[str, dict[str, str]]:
    """``{replica: {table: engine}}`` of ``db`` on every node, as ``foodrisk migrate`` left it."""
    out = {}
    for node, member in zip(cluster.nodes, cluster.members, strict=True):
        ch = _node(node)
        try:
            rows = ch.query("SELECT name, engine FROM system.tables WHERE database = %(db)s", {"db": db}).rows
        finally:
            ch.close()
        out[member.replica_macro] = {str(name): str(engine) for name, engine in rows}
    return out


def replica_ids(server: ClickHouseServer, db: str) -> tuple[list[str], int]:
    """(result ids of this replica's ``results_local`` FINAL, its rows without FINAL)."""
    ch = _node(server)
    try:
        ids = [str(r[0]) for r in ch.query(f"SELECT result_id FROM {db}.results_local FINAL").rows]
        raw = int(ch.query(f"SELECT count() FROM {db}.results_local").scalar())
        return ids, raw
    finally:
        ch.close()


def replica_state(server: ClickHouseServer, db: str) -> tuple[int, int, int]:
    """(tables read-only, replication queue entries, active replicas seen) of ``db`` on this node."""
    ch = _node(server)
    try:
        row = ch.query(
            "SELECT sum(is_readonly), sum(queue_size), min(active_replicas) FROM system.replicas "
            "WHERE database = %(db)s", {"db": db},
        ).rows[0]
        return int(row[0]), int(row[1]), int(row[2])
    finally:
        ch.close()


def wait_converged(
    cluster: ClickHouseCluster, db: str, exp: Expected, timeout_s: float
) -> tuple[float, dict[str, Any]]:
    """Until every replica holds its shard's rows (the two replicas of a shard the same ids, the
    shards together every expected result, none twice under FINAL) and no replica is read-only or
    has a replication queue; returns the seconds waited and the per-replica figures."""
    started = time.monotonic()
    last: dict[str, Any] = {}
    while True:
        try:
            per: dict[str, Any] = {}
            by_shard: dict[int, list[set[str]]] = {}
            dup_final = 0
            for node, member in zip(cluster.nodes, cluster.members, strict=True):
                ids, raw = replica_ids(node, db)
                readonly, queue, active = replica_state(node, db)
                dup_final += len(ids) - len(set(ids))
                by_shard.setdefault(member.shard, []).append(set(ids))
                per[member.replica_macro] = {"final": len(ids), "raw": raw, "readonly": readonly, "queue": queue,
                                             "active": active}
            same = all(all(s == sets[0] for s in sets) for sets in by_shard.values())
            shards = [sets[0] for sets in by_shard.values()]
            union = set().union(*shards)
            overlap = sum(len(s) for s in shards) - len(union)
            quiet = all(v["readonly"] == 0 and v["queue"] == 0 for v in per.values())
            last = {"replicas": per, "same_within_shard": same, "missing": len(exp.valid_ids - union),
                    "overlap": overlap, "dup_final": dup_final, "shard_rows": [len(s) for s in shards]}
            if same and quiet and union == exp.valid_ids and overlap == 0 and dup_final == 0:
                return time.monotonic() - started, last
        except Exception as exc:  # noqa: BLE001 - a node restarting refuses for a moment
            last = {"error": repr(exc), **last}
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the replicas did not converge in {timeout_s:.0f}s: {last}")
        time.sleep(0.5)


def hourly_mismatches(server: ClickHouseServer, db: str) -> tuple[int, int]:
    """(rows of results_hourly_v that differ from the same counts over ``results`` FINAL, rows
    compared), read through ``server``."""
    dims = [name for name, _ in HOURLY_DIMENSIONS]
    counts = [
        f"uniqExact({RESULT_KEY_SQL})" if verdict is None else f"uniqExactIf({RESULT_KEY_SQL}, verdict = '{verdict}')"
        for _, verdict in HOURLY_COUNTS
    ]
    names = [name for name, _ in HOURLY_COUNTS]
    direct = (f"SELECT toStartOfHour(sampled_at) AS hour, {', '.join(dims[1:])}, "
              + ", ".join(f"{c} AS {n}" for c, n in zip(counts, names, strict=True))
              + f" FROM {db}.results FINAL GROUP BY {', '.join(dims)}")
    view = f"SELECT {', '.join(dims)}, {', '.join(names)} FROM {db}.results_hourly_v"
    ch = _node(server)
    try:
        a = {tuple(r) for r in ch.query(direct).rows}
        b = {tuple(r) for r in ch.query(view).rows}
    finally:
        ch.close()
    return len(a ^ b), len(a)


def _unordered(cell: object) -> object:
    """A panel's cell with the parts of a joined list sorted: groupUniqArray (the methods of a
    device) has no defined order, and merging two shards' states may change it."""
    return ", ".join(sorted(cell.split(", "))) if isinstance(cell, str) and ", " in cell else cell


def board_answers(server: ClickHouseServer, db: str, until: datetime) -> dict[str, Any]:
    """Every ClickHouse panel of the Grafana boards (their SQL as shipped, expanded as Grafana
    would, every variable on All) run through ``server``: ``{panel: sorted rows}``; a panel whose
    columns differ from the expected ones raises."""
    from tests.grafana import ALL, CLICKHOUSE_TYPE, TimeRange, constants, expand, load_dashboards, targets_of, variables
    from tests.integration.factories import SAMPLED
    from tests.unit.test_dashboards import EXPECTED_COLUMNS

    window = TimeRange(SAMPLED - timedelta(hours=2), until, interval_s=900)
    out: dict[str, Any] = {}
    ch = _node(server)
    try:
        for uid, board in load_dashboards().items():
            consts = {**constants(board), "database": db}
            multi = [n for n, v in variables(board).items() if v.get("type") == "query" and v.get("multi")]
            for panel, target in targets_of(board, CLICKHOUSE_TYPE):
                sql = expand(target["rawSql"], selection={n: [ALL] for n in multi}, constants=consts,
                             time_range=window)
                try:
                    res = ch.query(sql)
                except Exception as exc:
                    raise AssertionError(f"{uid} / {panel['title']} failed on {server!r}: {exc}\n{sql}") from exc
                if tuple(res.columns) != EXPECTED_COLUMNS[(uid, panel["title"])]:
                    raise AssertionError(f"{uid} / {panel['title']}: columns {res.columns}")
                out[f"{uid} / {panel['title']} / {target.get('refId', '')}"] = sorted(
                    repr(tuple(_unordered(cell) for cell in row)) for row in res.rows
                )
    finally:
        ch.close()
    return out


def drill_clickhouse_cluster(workdir: Path, *, n: int, rate: float, down_s: float, shards: int = 2,
                             replicas: int = 2) -> DrillRow:
    """See the module docstring; the replica killed is shard ``shards``, replica 1 (never the
    entry node the workers write to)."""
    cluster = ClickHouseCluster(workdir / "clickhouse", shards=shards, replicas=replicas)
    stack = ClusterStack(KafkaBroker(workdir / "kafka"), cluster)
    started = time.monotonic()
    stack.broker.start()
    cluster.start()
    ready = time.monotonic() - started
    run = Run(stack, "chcluster", workdir / "chcluster")
    workers: list[WorkerProcess] = []
    try:
        run.prepare()
        migrate_s = foodrisk_migrate(stack.clickhouse, run.db, cluster.name)
        layout = cluster_layout(cluster, run.db)
        values = _inputs("chcluster", n)
        exp = expected_outcome(values, datetime.now(UTC))
        env = {"FOODRISK_CLICKHOUSE_CLUSTER": cluster.name}
        workers = [run.worker("a", **env).start(), run.worker("b", **env).start()]
        _wait_two_own(run, workers[0], workers[1])
        victim = cluster.node(shards, 1)
        producer = CountingProducer(stack.broker.bootstrap)
        t = producer.send_in_thread("all", run.topics["results"], values, rate=rate)
        deadline = time.monotonic() + 120
        while sum(w.consumed() for w in workers) < n / 4:  # kill while the workers write
            if time.monotonic() > deadline:
                raise AssertionError(f"the workers consumed under a quarter in 120 s:\n{workers[0].log_tail()}")
            time.sleep(0.1)
        victim.kill()
        killed = time.monotonic()
        time.sleep(down_s)
        victim.start()
        back = time.monotonic()
        t.join(timeout=600)
        producer.wait_acked("all", 120)
        producer.close()
        drained = run.wait_drained(300, exp, *workers)
        run.wait_alerts_archived(exp)
        converged, figures = wait_converged(cluster, run.db, exp, 180)
        caught_up = time.monotonic() - back
        mismatched, compared = hourly_mismatches(stack.clickhouse, run.db)
        other_entry = cluster.node(shards, replicas)
        until = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
        boards_here = board_answers(stack.clickhouse, run.db, until)
        boards_there = board_answers(other_entry, run.db, until)
        boards_differ = sorted(k for k in boards_here if boards_here[k] != boards_there.get(k))
        boards_empty = sorted(k for k, v in boards_here.items() if not v)
        row = run.row(f"ClickHouse {shards}x{replicas}: replica killed {down_s:.0f}s", values, exp, caught_up,
                      "recovery = replica restarted to every replica converged (read-only over, queue empty)")
        row.extra.update(
            ready_s=ready, migrate_s=migrate_s, killed_at_s=killed - started, drained_s=drained, converged_s=converged,
            hourly_mismatches=mismatched, hourly_rows=compared, boards=len(boards_here), boards_differ=boards_differ,
            boards_empty=boards_empty, victim=cluster.member(victim).replica_macro, layout=layout, **figures,
        )
        row.duplicated += figures["dup_final"] + figures["overlap"]
        row.note += (f"; {len(exp.valid_ids)} results checked on each of {len(cluster.nodes)} replicas, hourly view "
                     f"{compared} rows exact: {mismatched == 0}, {len(boards_here)} panels alike on 2 nodes: "
                     f"{not boards_differ}")
    finally:
        for w in workers:
            w.stop()
        stack.broker.stop()
        cluster.stop()
    return row
