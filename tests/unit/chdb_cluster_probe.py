"""Run SQL on chdb configured as a one-node ClickHouse "cluster", in a process of its own.

chdb opens one data path per process, and a config file only when a session starts, so the
cluster-layout test (test_ddl_cluster.py) runs this module as a child process:

    python -m tests.unit.chdb_cluster_probe < job.json > answer.json

job: ``{"path": DIR, "cluster": NAME, "statements": [SQL...], "queries": [SQL...]}``. The config
defines ``remote_servers`` with one shard whose one replica is this process (chdb treats it as
local, so Distributed tables read and write in-process), and the ``{shard}``/``{replica}`` macros.
answer: ``{"results": [[row...]...]}``, one list of rows (JSON values) per query, or
``{"error": TEXT, "statement": SQL}`` for the first statement or query that failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

CONFIG = """<clickhouse>
    <tcp_port>9000</tcp_port>
    <macros><shard>01</shard><replica>replica-1</replica></macros>
    <remote_servers>
        <{cluster}>
            <shard><replica><host>localhost</host><port>9000</port></replica></shard>
        </{cluster}>
    </remote_servers>
</clickhouse>
"""


def main() -> int:
    job: dict[str, Any] = json.load(sys.stdin)
    path = Path(job["path"])
    path.mkdir(parents=True, exist_ok=True)
    config = path.parent / f"{path.name}-config.xml"
    config.write_text(CONFIG.format(cluster=job["cluster"]))
    from chdb import session

    sess: Any = session.Session(f"{path}?config-file={config}")  # type: ignore[no-untyped-call]  # chdb is untyped
    try:
        for sql in job["statements"]:
            try:
                sess.query(sql)
            except Exception as exc:  # noqa: BLE001 - reported to the parent test
                json.dump({"error": str(exc), "statement": sql}, sys.stdout)
                return 1
        results = []
        for sql in job["queries"]:
            try:
                out = sess.query(sql, "JSONCompact")
            except Exception as exc:  # noqa: BLE001 - reported to the parent test
                json.dump({"error": str(exc), "statement": sql}, sys.stdout)
                return 1
            text = out.bytes().decode() if hasattr(out, "bytes") else str(out)
            results.append(json.loads(text)["data"] if text.strip() else [])
        json.dump({"results": results}, sys.stdout)
        return 0
    finally:
        sess.close()


if __name__ == "__main__":
    sys.exit(main())
