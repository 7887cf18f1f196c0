"""`foodrisk worker`: the Faust worker with every agent, against the configured services."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import Iterator
from pathlib import Path

from pipeline.localstack.kafka import KafkaBroker
from pipeline.settings import Settings
from pipeline.topics import ensure_topics
from sinks.clickhouse import ClickHouse, connect_clickhouse, redact_url
from sinks.ddl import migrate

log = logging.getLogger(__name__)


@contextlib.contextmanager
def broker_for(settings: Settings, workdir: Path) -> Iterator[list[str]]:
    """Bootstrap servers of the configured broker; starts (and at the end stops) the embedded one."""
    if not settings.embedded:
        yield settings.bootstrap_servers()
        return
    broker = KafkaBroker(workdir / "kafka").start()
    log.info("embedded Kafka at %s (pid %s, ready in %.1fs, logs %s)", broker.bootstrap, broker.pid,
             broker.ready_s or 0.0, broker.logs)
    try:
        yield [broker.bootstrap]
    finally:
        broker.stop()


def open_clickhouse(settings: Settings) -> ClickHouse:
    """Connected and migrated."""
    if settings.uses_chdb:
        settings.chdb_path.parent.mkdir(parents=True, exist_ok=True)
    opts: dict[str, object] = {}
    if settings.clickhouse_cluster:
        # An insert into a Distributed table returns only once every shard's replica has the rows
        # (README, "ClickHouse cluster"): by default it returns when the rows are queued on the
        # node asked, and on 18.16 a queued block whose replica dies mid-send is moved to
        # `broken/` and never sent (the cluster drill lost 40 of 4,000 results so).
        opts["settings"] = {"insert_distributed_sync": 1}
    ch = connect_clickhouse(settings.clickhouse_url, database=settings.database, **opts)
    applied = migrate(ch, settings.database, cluster=settings.clickhouse_cluster)
    if applied:
        log.info("ClickHouse migrations applied: %s", applied)
    return ch


def tune_gc() -> None:
    """Garbage collection for a long-running worker: everything built at start-up (reference data,
    agents, modules) is moved out of the collector's sight (``gc.freeze``), and the young generation
    is collected per 10,000 allocations instead of 700. Screening allocates a few dozen objects per
    result, and with the default thresholds full collections over the early-warning state took ~4 us
    per result (measured on the pure path); in the batch-form benchmark this ran 10-40% faster in
    each of four paired runs. Cyclic garbage is still collected, a little later."""
    gc.freeze()
    gc.set_threshold(10_000, 20, 10)


def issue_local_analyst_token(settings: Settings) -> None:
    """A fresh analyst token for this host's `foodrisk query`, `redlist` and `run`, registered as
    `local` (the previous one stops working) and written to DATA_DIR/auth/local-analyst.token (0600)."""
    from pipeline.ingest.tokens import RegistryError, write_local_analyst_token
    try:
        write_local_analyst_token(settings.analyst_tokens_path, settings.local_analyst_token_path)
    except (OSError, RegistryError) as exc:
        log.warning("no local analyst token (%s): analysts need a token of `foodrisk analysts add NAME`", exc)
        return
    log.info("local analyst token written to %s", settings.local_analyst_token_path)


def run_worker(settings: Settings) -> int:
    """Run until stopped (SIGTERM, Ctrl-C). Returns the exit code."""
    from faust.worker import Worker

    from pipeline.app import build_runtime

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with broker_for(settings, settings.data_dir / "stack") as bootstrap:
        ensure_topics(settings, bootstrap)
        ch = open_clickhouse(settings)
        rt = build_runtime(settings, bootstrap, ch)
        issue_local_analyst_token(settings)
        tune_gc()
        worker = Worker(
            rt.app,
            loglevel=settings.log_level,
            quiet=True,
            redirect_stdouts=False,
        )
        log.info(
            "worker %s: broker %s, ClickHouse %s, device port http://%s:%s, query port http://%s:%s",
            settings.app_id, ",".join(bootstrap), redact_url(settings.clickhouse_url),
            settings.web_host, settings.web_port, settings.query_host, settings.query_port or "(free port)",
        )
        code = 0
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            code = int(exc.code or 0) if isinstance(exc.code, int | None) else 1
        finally:
            rt.writer.close()
            ch.close()
        return code

