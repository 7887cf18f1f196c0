"""Client side of the query port: where a worker's query port is and which analyst token to send
(used by `foodrisk query`, `foodrisk redlist` and `foodrisk run`)."""

from __future__ import annotations

from pipeline.devices import read_analyst_token
from pipeline.settings import Settings

_ANY_ADDRESS = {"0.0.0.0", "::", ""}  # noqa: S104 - recognized, not bound


def query_address(settings: Settings) -> tuple[str, int] | None:
    """(host, port) of the worker's query port: FOODRISK_QUERY_HOST/PORT, or with port 0 the port
    the worker wrote to DATA_DIR/run/query.port; None when that file is absent (no worker)."""
    host = "127.0.0.1" if settings.query_host in _ANY_ADDRESS else settings.query_host
    if settings.query_port:
        return host, settings.query_port
    try:
        return host, int(settings.query_port_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None


def analyst_token(settings: Settings) -> str | None:
    """FOODRISK_ANALYST_TOKEN, else the token the local worker wrote, else None."""
    env = settings.analyst_token.get_secret_value() if settings.analyst_token is not None else None
    return read_analyst_token(env, settings.local_analyst_token_path)


def no_token_hint(settings: Settings) -> str:
    return (f"no analyst token: set FOODRISK_ANALYST_TOKEN (from `foodrisk analysts add NAME`), or run this "
            f"with the worker's FOODRISK_DATA_DIR (it writes {settings.local_analyst_token_path} at start)")
