"""The ClickHouse interface every backend implements: the protocol, QueryResult, Features, Version."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "foodrisk"
DEDUP_TOKEN_SETTING = "insert_deduplication_token"  # noqa: S105 - a setting name, not a secret

Version = tuple[int, int, int]


# --------------------------------------------------------------------------------------------
# The interface


@dataclass(frozen=True)
class QueryResult:
    """Rows of a SELECT: ``columns`` names, ``rows`` tuples in column order, ``types`` the
    ClickHouse type names of the columns."""

    columns: list[str]
    rows: list[tuple[Any, ...]]
    types: list[str] = field(default_factory=list)

    def scalar(self) -> Any:
        """The first column of the first row (None when there is no row)."""
        return self.rows[0][0] if self.rows else None

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class Features:
    """What the server supports beyond the subset shared with Debian's 18.16 (see docs/stack.md).

    Chosen by the server's version. The thresholds are conservative: a feature is used from the
    release where it stopped being experimental, and anything older is treated like 18.16.
    """

    low_cardinality: bool = False  # LowCardinality(T) without the experimental setting
    ttl: bool = False  # column and table TTL
    datetime64: bool = False  # DateTime64(precision, tz)
    insert_deduplication_token: bool = False  # the insert setting, with non_replicated_deduplication_window
    add_column_if_not_exists: bool = False  # ALTER TABLE ... ADD COLUMN IF NOT EXISTS (18.16: a syntax error)

    @classmethod
    def for_version(cls, version: Version) -> Features:
        return cls(
            low_cardinality=version >= (20, 1, 0),
            ttl=version >= (20, 1, 0),
            datetime64=version >= (20, 1, 0),
            insert_deduplication_token=version >= (22, 2, 0),
            add_column_if_not_exists=version >= (20, 1, 0),
        )


@runtime_checkable
class ClickHouse(Protocol):
    """The one interface the pipeline uses to talk to ClickHouse. Blocking; thread-safe."""

    @property
    def database(self) -> str:
        """The current database: unqualified table names in SQL refer to it."""
        ...

    @property
    def server_version(self) -> Version: ...

    @property
    def features(self) -> Features: ...

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT, OPTIMIZE)."""
        ...

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult: ...

    def insert(
        self,
        table: str,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        *,
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert ``rows`` (sequences in ``columns`` order) into ``table`` (``name`` or
        ``db.name``); returns the number of rows sent. Never inlines values in SQL text."""
        ...

    def close(self) -> None: ...


def parse_version(text: str) -> Version:
    parts = [int(p) for p in re.findall(r"\d+", text)[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


class DropUnsupportedSettings:
    """Drops ``insert_deduplication_token`` where the server has no such setting (18.16), once
    logged: the sink can always pass it, the ReplacingMergeTree tables keep replays harmless."""

    def __init__(self) -> None:
        self._warned = False

    def __call__(self, settings: dict[str, Any], features: Features) -> dict[str, Any]:
        if DEDUP_TOKEN_SETTING in settings and not features.insert_deduplication_token:
            settings = {k: v for k, v in settings.items() if k != DEDUP_TOKEN_SETTING}
            if not self._warned:
                self._warned = True
                log.info("this ClickHouse has no %s: inserts go without it", DEDUP_TOKEN_SETTING)
        return settings
