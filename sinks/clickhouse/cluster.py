"""The cluster layout of the schema: ClusterLayout, the ON CLUSTER rewriter (lay_out), check_cluster.

On a ClickHouse cluster the same migrations are rendered again by rewriting their statements,
so a migration is written once, in the single-server form, and :func:`lay_out` lays it out for the
cluster (:func:`sinks.clickhouse.migrations.on_cluster` hands it the tables the migrations create):

- a table ``t`` becomes ``t_local`` on every node, created ON CLUSTER with the Replicated form
  of its engine (``ReplacingMergeTree(v)`` -> ``ReplicatedReplacingMergeTree('<path>',
  '{replica}', v)``; the replicas of one shard share ``/clickhouse/tables/{shard}/<db>/t_local``),
  plus a ``Distributed`` table ``t`` with the same columns over all shards. The pipeline keeps
  writing to and reading ``t``: no query or insert changes between the two layouts;
- rows are sharded by ``cityHash64`` of the table's sorting key, so the rows that
  ReplacingMergeTree / AggregatingMergeTree must collapse (same key: a replayed result, a
  resent alert) always land on the same shard, and FINAL / argMax on the Distributed table stay
  exact (FINAL runs per shard);
- a materialized view is created on every node and turns the local inserts of ``*_local``
  tables into rows of ``*_local`` tables (a Distributed insert reaches the shard as a local
  insert, and that is what triggers the view);
- a plain view is created on every node over the Distributed tables (it sees the whole cluster);
- ``schema_migrations`` is one replicated table whose replicas are all the nodes (its ZooKeeper
  path has no ``{shard}``), so every node knows which versions were applied;
- ``SETTINGS non_replicated_deduplication_window`` becomes ``replicated_deduplication_window``:
  the sink's ``insert_deduplication_token`` then works on the replicated tables.

The servers need ``remote_servers`` naming the cluster, the ``{shard}`` and ``{replica}`` macros
and ClickHouse Keeper (or ZooKeeper) for ON CLUSTER and replication. README, "Running in
production", has a config sketch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from sinks.clickhouse.base import ClickHouse
from sinks.clickhouse.sql import quote_identifier
from sinks.errors import ClickHouseError


class ClusterDDLError(ValueError):
    """A migration statement the cluster layout does not know how to rewrite."""


@dataclass(frozen=True)
class ClusterLayout:
    """Where the cluster variant of the schema lives. ``{database}`` and ``{table}`` in the paths
    are filled in here; ``{shard}`` and ``{replica}`` are the servers' macros."""

    name: str
    zookeeper_path: str = "/clickhouse/tables/{shard}/{database}/{table}"
    # Tables every node holds whole (one replica per node): schema_migrations.
    shared_zookeeper_path: str = "/clickhouse/tables/all/{database}/{table}"
    replica: str = "{replica}"
    local_suffix: str = "_local"

    def __post_init__(self) -> None:
        quote_identifier(self.name)  # a plain identifier, as in remote_servers
        for path in (self.zookeeper_path, self.shared_zookeeper_path):
            if "{table}" not in path or "'" in path or "\\" in path:
                raise ValueError(f"bad ZooKeeper path template {path!r}: it needs {{table}} and no quotes")
        if "{shard}" not in self.zookeeper_path:
            raise ValueError(f"ZooKeeper path template {self.zookeeper_path!r} needs {{shard}}")
        if not _IDENT_SUFFIX.match(self.local_suffix):
            raise ValueError(f"bad local table suffix {self.local_suffix!r}")

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote_identifier(self.name)}"

    def path(self, database: str, table: str, *, shared: bool = False) -> str:
        template = self.shared_zookeeper_path if shared else self.zookeeper_path
        return template.replace("{database}", database).replace("{table}", table)


_IDENT_SUFFIX = re.compile(r"^_[A-Za-z0-9_]+$")

# Tables every node holds whole rather than a shard of.
SHARED_TABLES: frozenset[str] = frozenset({"schema_migrations"})

_NAME = r"`(?P<db>\w+)`\.`(?P<name>\w+)`"
_CREATE_DATABASE = re.compile(r"^CREATE DATABASE IF NOT EXISTS `(?P<db>\w+)`$")
_CREATE_TABLE = re.compile(
    rf"^CREATE TABLE IF NOT EXISTS {_NAME}\n(?P<body>\(\n.*?\n\))\nENGINE = (?P<engine>\w*MergeTree)\((?P<rest>.*)$",
    re.DOTALL,
)
_CREATE_MV = re.compile(rf"^CREATE MATERIALIZED VIEW IF NOT EXISTS {_NAME}(?P<rest>\nTO .*)$", re.DOTALL)
_CREATE_VIEW = re.compile(rf"^CREATE VIEW IF NOT EXISTS {_NAME}(?P<rest>\nAS .*)$", re.DOTALL)
_ALTER_TABLE = re.compile(rf"^ALTER TABLE {_NAME}(?P<rest>\s.*)$", re.DOTALL)
_COLUMN_ALTER = re.compile(r"^\s*(ADD|DROP|MODIFY|RENAME|COMMENT) COLUMN\b")
_ORDER_BY = re.compile(r"^ORDER BY (?P<key>.+)$", re.MULTILINE)


def _split_engine_args(rest: str) -> tuple[str, str]:
    """``'a, b)\\nPARTITION BY ...'`` -> (``'a, b'``, ``'\\nPARTITION BY ...'``): the engine's
    arguments up to its closing parenthesis, and what follows."""
    depth, quoted = 0, False
    for i, ch in enumerate(rest):
        if ch == "'" and (i == 0 or rest[i - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return rest[:i].strip(), rest[i + 1 :]
            depth -= 1
    raise ClusterDDLError(f"unbalanced engine arguments: {rest[:80]!r}")


# Tables sharded by less than their whole sorting key (a prefix of it, so the rows that collapse
# together still land together). results: by result_id, as before it was keyed by device, so the
# rebuild of a cluster's results_local (README) keeps every row on its shard.
SHARDING_KEYS: dict[str, str] = {"results": "cityHash64(result_id)"}


def sharding_key(table_tail: str, table: str | None = None) -> str:
    """``cityHash64`` of the sorting key found in the text after a table's engine (or the
    :data:`SHARDING_KEYS` entry of ``table``)."""
    if table in SHARDING_KEYS:
        return SHARDING_KEYS[table]
    found = _ORDER_BY.search(table_tail)
    if not found:
        raise ClusterDDLError("a sharded table needs an ORDER BY to derive its sharding key")
    key = found.group("key").strip()
    if key.startswith("(") and key.endswith(")"):
        key = key[1:-1].strip()
    return "rand()" if key in ("", "tuple()") else f"cityHash64({key})"


def created_tables_in(statements: Iterable[str]) -> frozenset[str]:
    """Names of the tables (not views) that ``statements`` create."""
    return frozenset(found.group("name") for s in statements if (found := _CREATE_TABLE.match(s)))


def lay_out(statements: list[str], database: str, layout: ClusterLayout, tables: Iterable[str]) -> list[str]:
    """``statements`` (single-server DDL, for ``database``) in the cluster layout; ``tables`` are
    the tables to shard (those the migrations create: references to them become ``*_local``).

    Raises :class:`ClusterDDLError` for a statement form it does not know: teach this function
    the form rather than writing a migration twice.
    """
    sharded = frozenset(tables) - SHARED_TABLES
    local = {name: name + layout.local_suffix for name in sharded}

    def qualified(name: str) -> str:
        return f"{quote_identifier(database)}.{quote_identifier(name)}"

    def to_local(sql: str) -> str:
        for name in sorted(local, key=len, reverse=True):
            sql = sql.replace(qualified(name), qualified(local[name]))
        return sql

    out: list[str] = []
    for statement in statements:
        if m := _CREATE_DATABASE.match(statement):
            out.append(statement + layout.on_cluster)
        elif m := _CREATE_TABLE.match(statement):
            db, name, body, engine = m.group("db", "name", "body", "engine")
            args, tail = _split_engine_args(m.group("rest"))
            tail = tail.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
            shared = name in SHARED_TABLES
            target = name if shared else local.setdefault(name, name + layout.local_suffix)
            replicated_args = ", ".join(
                a for a in (f"'{layout.path(db, target, shared=shared)}'", f"'{layout.replica}'", args) if a
            )
            out.append(
                f"CREATE TABLE IF NOT EXISTS {qualified(target)}{layout.on_cluster}\n{body}\n"
                f"ENGINE = Replicated{engine}({replicated_args}){tail}"
            )
            if not shared:
                out.append(
                    f"CREATE TABLE IF NOT EXISTS {qualified(name)}{layout.on_cluster}\n{body}\n"
                    f"ENGINE = Distributed('{layout.name}', '{db}', '{target}', {sharding_key(tail, name)})"
                )
        elif m := _CREATE_MV.match(statement):
            out.append(
                f"CREATE MATERIALIZED VIEW IF NOT EXISTS {qualified(m.group('name'))}{layout.on_cluster}"
                f"{to_local(m.group('rest'))}"
            )
        elif m := _CREATE_VIEW.match(statement):
            out.append(f"CREATE VIEW IF NOT EXISTS {qualified(m.group('name'))}{layout.on_cluster}{m.group('rest')}")
        elif m := _ALTER_TABLE.match(statement):
            name, rest = m.group("name", "rest")
            if name in local:
                out.append(f"ALTER TABLE {qualified(local[name])}{layout.on_cluster}{rest}")
                if _COLUMN_ALTER.match(rest):  # the Distributed table has the same columns
                    out.append(f"ALTER TABLE {qualified(name)}{layout.on_cluster}{rest}")
            else:
                out.append(f"ALTER TABLE {qualified(name)}{layout.on_cluster}{rest}")
        else:
            first = statement.splitlines()[0] if statement else ""
            raise ClusterDDLError(
                f"cannot lay out for a ClickHouse cluster: {first[:120]!r}; sinks.clickhouse.cluster.lay_out knows "
                f"CREATE DATABASE/TABLE (a *MergeTree engine)/VIEW/MATERIALIZED VIEW ... TO and ALTER TABLE"
            )
    return out


def check_cluster(ch: ClickHouse, layout: ClusterLayout) -> None:
    """That the server knows the cluster (``system.clusters``), with a message saying what to do."""
    res = ch.query("SELECT count() FROM system.clusters WHERE cluster = %(name)s", {"name": layout.name})
    if not res.scalar():
        known = ch.query("SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster")
        names = ", ".join(str(r[0]) for r in known.rows) or "none"
        raise ClickHouseError(
            f"ClickHouse cluster {layout.name!r} is not defined on this server (known: {names}); define it "
            f"in remote_servers, or unset FOODRISK_CLICKHOUSE_CLUSTER for a single server"
        )
