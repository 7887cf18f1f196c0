"""The one settings object of foodrisk (environment prefix ``FOODRISK_``).

Every knob is a field here; the README lists them. Sinks and rules never import this module:
the shell reads it once and hands plain values on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import quote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sinks.redact import redact, register_secret

AGENT_GROUPS: tuple[str, ...] = ("screen", "early", "archive", "deliver")


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
        description="`embedded` (start Apache Kafka as a child process) or kafka://host:port[,host:port]",
    )
    broker_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    broker_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    broker_sasl_username: str | None = None
    broker_sasl_password: SecretStr | None = None
    broker_ssl_cafile: Path | None = None
    broker_session_timeout_s: float = Field(30.0, ge=1, le=300, description="consumer group session timeout")

    # -- topics ---------------------------------------------------------------------------------
    app_id: str = Field("foodrisk", description="Faust app id = consumer group id")
    agents: str = Field(
        "all",
        description="agents this worker runs: all, or a comma list of screen, early, archive, deliver "
        "(workers with different lists need different FOODRISK_APP_ID)",
    )
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
    sink_max_age_s: float = Field(0.1, gt=0, le=60, description="or when its oldest row is this old")
    sink_batches_in_flight: int = Field(
        2, ge=1, le=16,
        description="screened batches whose writes may be outstanding at once (the next batch is screened meanwhile)",
    )
    sink_retry_cap_s: float = Field(10.0, gt=0, description="longest wait between two retries")
    max_batch_items: int = Field(
        1000, ge=1, le=100_000, description="most results one message may carry in the batch form (a JSON array)"
    )

    # -- worker ---------------------------------------------------------------------------------
    web_host: str = Field("127.0.0.1", description="bind address of the worker's HTTP server")
    web_port: int = Field(
        6066, ge=1, le=65535,
        description="device port: POST /v1/results, /openapi.json, /docs, /metrics, /healthz, /readyz",
    )
    query_host: str = Field(
        "127.0.0.1", description="bind address of the analyst query port (POST /v1/query); keep it on loopback"
    )
    query_port: int = Field(
        6067, ge=0, le=65535,
        description="analyst query port (0: a free port, written to DATA_DIR/run/query.port)",
    )
    query_concurrency: int = Field(1, ge=1, le=16, description="analyst queries run at once (each its own thread)")
    query_queue: int = Field(
        4, ge=0, le=1000, description="analyst queries waiting for a turn; past that, 429 with Retry-After"
    )
    query_max_threads: int = Field(
        0, ge=0, le=256,
        description="threads one analyst query may use; 0: half the machine's cores (at least 1), so that "
        "queries on the worker's in-process chdb leave CPU to ingest",
    )
    analyst_tokens_file: Path | None = Field(
        None, description="analyst token registry (hashes only); default DATA_DIR/auth/analysts.json"
    )
    analyst_token: SecretStr | None = Field(
        None, description="the token `foodrisk query`/`redlist`/`run` send; default DATA_DIR/auth/local-analyst.token"
    )
    metrics_token: SecretStr | None = Field(
        None, description="operators' bearer token for /metrics on the device port; unset: /metrics is open "
        "to whoever reaches the port (loopback by default)",
    )
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
    reference_dir: Path | None = Field(
        None,
        description="directory of the reference CSV files (foods.csv, pesticide_mrls.csv, ...); default: the "
        "data packaged with foodrisk. A running worker loads a new edition written there (README 'Reference editions')",
    )
    reference_poll_s: float = Field(
        30.0, ge=0, le=86400,
        description="how often a worker looks for a new reference edition in FOODRISK_REFERENCE_DIR; 0: never",
    )

    # -- alert delivery (agents/delivery/; README "Alert delivery") ---------------------------
    alertmanager_url: str | None = Field(
        None, description="one or more Alertmanager base URLs, comma separated (an HA pair: each gets every alert)"
    )
    alertmanager_resend_s: float = Field(
        60.0, gt=0, le=3600, description="firing alerts are re-posted this often; they end 4 periods after the last"
    )
    alertmanager_active_s: float = Field(
        86400.0, gt=0, description="a firing alert with no update for this long stops being re-posted (ends)"
    )
    alertmanager_give_up_s: float = Field(
        900.0, gt=0, description="retry an unreachable Alertmanager this long, then park the alerts in ClickHouse"
    )
    webhook_url: str | None = Field(None, description="signed JSON webhook for chat bots and ticket systems")
    webhook_secret: SecretStr | None = Field(None, description="HMAC-SHA256 key of the webhook signature")
    webhook_give_up_s: float = Field(
        900.0, gt=0, description="retry an unreachable webhook this long, then park the alerts in ClickHouse"
    )
    delivery_timeout_s: float = Field(10.0, gt=0, le=300, description="timeout of one delivery HTTP request")
    grafana_url: str | None = Field(None, description="URL of the Grafana alerts board, linked from every alert")
    runbook_url: str | None = Field(None, description="runbook URL linked from every alert ({kind} or #kind added)")

    @field_validator("agents")
    @classmethod
    def _check_agents(cls, v: str) -> str:
        names = [p.strip() for p in v.split(",") if p.strip()]
        if not names or names == ["all"]:
            return "all"
        unknown = [n for n in names if n not in AGENT_GROUPS]
        if unknown:
            raise ValueError(f"unknown agent {unknown[0]!r}: use all, or a comma list of {', '.join(AGENT_GROUPS)}")
        return ",".join(n for n in AGENT_GROUPS if n in names)

    @property
    def agent_set(self) -> frozenset[str]:
        """The agent groups this worker runs (``AGENT_GROUPS`` when ``agents`` is all)."""
        return frozenset(AGENT_GROUPS if self.agents == "all" else self.agents.split(","))

    @field_validator("alertmanager_url", "webhook_url", "grafana_url", "runbook_url")
    @classmethod
    def _check_http_urls(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parts = [p.strip() for p in v.split(",") if p.strip()]
        for part in parts:
            u = urlsplit(part)
            if u.scheme not in ("http", "https") or not u.hostname:
                raise ValueError(f"bad URL {part!r}: use http(s)://host[:port][/path]")
        return ",".join(parts)

    @model_validator(mode="after")
    def _check_delivery(self) -> Settings:
        if self.webhook_url and "," in self.webhook_url:
            raise ValueError("FOODRISK_WEBHOOK_URL takes one URL")
        if self.webhook_url and not (self.webhook_secret and self.webhook_secret.get_secret_value()):
            raise ValueError("FOODRISK_WEBHOOK_SECRET is required with FOODRISK_WEBHOOK_URL (receivers verify it)")
        if self.alertmanager_url and self.alertmanager_active_s < self.alertmanager_resend_s:
            raise ValueError("FOODRISK_ALERTMANAGER_ACTIVE_S must be at least FOODRISK_ALERTMANAGER_RESEND_S")
        return self

    # -- observability (agents/metrics.py, pipeline/lag.py; README "Observability") ------------
    metrics_lag_interval_s: float = Field(
        10.0, gt=0, le=600, description="how often each worker samples its consumer lag per partition"
    )
    consumer_stall_s: float = Field(
        30.0, ge=0, le=3600,
        description="read a partition again when its commit has not moved for this long with nothing in flight "
        "(0: never)",
    )

    # -- sampling plan (schemas/plan.py, pipeline/plan_cmd.py; README "Sampling plan") ----------
    plan_tests_per_1000: float = Field(
        5.0, gt=0, le=1000, description="tests a year per 1,000 residents: the plan's budget from district populations"
    )
    plan_site_budget: int | None = Field(
        None, ge=1, le=10_000, description="tests per site per day (unset: from the district populations)"
    )
    plan_populations_file: Path | None = Field(
        None, description="district populations CSV (unset: schemas/reference/planning/district_populations.csv)"
    )
    plan_random_share: float = Field(0.2, ge=0, le=1, description="share of the budget sampled uniformly at random")
    plan_priority_share: float = Field(0.1, ge=0, le=1, description="share of a site's budget for priority categories")
    plan_half_life_days: float = Field(
        30.0, gt=0, le=3650, description="recency weighting: a test this many days old weighs half"
    )
    plan_prior_tests: float = Field(20.0, gt=0, le=100_000, description="tests the shrinkage prior is worth")
    plan_lookback_days: int = Field(90, ge=1, le=3650, description="days of history the plan reads")
    plan_max_tests_per_line: int = Field(2, ge=1, le=1000, description="most tests of one risk line")

    # -- early warning (agents/early; README "Early warning") -----------------------------------
    screened_topic: str = Field("foodrisk.screened", description="internal topic of screened batches (1 partition)")
    ew_grace_s: float = Field(3600, ge=0, description="watermark = latest sampled_at seen minus this")
    ew_surge_window_h: int = Field(24, ge=1, le=24 * 14, description="rate-surge window length in hours")
    ew_surge_step_h: int = Field(1, ge=1, le=24, description="rate-surge window step in hours")
    ew_surge_min_n: int = Field(30, ge=1, description="fewest results in a window before it is tested")
    ew_surge_min_positives: int = Field(3, ge=1, description="fewest non-compliant results for a surge")
    ew_surge_alpha: float = Field(
        0.01, gt=0, lt=1, description="family-wise false-alarm level per window step (Bonferroni over keys)"
    )
    ew_baseline_quick: float = Field(0.0015, gt=0, lt=1, description="baseline positive rate of quick tests")
    ew_baseline_lab: float = Field(0.02, gt=0, lt=1, description="baseline non-compliant rate of lab results")
    ew_baseline_enzyme_prone: float = Field(
        0.005, gt=0, lt=1, description="enzyme baseline on foods prone to enzyme false positives (leek, ginger...)"
    )
    ew_cusum_shift: float = Field(3.0, gt=1, description="CUSUM: rate multiple it is tuned to detect")
    ew_cusum_h: float = Field(9.0, gt=0, description="CUSUM decision threshold (log-likelihood units)")
    ew_offender_n: int = Field(3, ge=2, description="non-compliant samples of one vendor that make a repeat offender")
    ew_offender_days: int = Field(30, ge=1, description="... within this many days")
    ew_offender_clean_k: int = Field(5, ge=1, description="clean samples in a row that delist a vendor")
    ew_cluster_window_h: int = Field(48, ge=1, description="supplier cluster: non-compliant at 2+ sites within this")
    ew_cluster_min_sites: int = Field(2, ge=2, description="sites of one supplier that make a cluster")
    ew_unconfirmed_h: float = Field(48, gt=0, description="hours a quick positive may wait for its lab confirmation")
    ew_silent_min_h: float = Field(2, gt=0, description="device silent this many hours in its usual hours")
    ew_silent_min_peer_results: int = Field(5, ge=1, description="... while its site's peers sent this many")
    ew_drift_alpha: float = Field(1e-4, gt=0, lt=1, description="device drift: binomial p-value threshold")
    ew_drift_min_positives: int = Field(3, ge=1, description="fewest positives of one device in a day for drift")
    ew_batch_max_age_s: float = Field(
        1.0, gt=0, le=60,
        description="the early-warning agent gathers screened batches this long (its table writes are per batch)",
    )
    ew_table_shards: int | None = Field(
        None, ge=1, le=4096,
        description="deprecated, ignored (issue 21): the early-warning tables hold one key per detector key; "
        "state stored in shards is unfolded at the first batch",
    )

    # -- deployment and scale-out (deploy/, README "Running in production") ----------------------
    clickhouse_cluster: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="ClickHouse cluster name (remote_servers): migrations run ON CLUSTER and create "
        "Replicated*MergeTree tables behind Distributed ones; unset for a single server",
    )
    topic_min_insync_replicas: int | None = Field(
        None, ge=1, le=16, description="min.insync.replicas of the topics foodrisk creates on real Kafka; "
        "default FOODRISK_TOPIC_REPLICATION - 1 (at least 1)",
    )

    # -- ingest (pipeline/ingest/views.py, pipeline/ingest/importer.py; README "Ingest") -------
    ingest_tokens_file: Path | None = Field(
        None, description="device token registry (hashes only); default DATA_DIR/ingest/devices.json"
    )
    ingest_max_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="largest POST /v1/results body in bytes (else 413)"
    )
    ingest_max_items: int = Field(1000, ge=1, le=100_000, description="most results in one POST (else 413)")
    ingest_rate_per_s: float = Field(
        100.0, gt=0, description="per-device rate limit: results per second, sustained (token bucket)"
    )
    ingest_burst: int = Field(
        2000, ge=1, description="per-device rate limit: bucket size in results (at least FOODRISK_INGEST_MAX_ITEMS)"
    )

    @model_validator(mode="after")
    def _check_ingest(self) -> Settings:
        if self.ingest_burst < self.ingest_max_items:
            raise ValueError(
                f"FOODRISK_INGEST_BURST ({self.ingest_burst}) must be at least FOODRISK_INGEST_MAX_ITEMS "
                f"({self.ingest_max_items}), or a full batch could never pass the rate limit"
            )
        return self

    @property
    def ingest_tokens_path(self) -> Path:
        return self.ingest_tokens_file or self.data_dir / "ingest" / "devices.json"

    @property
    def analyst_tokens_path(self) -> Path:
        return self.analyst_tokens_file or self.data_dir / "auth" / "analysts.json"

    @property
    def local_analyst_token_path(self) -> Path:
        """Where the worker writes the local analyst token at start (mode 0600)."""
        return self.data_dir / "auth" / "local-analyst.token"

    @property
    def query_port_file(self) -> Path:
        """Where the worker writes the query port it bound (useful with FOODRISK_QUERY_PORT=0)."""
        return self.data_dir / "run" / "query.port"

    @model_validator(mode="after")
    def _check_ports(self) -> Settings:
        if self.query_port and self.query_port == self.web_port:
            raise ValueError(
                f"FOODRISK_QUERY_PORT ({self.query_port}) must differ from FOODRISK_WEB_PORT: analyst queries "
                "have their own port, apart from the one devices post to"
            )
        return self

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

    @model_validator(mode="after")
    def _check_scale_out(self) -> Settings:
        if self.clickhouse_cluster and self.clickhouse_url.startswith("chdb://"):
            raise ValueError(
                "FOODRISK_CLICKHOUSE_CLUSTER needs a ClickHouse server (clickhouse://...), not chdb: "
                "unset it or point FOODRISK_CLICKHOUSE_URL at a cluster node"
            )
        if self.topic_min_insync_replicas is not None and self.topic_min_insync_replicas > self.topic_replication:
            raise ValueError(
                f"FOODRISK_TOPIC_MIN_INSYNC_REPLICAS ({self.topic_min_insync_replicas}) must not exceed "
                f"FOODRISK_TOPIC_REPLICATION ({self.topic_replication}), or no write could ever succeed"
            )
        return self

    # -- derived --------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.broker_url == "embedded"

    @property
    def min_insync_replicas(self) -> int:
        """min.insync.replicas of created topics: set, else one less than the replication (>= 1),
        so with replication 3 a write is acknowledged by 2 replicas and one broker may be down."""
        if self.topic_min_insync_replicas is not None:
            return self.topic_min_insync_replicas
        return max(1, self.topic_replication - 1)

    @property
    def session_timeout_s(self) -> float:
        return self.broker_session_timeout_s

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
    """Settings from the environment, with clear one-line errors instead of a traceback.

    The secrets of the settings are registered with the redaction helper (:mod:`sinks.redact`),
    so no later log line or error shows them; an error about a setting is redacted too (a
    malformed URL is named without its password).
    """
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]  # pydantic-settings accepts any field here
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            msg = str(err["msg"]).removeprefix("Value error, ")
            name = f"FOODRISK_{loc.upper()}" if loc else "settings"
            lines.append(f"{name}: {msg}")
        raise SettingsError(redact("; ".join(lines))) from None
    for value in secrets_of(settings):
        register_secret(value)
    return settings


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings carry: passwords, keys, and URL parts that grant access."""
    out = [s.get_secret_value() for s in (settings.broker_sasl_password, settings.webhook_secret,
                                          settings.analyst_token, settings.metrics_token) if s is not None]
    urls = [settings.clickhouse_url, *(settings.alertmanager_url or "").split(",")]
    for url in urls:
        try:
            password = urlsplit(url.strip()).password
        except ValueError:
            continue
        if password:
            out.append(password)
            out.append(quote(password, safe=""))
    if settings.webhook_url:
        # Chat webhooks carry their token in the path or the query: the whole URL is a secret
        # (logs show sinks.alertmanager.safe_url's scheme://host/… form).
        parts = urlsplit(settings.webhook_url)
        out.extend(piece for piece in (parts.path.strip("/"), parts.query) if len(piece) >= 8)
    return [v for v in out if v]


def kafka_python_producer_options(settings: Settings) -> dict[str, object]:
    """kafka-python producer options: acks=all, idempotent, normal batching."""
    opts: dict[str, object] = {"acks": "all", "linger_ms": 5, "enable_idempotence": True}
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
