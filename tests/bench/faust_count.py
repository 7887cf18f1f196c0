"""The bare Faust ceiling: an agent that decodes (orjson) and counts, nothing else.

Run as: python -m tests.bench.faust_count BOOTSTRAP TOPIC APP_ID WEB_PORT DATA_DIR N OUT_FILE
Writes "<first_message_unix> <last_message_unix> <count>" to OUT_FILE once N messages were seen.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import faust
import orjson
from faust.worker import Worker

from pipeline.faust_config import faust_options
from pipeline.settings import Settings


def main() -> None:
    bootstrap, topic_name, app_id, web_port, data_dir, n_text, out_file = sys.argv[1:8]
    n = int(n_text)
    settings = Settings(broker_url=f"kafka://{bootstrap}", app_id=app_id,
                        web_port=int(web_port), data_dir=Path(data_dir))
    app = faust.App(app_id, **faust_options(settings, [bootstrap]))
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    state = {"count": 0, "first": 0.0}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for value in stream:
            if state["count"] == 0:
                state["first"] = time.time()
            orjson.loads(value)
            state["count"] += 1
            if state["count"] == n:
                Path(out_file).write_text(f"{state['first']} {time.time()} {n}")  # noqa: ASYNC240 - once, at the end

    Worker(app, loglevel="info", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
