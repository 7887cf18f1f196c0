"""`foodrisk simulate`: the simulated device fleet publishing results to the broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kafka import KafkaProducer

from pipeline.settings import Settings, kafka_python_producer_options
from pipeline.simulator import Fleet, FleetConfig

log = logging.getLogger(__name__)

TICK_S = 0.2


@dataclass
class FleetProgress:
    sent: int = 0
    failed: int = 0
    invalid: int = 0
    incidents: int = 0
    sim_time: datetime | None = None
    elapsed_s: float = 0.0


def producer_for(settings: Settings, bootstrap: list[str]) -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=f"{settings.app_id}-simulator",
        **kafka_python_producer_options(settings),
    )


def run_fleet(
    settings: Settings,
    bootstrap: list[str],
    *,
    duration_s: float | None,
    speed: float,
    rate_per_sim_hour: float | None,
    seed: int,
    start: datetime | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    on_tick: Callable[[FleetProgress], None] | None = None,
) -> FleetProgress:
    """Publish the fleet's results in (scaled) real time until ``duration_s`` or ``should_stop()``.

    The simulated clock starts at ``start`` (default: 06:00 Asia/Shanghai four days ago, a morning
    market) and advances ``speed`` simulated seconds per real second until it reaches the wall
    clock; from there it runs in real time, so no result is ever dated in the future.
    """
    if start is None:
        cst = datetime.now(UTC) + timedelta(hours=8) - timedelta(days=4)
        start = datetime(cst.year, cst.month, cst.day, 6, 0, tzinfo=UTC) - timedelta(hours=8)
    cfg_kwargs: dict[str, object] = {"seed": seed, "start": start, "speed": speed}
    if rate_per_sim_hour is not None:
        cfg_kwargs["rate_per_sim_hour"] = rate_per_sim_hour
    fleet = Fleet(FleetConfig(**cfg_kwargs))  # type: ignore[arg-type]  # kwargs assembled above
    producer = producer_for(settings, bootstrap)
    progress = FleetProgress(sim_time=start)

    def on_error(exc: BaseException) -> None:
        progress.failed += 1
        if progress.failed <= 5:
            log.error("simulator: a message was not delivered: %s", exc)
    began = time.monotonic()
    try:
        while not should_stop():
            elapsed = time.monotonic() - began
            if duration_s is not None and elapsed >= duration_s:
                break
            until = min(start + timedelta(seconds=elapsed * speed), datetime.now(UTC))
            for msg in fleet.next_batch(until):
                producer.send(settings.results_topic, key=msg.key, value=msg.value).add_errback(on_error)
                progress.sent += 1
                if msg.tag == "invalid":
                    progress.invalid += 1
                elif msg.tag and msg.tag.startswith("incident"):
                    progress.incidents += 1
            producer.flush(timeout=30)
            progress.sim_time, progress.elapsed_s = until, elapsed
            if on_tick is not None:
                on_tick(progress)
            time.sleep(max(0.0, TICK_S - (time.monotonic() - began - elapsed)))
    finally:
        producer.flush(timeout=30)
        producer.close(timeout=10)
    return progress
