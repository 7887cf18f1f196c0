"""Session-wide fixtures: one real Apache Kafka broker per session, fresh topic and group names.

ClickHouse fixtures live in tests/integration/conftest.py. Nothing here mocks a broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.localstack.kafka import KafkaBroker
from pipeline.localstack.process import StartupError, stop_all

IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """In CI a missing service fails the run; elsewhere the test is skipped and says why."""
    if IN_CI:
        pytest.fail(f"required service unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """Apache Kafka (single-node KRaft) on free loopback ports for the whole session: its JVM
    start-up is paid once. Tests isolate themselves by unique topic and group names."""
    try:
        b = KafkaBroker(tmp_path_factory.mktemp("kafka")).start()
    except StartupError as exc:
        unavailable(str(exc))
        raise
    yield b
    b.stop()


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic, group and database names."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session", autouse=True)
def _stop_children_at_end() -> Iterator[None]:
    yield
    stop_all()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
