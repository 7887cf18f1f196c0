"""A minimal Faust app for the broker tests: copies every message of IN to OUT, upper-cased.

Run as: python tests/integration/faust_echo.py BOOTSTRAP IN OUT APP_ID WEB_PORT
It uses the same options as the real worker (pipeline.faust_config.faust_options).
"""

from __future__ import annotations

import sys

import faust
from faust.worker import Worker

from pipeline.faust_config import faust_options
from pipeline.settings import Settings


def main() -> None:
    bootstrap, src, dst, app_id, web_port, data_dir = sys.argv[1:7]
    settings = Settings(broker_url=f"kafka://{bootstrap}", app_id=app_id,
                        web_port=int(web_port), data_dir=data_dir)
    app = faust.App(app_id, **faust_options(settings, [bootstrap]))
    in_topic = app.topic(src, key_serializer="raw", value_serializer="raw")
    out_topic = app.topic(dst, key_serializer="raw", value_serializer="raw")

    @app.agent(in_topic)
    async def echo(stream):  # type: ignore[no-untyped-def]
        async for event in stream.events():
            fut = await out_topic.send(key=event.key, value=event.value.upper(), force=True)
            await fut

    Worker(app, loglevel="info", quiet=True, redirect_stdouts=False).execute_from_commandline()


if __name__ == "__main__":
    main()
