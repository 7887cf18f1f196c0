"""The one settings object of foodrisk (environment prefix ``FOODRISK_``).

Every knob is a field here; the README lists them. Sinks and rules never import this module:
the shell reads it once and hands plain values on.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrokerFlavor(StrEnum):
    TANSU = "tansu"
    KAFKA = "kafka"


class SettingsError(ValueError):
    """A setting that cannot work; the message is one line a person can act on."""


def _split_hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts: list[tuple[str, int]] = []
    for part in netloc.split(","):
        part = part.strip()
        if not part:
            continue
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "")
        if not port:
            hosts.append((part, default_port))
            continue
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad port in {part!r}")
        hosts.append((host.strip("[]"), int(port)))
    if not hosts:
        raise ValueError("no host given")
    return hosts


class Settings(BaseSettings):
    """foodrisk configuration. Keyword arguments win over the environment (tests use that)."""

    model_config = SettingsConfigDict(
        env_prefix="FOODRISK_", frozen=True, extra="forbid", validate_default=True
    )

    # -- broker ---------------------------------------------------------------------------------
    broker_url: str = Field(
        "embedded",
        description="`embedded` (start a Tansu broker as a child process) or kafka://host:port[,host:port]",
    )
    broker_flavor: BrokerFlavor | None = Field(
        None, description="tansu | kafka; default tansu with `embedded`, kafka with kafka://"
    )
    broker_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    broker_sasl_username: str | None = None
    broker_sasl_password: SecretStr | None = None
    broker_ssl_cafile: Path | None = None
    broker_session_timeout_s: float | None = Field(
        None, description="consumer group session timeout; default 6 s on tansu, 30 s on kafka"
    )

    # -- topics ---------------------------------------------------------------------------------
    app_id: str = Field("foodrisk", description="Faust app id = consumer group id")
    results_topic: str = "foodrisk.results"
    alerts_topic: str = "foodrisk.alerts"
    deadletter_topic: str = "foodrisk.deadletter"
    topic_partitions: int = Field(4, ge=1, le=1024)
    topic_replication: int = Field(1, ge=1, le=16)

    # -- ClickHouse -----------------------------------------------------------------------------
    clickhouse_url: str = Field(
        "chdb://./var/clickhouse",
        repr=False,  # may carry a password
        description="chdb://PATH (in-process) or clickhouse://user:password@host:9000/db (native)",
    )
    clickhouse_database: str = Field("foodrisk", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    # -- sink batching --------------------------------------------------------------------------
    sink_max_rows: int = Field(1000, ge=1, le=1_000_000, description="flush a batch at this many rows")
    sink_max_age_s: float = Field(0.5, gt=0, le=60, description="or when its oldest row is this old")
    sink_retry_cap_s: float = Field(10.0, gt=0, description="longest wait between two retries")

    # -- worker ---------------------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="bind address of the worker's HTTP server")
    web_port: int = Field(6066, ge=1, le=65535, description="worker HTTP: /metrics, /healthz, /readyz, query")
    data_dir: Path = Field(Path("./var"), description="local state: Faust tables, logs of child servers")
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # -- rules ----------------------------------------------------------------------------------
    watch_fraction: float = Field(0.5, gt=0, lt=1, description="value/limit ratio from which a result is `watch`")
    enzyme_positive_pct: float | None = Field(
        None, ge=0, le=100, description="enzyme-inhibition positive cut-off in %; default from the reference data (50)"
    )
    enzyme_watch_pct: float | None = Field(
        None, ge=0, le=100, description="start of the enzyme-inhibition watch band in %; default reference (40)"
    )

    # -- alert delivery -------------------------------------------------------------------------
    alertmanager_url: str | None = Field(None, description="one or more Alertmanager base URLs, comma separated")

    @field_validator("broker_url")
    @classmethod
    def _check_broker_url(cls, v: str) -> str:
        v = v.strip()
        if v == "embedded":
            return v
        parts = urlsplit(v)
        if parts.scheme != "kafka":
            raise ValueError(
                f"unknown broker URL {v!r}: use `embedded` or kafka://host:port[,host:port]"
            )
        try:
            _split_hosts(parts.netloc, 9092)
        except ValueError as exc:
            raise ValueError(f"bad broker URL {v!r}: {exc}") from None
        return v

    @field_validator("clickhouse_url")
    @classmethod
    def _check_clickhouse_url(cls, v: str) -> str:
        v = v.strip()
        parts = urlsplit(v)
        if parts.scheme == "chdb":
            if not (parts.netloc + parts.path):
                raise ValueError(f"bad ClickHouse URL {v!r}: chdb:// needs a path, e.g. chdb://./var/clickhouse")
            return v
        if parts.scheme in ("clickhouse", "clickhouses"):
            if not parts.hostname:
                raise ValueError(f"bad ClickHouse URL {v!r}: no host")
            return v
        raise ValueError(
            f"unknown ClickHouse URL {v!r}: use chdb://PATH or clickhouse://user:password@host:9000/db"
        )

    @model_validator(mode="after")
    def _check_database(self) -> Settings:
        if self.clickhouse_url.startswith("clickhouse"):
            path = urlsplit(self.clickhouse_url).path.strip("/")
            if path and "clickhouse_database" in self.model_fields_set and path != self.clickhouse_database:
                raise ValueError(
                    f"FOODRISK_CLICKHOUSE_URL names database {path!r} but FOODRISK_CLICKHOUSE_DATABASE is "
                    f"{self.clickhouse_database!r}: set one of them"
                )
        return self

    @model_validator(mode="after")
    def _check_sasl(self) -> Settings:
        if self.broker_security_protocol.startswith("SASL") and not self.broker_sasl_username:
            raise ValueError("FOODRISK_BROKER_SASL_USERNAME is required with a SASL security protocol")
        return self

    # -- derived --------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.broker_url == "embedded"

    @property
    def flavor(self) -> BrokerFlavor:
        if self.broker_flavor is not None:
            return self.broker_flavor
        return BrokerFlavor.TANSU if self.embedded else BrokerFlavor.KAFKA

    @property
    def session_timeout_s(self) -> float:
        if self.broker_session_timeout_s is not None:
            return self.broker_session_timeout_s
        return 6.0 if self.flavor is BrokerFlavor.TANSU else 30.0

    def bootstrap_servers(self) -> list[str]:
        """host:port list of a kafka:// URL (not valid for `embedded` before the broker runs)."""
        if self.embedded:
            raise SettingsError("the embedded broker has no address until it is started")
        return [f"{h}:{p}" for h, p in _split_hosts(urlsplit(self.broker_url).netloc, 9092)]

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with some fields changed and validated again."""
        data = self.model_dump()
        data.update(changes)
        return Settings(**data)

    @property
    def database(self) -> str:
        """The ClickHouse database: the URL's path (clickhouse://.../db) if it names one, else
        FOODRISK_CLICKHOUSE_DATABASE."""
        if not self.uses_chdb:
            path = urlsplit(self.clickhouse_url).path.strip("/")
            if path:
                return path
        return self.clickhouse_database

    @property
    def uses_chdb(self) -> bool:
        return self.clickhouse_url.startswith("chdb://")

    @property
    def chdb_path(self) -> Path:
        parts = urlsplit(self.clickhouse_url)
        return Path(parts.netloc + parts.path)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with clear one-line errors instead of a traceback."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts any field here
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            name = f"FOODRISK_{loc.upper()}" if loc else "settings"
            lines.append(f"{name}: {msg}")
        raise SettingsError("; ".join(lines)) from None


# Client options per flavor. Tansu reports a wrong high-water mark when a record batch holds more
# than one record (see the README, "Embedded broker"), so every producer on it sends one record per
# batch; the real-Kafka flavor keeps normal batching, acks=all and the idempotent producer.
def kafka_python_producer_options(settings: Settings) -> dict[str, object]:
    opts: dict[str, object] = {"acks": "all", "linger_ms": 5}
    if settings.flavor is BrokerFlavor.TANSU:
        opts.update(batch_size=1, linger_ms=0)
    else:
        opts.update(enable_idempotence=True)
    opts.update(kafka_python_security_options(settings))
    return opts


def kafka_python_security_options(settings: Settings) -> dict[str, object]:
    opts: dict[str, object] = {"security_protocol": settings.broker_security_protocol}
    if settings.broker_security_protocol.startswith("SASL"):
        opts["sasl_mechanism"] = settings.broker_sasl_mechanism
        opts["sasl_plain_username"] = settings.broker_sasl_username
        if settings.broker_sasl_password is not None:
            opts["sasl_plain_password"] = settings.broker_sasl_password.get_secret_value()
    if settings.broker_ssl_cafile is not None:
        opts["ssl_cafile"] = str(settings.broker_ssl_cafile)
    return opts


def data_path(settings: Settings, *parts: str) -> Path:
    p = settings.data_dir.joinpath(*parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p
