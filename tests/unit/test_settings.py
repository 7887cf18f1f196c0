from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.settings import (
    Settings,
    SettingsError,
    kafka_python_producer_options,
    load_settings,
)


def test_defaults_are_the_embedded_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in list(__import__("os").environ):
        if k.startswith("FOODRISK_"):
            monkeypatch.delenv(k)
    s = Settings()
    assert s.embedded
    assert s.clickhouse_url == "chdb://./var/clickhouse"
    assert s.uses_chdb and str(s.chdb_path) == "var/clickhouse"
    assert s.session_timeout_s == 30.0


def test_one_producer_path_batching_acks_all_idempotent() -> None:
    s = Settings(broker_url="kafka://k1:9092,k2:9093")
    assert s.bootstrap_servers() == ["k1:9092", "k2:9093"]
    opts = kafka_python_producer_options(s)
    assert opts["acks"] == "all"
    assert opts["enable_idempotence"] is True
    assert "batch_size" not in opts
    assert kafka_python_producer_options(Settings()) == opts


def test_env_prefix_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOODRISK_BROKER_URL", "kafka://broker:19092")
    monkeypatch.setenv("FOODRISK_WEB_PORT", "7001")
    s = load_settings()
    assert s.bootstrap_servers() == ["broker:19092"]
    assert s.web_port == 7001


@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("FOODRISK_BROKER_URL", "redis://x:1", "FOODRISK_BROKER_URL: unknown broker URL"),
        ("FOODRISK_BROKER_URL", "kafka://host:notaport", "bad port"),
        ("FOODRISK_CLICKHOUSE_URL", "mysql://x/y", "FOODRISK_CLICKHOUSE_URL: unknown ClickHouse URL"),
        ("FOODRISK_CLICKHOUSE_URL", "chdb://", "needs a path"),
        ("FOODRISK_WEB_PORT", "70000", "FOODRISK_WEB_PORT"),
        ("FOODRISK_BROKER_SESSION_TIMEOUT_S", "0", "FOODRISK_BROKER_SESSION_TIMEOUT_S"),
    ],
)
def test_broken_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    msg = str(info.value)
    assert needle in msg
    assert "\n" not in msg
    assert "Traceback" not in msg


def test_sasl_needs_a_username() -> None:
    with pytest.raises(SettingsError, match="SASL_USERNAME"):
        load_settings(broker_url="kafka://h:1", broker_security_protocol="SASL_SSL")


def test_password_is_masked() -> None:
    s = Settings(broker_url="kafka://h:1", broker_security_protocol="SASL_PLAINTEXT",
                 broker_sasl_username="u", broker_sasl_password="s3cret")
    assert "s3cret" not in repr(s)
    assert "s3cret" not in str(s.model_dump())


def test_agents_are_all_or_a_known_list() -> None:
    assert Settings().agent_set == {"screen", "early", "archive", "deliver"}
    s = Settings(agents=" early , screen ")
    assert s.agents == "screen,early" and s.agent_set == {"screen", "early"}
    with pytest.raises(ValidationError, match="unknown agent 'alerts'"):
        Settings(agents="screen,alerts")


def test_a_worker_registers_only_the_agents_it_was_given(tmp_path: Path) -> None:
    from pipeline.app import build_runtime
    from sinks.clickhouse import Features

    class NoClickHouse:  # building the app must not touch ClickHouse
        database = "foodrisk"
        server_version = (25, 8, 0)
        features = Features.for_version((25, 8, 0))

        def execute(self, sql: str, params: object = None) -> None:
            raise AssertionError(sql)

        query = insert = execute

        def close(self) -> None:
            pass

    def agents(which: str) -> set[str]:
        settings = Settings(broker_url="kafka://127.0.0.1:9", data_dir=tmp_path, agents=which,
                            alertmanager_url="http://127.0.0.1:9")
        rt = build_runtime(settings, ["127.0.0.1:9"], NoClickHouse())  # type: ignore[arg-type]
        return {a.name.rsplit(".", 1)[-1] for a in rt.app.agents.values()}

    everything = agents("all")
    assert {"screen_results", "early_warning"} <= everything and len(everything) >= 5
    assert agents("screen") == {"screen_results"}
    assert agents("early") == {"early_warning"}
    assert agents("archive,deliver") == everything - {"screen_results", "early_warning"}
