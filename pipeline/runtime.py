"""What a running worker holds, in one record (handed to the web views, the query port and tests).

Its own module so that the views can name it without importing the wiring that builds it
(``pipeline.app``), which imports them: the imports run one way.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust
from faust.types import TopicT
from prometheus_client import CollectorRegistry

from agents.metrics import Metrics
from agents.screening import CurrentReference
from pipeline.settings import Settings
from schemas.reference import Reference
from sinks.clickhouse import ClickHouse
from sinks.writer import ClickHouseWriter


@dataclass
class Runtime:
    """Everything a running worker holds (built by ``pipeline.app.build_runtime``)."""

    settings: Settings
    app: faust.App
    clickhouse: ClickHouse
    writer: ClickHouseWriter
    reference: Reference  # as at start (HTTP ingest validates with it)
    current_reference: CurrentReference  # what the screening agent uses now (new editions swap in)
    registry: CollectorRegistry
    metrics: Metrics
    results_topic: TopicT
    alerts_topic: TopicT
    deadletter_topic: TopicT
