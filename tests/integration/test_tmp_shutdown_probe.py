import time
from pathlib import Path
from pipeline.localstack.process import free_port
from tests.integration.factories import mixed_batch
from tests.integration.workers import WorkerProcess
from tests.integration.test_webhook import produce

def test_probe(broker, tmp_path: Path, unique: str) -> None:
    topics = {k: f"sd.{k}.{unique}" for k in ("results", "alerts", "deadletter")}
    w = WorkerProcess(tmp_path / "w", broker_url=broker.url, clickhouse_url=f"chdb://{tmp_path / 'chdb'}", app_id=f"sd-{unique}",
                      topics=topics, FOODRISK_CLICKHOUSE_DATABASE=f"sd_{unique}", FOODRISK_ALERTMANAGER_URL=f"http://127.0.0.1:{free_port()}").start()
    valid, _, _ = mixed_batch(f"s{unique}", 100)
    produce(broker.bootstrap, topics["results"], valid)
    time.sleep(8)
    t = time.monotonic()
    w.stop()
    print("STOP TOOK", time.monotonic() - t)
    print(w.log_tail(6000))
