"""A replicated, sharded ClickHouse on one machine: ``shards`` x ``replicas`` of Debian's
clickhouse-server (18.16) and one ZooKeeper, on loopback ports, for the cluster tests and drills.

Each node is a :class:`~pipeline.localstack.clickhouse_server.ClickHouseServer` whose config adds
what a cluster member needs: ``remote_servers`` naming one cluster (``internal_replication``:
a Distributed insert writes one replica per shard and replication copies it to the others), the
``{shard}`` and ``{replica}`` macros of that node, ``<zookeeper>``, ``<distributed_ddl>`` (the
queue of ON CLUSTER statements) and an interserver HTTP port (replicas fetch parts from each
other there). ``nodes[i]`` is shard ``i // replicas + 1``, replica ``i % replicas + 1``;
``kill()`` and ``start()`` one for drills.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from pipeline.localstack.clickhouse_server import ClickHouseServer
from pipeline.localstack.process import free_port
from pipeline.localstack.zookeeper import ZooKeeperServer

log = logging.getLogger(__name__)

DDL_QUEUE = "/clickhouse/task_queue/ddl"


@dataclass(frozen=True)
class Member:
    shard: int
    replica: int

    @property
    def shard_macro(self) -> str:
        return f"{self.shard:02d}"

    @property
    def replica_macro(self) -> str:
        return f"s{self.shard}r{self.replica}"


class ClickHouseCluster:
    """``shards`` x ``replicas`` clickhouse-server processes and a ZooKeeper under ``workdir``.

    ``session_timeout_ms`` is the servers' ZooKeeper session: a replica killed with -9 and
    restarted stays read-only until its old session expires (30 s by default; 6 s here)."""

    def __init__(self, workdir: Path, *, name: str = "foodrisk", shards: int = 2, replicas: int = 2,
                 host: str = "127.0.0.1", session_timeout_ms: int = 6000, ddl_timeout_s: int = 60) -> None:
        self.workdir = Path(workdir).resolve()
        self.name = name
        self.host = host
        self.session_timeout_ms = session_timeout_ms
        self.ddl_timeout_s = ddl_timeout_s
        self.zookeeper = ZooKeeperServer(self.workdir / "zookeeper", host=host)
        self.members = [Member(s + 1, r + 1) for s in range(shards) for r in range(replicas)]
        self.nodes = [
            ClickHouseServer(self.workdir / m.replica_macro, host=host) for m in self.members
        ]
        self._interserver = [free_port(host) for _ in self.members]
        for node in self.nodes:
            # distributed_ddl_task_timeout is a user setting: ON CLUSTER with a node down gives up
            # (code 159) after this many seconds instead of 180; the node still applies it when back.
            node.profile_settings = {"distributed_ddl_task_timeout": str(ddl_timeout_s)}

    def _remote_servers(self) -> str:
        shards = []
        for shard in sorted({m.shard for m in self.members}):
            replicas = "".join(
                f"<replica><host>{escape(self.host)}</host><port>{node.tcp_port}</port></replica>"
                for node, m in zip(self.nodes, self.members, strict=True) if m.shard == shard
            )
            shards.append(f"<shard><internal_replication>true</internal_replication>{replicas}</shard>")
        return f"<remote_servers><{self.name}>{''.join(shards)}</{self.name}></remote_servers>"

    def _member_config(self, member: Member, interserver_port: int) -> str:
        return f"""
    <!-- cluster member: written by foodrisk (pipeline/localstack/clickhouse_cluster.py) -->
    <interserver_http_host>{escape(self.host)}</interserver_http_host>
    <interserver_http_port>{interserver_port}</interserver_http_port>
    {self._remote_servers()}
    <zookeeper>
        <node><host>{escape(self.host)}</host><port>{self.zookeeper.port}</port></node>
        <session_timeout_ms>{self.session_timeout_ms}</session_timeout_ms>
    </zookeeper>
    <macros><shard>{member.shard_macro}</shard><replica>{member.replica_macro}</replica></macros>
    <distributed_ddl><path>{DDL_QUEUE}</path></distributed_ddl>"""

    def node(self, shard: int, replica: int) -> ClickHouseServer:
        return self.nodes[self.members.index(Member(shard, replica))]

    def member(self, node: ClickHouseServer) -> Member:
        return self.members[self.nodes.index(node)]

    def start(self) -> ClickHouseCluster:
        try:
            self.zookeeper.start()
            for member, node, port in zip(self.members, self.nodes, self._interserver, strict=True):
                node.extra_config = self._member_config(member, port)  # every node's ports are known now
                node.start()
        except BaseException:
            self.stop()
            raise
        log.info("ClickHouse cluster %s: %d nodes, zookeeper %s", self.name, len(self.nodes), self.zookeeper.port)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.zookeeper.stop()

    def __enter__(self) -> ClickHouseCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
