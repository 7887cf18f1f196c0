"""Named queries on the ClickHouse ``alerts`` table, and their rows read back as alerts (no I/O here)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from schemas.alert import Alert

__all__ = ["LATEST_ALERTS_COLUMNS", "alert_from_row", "aware", "latest_alerts_sql"]

# What latest_alerts_sql selects: an Alert's fields, then where and when it was archived.
LATEST_ALERTS_COLUMNS: Final = (
    "alert_id", "kind", "classification", "risk", "status", "summary_en", "summary_zh", "district", "site_id",
    "site_type", "commodity", "analyte", "supplier_id", "vendor_id", "device_id", "evidence", "starts_at", "ends_at",
    "details", "src_partition", "ingested_at",
)


def latest_alerts_sql(database: str, partitions: Iterable[int]) -> str:
    """The latest state of every alert of the alerts topic's ``partitions`` archived since
    ``%(since)s`` (a parameter the caller binds): what the delivery agent's firing set is rebuilt
    from after a start or a rebalance. Only ints and ``database`` (validated by the shell's
    settings) are formatted in."""
    parts = ", ".join(str(int(p)) for p in sorted(partitions))
    return (
        f"SELECT {', '.join(LATEST_ALERTS_COLUMNS)} FROM `{database}`.alerts "  # noqa: S608
        f"WHERE src_partition IN ({parts}) AND ingested_at >= %(since)s "
        "ORDER BY alert_id, ingested_at DESC, src_offset DESC LIMIT 1 BY alert_id"
    )


def aware(ts: datetime) -> datetime:
    """A ClickHouse DateTime (naive, UTC) as an aware datetime."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def alert_from_row(r: Mapping[str, Any]) -> Alert:
    """The :class:`Alert` of a row of :func:`latest_alerts_sql`; ValueError if it does not validate."""
    return Alert(
        alert_id=r["alert_id"], kind=r["kind"], classification=r["classification"], risk=r["risk"],
        status=r["status"], summary_en=r["summary_en"], summary_zh=r["summary_zh"],
        district=r["district"], site_id=r["site_id"], site_type=r["site_type"],
        commodity=r["commodity"], analyte=r["analyte"], supplier_id=r["supplier_id"],
        vendor_id=r["vendor_id"], device_id=r["device_id"], evidence=tuple(r["evidence"]),
        starts_at=aware(r["starts_at"]), ends_at=aware(r["ends_at"]) if r["ends_at"] else None,
        details=orjson.loads(r["details"] or "{}"),
    )
