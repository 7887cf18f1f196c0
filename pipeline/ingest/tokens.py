"""Bearer tokens of the worker's HTTP endpoints: one small JSON registry per kind that stores only
SHA-256 hashes of tokens.

Two kinds share this code: **device** tokens (``frk_``) for ``POST /v1/results`` on the device
port, managed with ``foodrisk devices``, and **analyst** tokens (``fra_``) for ``POST /v1/query``
on the query port, managed with ``foodrisk analysts``. A token of one kind is never accepted where
the other is expected (the prefix differs and each endpoint reads its own registry).

A token is ``<prefix><id>_<secret>``: a public id of 16 hex digits (64 bits; tokens issued before
were 8 hex digits and still work) and 43 URL-safe characters (32 random bytes). ``add`` prints it
once; the registry keeps the id and ``sha256(token)`` with the name, so a leaked registry file does
not leak usable tokens. A new id that collides with one already in the registry is drawn again. A
request's token is looked up by its id and its hash compared in constant time
(``hmac.compare_digest``). The worker re-reads the file when it changes (checked at most once a
second), so ``add`` and ``revoke`` take effect on a running worker without a restart.

A device may be bound to a site (``foodrisk devices add ID --site S``): ingest then refuses a result
of that device naming another ``site.id``. Unbound devices may name any site.

File format (``FOODRISK_INGEST_TOKENS_FILE``, default ``DATA_DIR/ingest/devices.json``; analysts:
``FOODRISK_ANALYST_TOKENS_FILE``, default ``DATA_DIR/auth/analysts.json``, key ``analysts``)::

    {"version": 1, "devices": {"lab-07": {"token_id": "9f2c01ab5e6d7f80", "token_sha256": "<hex>",
                                         "created_at": "...", "revoked_at": null, "note": "...",
                                         "site": "gz-th-lab1"}}}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import string
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

_VERSION = 1
_ID_HEX = 16  # hex digits of a new token id (64 bits)
_LEGACY_ID_HEX = 8  # ids of tokens issued before: still accepted
_HEX = frozenset(string.hexdigits.lower())


class RegistryError(ValueError):
    """The registry file or a requested change cannot work; the message says what to do."""


@dataclass(frozen=True)
class TokenKind:
    """One kind of token: its prefix, the registry's collection key and the command managing it."""

    noun: str  # "device", "analyst"
    prefix: str  # "frk_", "fra_"
    command: str  # "foodrisk devices"

    @property
    def key(self) -> str:
        return self.noun + "s"


DEVICES = TokenKind("device", "frk_", "foodrisk devices")
ANALYSTS = TokenKind("analyst", "fra_", "foodrisk analysts")
TOKEN_PREFIX = DEVICES.prefix
ANALYST_PREFIX = ANALYSTS.prefix
LOCAL_ANALYST = "local"  # the name the worker registers its local analyst token under


@dataclass(frozen=True)
class TokenEntry:
    name: str
    token_id: str
    token_sha256: str
    created_at: str
    revoked_at: str | None = None
    note: str = ""
    site: str | None = None  # devices only: the one site.id its results may name

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    @property
    def device_id(self) -> str:
        return self.name


DeviceEntry = TokenEntry


def new_token(kind: TokenKind = DEVICES) -> str:
    return f"{kind.prefix}{secrets.token_hex(_ID_HEX // 2)}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str, kind: TokenKind = DEVICES) -> str | None:
    """The public id part of a well-formed token of ``kind``, else None."""
    if not token.startswith(kind.prefix):
        return None
    tid, sep, secret = token[len(kind.prefix):].partition("_")
    if not sep or not secret or len(tid) not in (_ID_HEX, _LEGACY_ID_HEX) or not set(tid) <= _HEX:
        return None
    return tid


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None (every port's one parser)."""
    scheme, _, token = headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def load_entries(path: Path, kind: TokenKind = DEVICES) -> dict[str, TokenEntry]:
    """Name -> entry; an absent file is an empty registry."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryError(f"cannot read the {kind.noun} registry {path}: {exc}") from None
    try:
        collection = _collection_of(orjson.loads(raw), kind)
        return {
            name: TokenEntry(
                name=name,
                token_id=str(e["token_id"]),
                token_sha256=str(e["token_sha256"]),
                created_at=str(e.get("created_at", "")),
                revoked_at=e.get("revoked_at"),
                note=str(e.get("note", "")),
                site=str(e["site"]) if e.get("site") else None,
            )
            for name, e in collection.items()
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(
            f"{kind.noun} registry {path} is not a foodrisk registry ({exc}): fix or remove it, then re-add "
            f"the {kind.key}"
        ) from None


def _collection_of(doc: Any, kind: TokenKind) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("version") != _VERSION or not isinstance(doc.get(kind.key), dict):
        raise TypeError(f"expected {{'version': {_VERSION}, '{kind.key}': {{...}}}}")
    collection: dict[str, Any] = doc[kind.key]
    return collection


def _save(path: Path, entries: dict[str, TokenEntry], kind: TokenKind) -> None:
    doc: dict[str, Any] = {
        "version": _VERSION,
        kind.key: {
            e.name: {
                "token_id": e.token_id,
                "token_sha256": e.token_sha256,
                "created_at": e.created_at,
                "revoked_at": e.revoked_at,
                "note": e.note,
                **({"site": e.site} if e.site else {}),
            }
            for e in sorted(entries.values(), key=lambda e: e.name)
        },
    }
    write_private(path, orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, atomically (readers see the old file or the new one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path, kind: TokenKind) -> Iterator[dict[str, TokenEntry]]:
    """The entries, under an exclusive lock, saved on a clean exit (one writer at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            entries = load_entries(path, kind)
            yield entries
            _save(path, entries, kind)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _draw_token(kind: TokenKind, taken: set[str]) -> tuple[str, str]:
    """A new token whose id is not ``taken`` (drawn again on a collision)."""
    while True:
        token = new_token(kind)
        tid = token_id_of(token, kind)
        assert tid is not None  # noqa: S101 - new_token() makes well-formed tokens
        if tid not in taken:
            return token, tid


def add_token(
    path: Path, kind: TokenKind, name: str, *, replace_active: bool = False, note: str = "", site: str | None = None
) -> str:
    """Register ``name`` and return its new token (shown once, never stored). With ``replace_active``
    an active token is replaced (it stops working); a device keeps its site unless ``site`` is given."""
    name = name.strip()
    if not name or len(name) > 128:
        raise RegistryError(f"a {kind.noun} name is 1 to 128 characters")
    if site is not None and not (0 < len(site.strip()) <= 128):
        raise RegistryError("a site id is 1 to 128 characters (the site.id the device's results carry)")
    with _locked(path, kind) as entries:
        old = entries.get(name)
        if old is not None and old.active and not replace_active:
            raise RegistryError(
                f"{kind.noun} {name!r} already has an active token: `{kind.command} add {name} --replace` "
                "issues a new one (the old one stops working)"
            )
        token, tid = _draw_token(kind, {e.token_id for e in entries.values()})
        kept_site = site.strip() if site is not None else (old.site if old is not None else None)
        entries[name] = TokenEntry(name, tid, token_hash(token), _now_iso(), None, note, kept_site)
    return token


def revoke_token(path: Path, kind: TokenKind, name: str) -> TokenEntry:
    with _locked(path, kind) as entries:
        old = entries.get(name)
        if old is None:
            raise RegistryError(f"no {kind.noun} {name!r} in {path}: `{kind.command} list` shows the registered ones")
        if not old.active:
            return old
        entries[name] = replace(old, revoked_at=_now_iso())
        return entries[name]


def add_device(path: Path, device_id: str, *, replace: bool = False, note: str = "", site: str | None = None) -> str:
    """Register ``device_id`` and return its new token (shown once, never stored)."""
    return add_token(path, DEVICES, device_id, replace_active=replace, note=note, site=site)


def revoke_device(path: Path, device_id: str) -> TokenEntry:
    return revoke_token(path, DEVICES, device_id)


class TokenRegistry:
    """The worker's view of one registry: token -> entry, reloaded when the file changes."""

    def __init__(self, path: Path, *, kind: TokenKind = DEVICES, check_every_s: float = 1.0) -> None:
        self.path = path
        self.kind = kind
        self._check_every_s = check_every_s
        self._checked_at = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        # token id -> [(sha256 digest, entry)]: a list, as two old 8-hex ids may collide
        self._by_id: dict[str, list[tuple[bytes, TokenEntry]]] = {}
        self.error: str | None = None

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self._check_every_s:
            return
        self._checked_at = now
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        try:
            entries = load_entries(self.path, self.kind)
        except RegistryError as exc:
            self.error = str(exc)  # keep the last good tokens; /readyz and the 401 body say why
            return
        by_id: dict[str, list[tuple[bytes, TokenEntry]]] = {}
        for e in entries.values():
            if e.active:
                by_id.setdefault(e.token_id, []).append((bytes.fromhex(e.token_sha256), e))
        self._by_id = by_id
        self._stamp = stamp
        self.error = None

    @property
    def empty(self) -> bool:
        self._refresh()
        return not self._by_id

    def entry_for(self, token: str) -> TokenEntry | None:
        """The entry of an active token, else None."""
        self._refresh()
        tid = token_id_of(token, self.kind)
        candidates = self._by_id.get(tid, []) if tid is not None else []
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for stored, entry in candidates:
            if hmac.compare_digest(stored, digest):
                found = entry
        return found

    def device_for(self, token: str) -> str | None:
        """The name (device id, analyst) of an active token, else None."""
        entry = self.entry_for(token)
        return entry.name if entry is not None else None


# -- the local analyst token -------------------------------------------------------------------------


def write_local_analyst_token(registry: Path, token_file: Path) -> None:
    """Register a fresh analyst token as ``local`` (replacing the previous one) and write it to
    ``token_file`` (mode 0600), for `foodrisk query`, `foodrisk redlist` and `foodrisk run` on this host."""
    token = add_token(registry, ANALYSTS, LOCAL_ANALYST, replace_active=True,
                      note="written by the worker at start to " + str(token_file))
    token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(token_file, token.encode() + b"\n")


def read_analyst_token(env_token: str | None, token_file: Path) -> str | None:
    """FOODRISK_ANALYST_TOKEN, else the local token file, else None."""
    if env_token and env_token.strip():
        return env_token.strip()
    try:
        text = token_file.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return text or None


# -- the commands ------------------------------------------------------------------------------------


def main_tokens(kind: TokenKind, path: Path, args: Any) -> int:
    """`foodrisk devices|analysts add|list|revoke` (called from pipeline.cli)."""
    out = sys.stdout
    action = getattr(args, "tokens_command", None)
    name = str(getattr(args, "name", ""))
    if action == "add":
        site = getattr(args, "site", None)
        token = add_token(path, kind, name, replace_active=getattr(args, "replace", False), note=args.note,
                          site=site)
        out.write(f"{token}\n")
        bound = f", bound to site {site}" if site else ""
        sys.stderr.write(
            f"{kind.noun} {name} registered in {path}{bound}. The token above is shown only this once: give it "
            f"to the {kind.noun} (HTTP header `Authorization: Bearer TOKEN`).\n"
        )
        return 0
    if action == "revoke":
        entry = revoke_token(path, kind, name)
        out.write(f"{kind.noun} {entry.name} revoked at {entry.revoked_at}\n")
        return 0
    entries = sorted(load_entries(path, kind).values(), key=lambda e: e.name)
    if not entries:
        sys.stderr.write(f"no {kind.key} in {path}: `{kind.command} add NAME` registers one\n")
        return 0
    width = max(len(kind.noun), *(len(e.name) for e in entries))
    site_col = kind is DEVICES
    head = f"{kind.noun:<{width}}  {'status':<8}  {'token id':<16}  {'created':<25}  {'revoked':<25}  "
    out.write(head + ("site  " if site_col else "") + "note\n")
    for e in entries:
        status = "active" if e.active else "revoked"
        line = f"{e.name:<{width}}  {status:<8}  {e.token_id:<16}  {e.created_at:<25}  {e.revoked_at or '-':<25}  "
        out.write(line + (f"{e.site or '-'}  " if site_col else "") + f"{e.note}\n")
    return 0


def main_devices(args: Any, settings: Any) -> int:
    return main_tokens(DEVICES, settings.ingest_tokens_path, args)


def main_analysts(args: Any, settings: Any) -> int:
    return main_tokens(ANALYSTS, settings.analyst_tokens_path, args)
