"""Session-wide fixtures: a real Kafka-protocol broker (Tansu), fresh topic and group names.

ClickHouse fixtures live in tests/integration/conftest.py. Nothing here mocks a broker.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.localstack.process import StartupError, stop_all
from pipeline.localstack.tansu import TansuBroker

IN_CI = bool(os.environ.get("CI"))


def unavailable(reason: str) -> None:
    """In CI a missing service fails the run; elsewhere the test is skipped and says why."""
    if IN_CI:
        pytest.fail(f"required service unavailable in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    """A Tansu broker on a free loopback port for the whole session (memory storage)."""
    try:
        b = TansuBroker(tmp_path_factory.mktemp("tansu")).start()
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
