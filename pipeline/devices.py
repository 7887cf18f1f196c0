"""Device tokens for HTTP ingest: a small JSON registry that stores only SHA-256 hashes of tokens.

A token is ``frk_<id>_<secret>``: a public 8-hex-digit id and 43 URL-safe characters (32 random
bytes). ``foodrisk devices add`` prints it once; the registry keeps the id and ``sha256(token)``
with the device id, so a leaked registry file does not leak usable tokens. A request's token is
looked up by its id and its hash compared in constant time (``hmac.compare_digest``). The worker
re-reads the file when it changes (checked at most once a second), so ``add`` and ``revoke`` take
effect on a running worker without a restart.

File format (``FOODRISK_INGEST_TOKENS_FILE``, default ``DATA_DIR/ingest/devices.json``)::

    {"version": 1, "devices": {"lab-07": {"token_id": "9f2c01ab", "token_sha256": "<hex>",
                                         "created_at": "...", "revoked_at": null, "note": "..."}}}
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

TOKEN_PREFIX = "frk_"  # noqa: S105 - a prefix, not a secret
_VERSION = 1


class RegistryError(ValueError):
    """The registry file or a requested change cannot work; the message says what to do."""


@dataclass(frozen=True)
class DeviceEntry:
    device_id: str
    token_id: str
    token_sha256: str
    created_at: str
    revoked_at: str | None = None
    note: str = ""

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def new_token() -> str:
    return f"{TOKEN_PREFIX}{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


def token_id_of(token: str) -> str | None:
    """The public id part of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    tid, sep, secret = token[len(TOKEN_PREFIX):].partition("_")
    if not sep or len(tid) != 8 or not secret:
        return None
    return tid


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def load_entries(path: Path) -> dict[str, DeviceEntry]:
    """Device id -> entry; an absent file is an empty registry."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise RegistryError(f"cannot read the device registry {path}: {exc}") from None
    try:
        doc = orjson.loads(raw)
        devices = _devices_of(doc)
        return {
            dev: DeviceEntry(
                device_id=dev,
                token_id=str(e["token_id"]),
                token_sha256=str(e["token_sha256"]),
                created_at=str(e.get("created_at", "")),
                revoked_at=e.get("revoked_at"),
                note=str(e.get("note", "")),
            )
            for dev, e in devices.items()
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise RegistryError(
            f"device registry {path} is not a foodrisk registry ({exc}): fix or remove it, then re-add the devices"
        ) from None


def _devices_of(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("version") != _VERSION or not isinstance(doc.get("devices"), dict):
        raise TypeError(f"expected {{'version': {_VERSION}, 'devices': {{...}}}}")
    devices: dict[str, Any] = doc["devices"]
    return devices


def _save(path: Path, entries: dict[str, DeviceEntry]) -> None:
    doc: dict[str, Any] = {
        "version": _VERSION,
        "devices": {
            e.device_id: {
                "token_id": e.token_id,
                "token_sha256": e.token_sha256,
                "created_at": e.created_at,
                "revoked_at": e.revoked_at,
                "note": e.note,
            }
            for e in sorted(entries.values(), key=lambda e: e.device_id)
        },
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[dict[str, DeviceEntry]]:
    """The entries, under an exclusive lock, saved on a clean exit (one writer at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = path.with_name(path.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            entries = load_entries(path)
            yield entries
            _save(path, entries)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def add_device(path: Path, device_id: str, *, replace: bool = False, note: str = "") -> str:
    """Register ``device_id`` and return its new token (shown once, never stored)."""
    device_id = device_id.strip()
    if not device_id or len(device_id) > 128:
        raise RegistryError("a device id is 1 to 128 characters (the device_id its results carry)")
    with _locked(path) as entries:
        old = entries.get(device_id)
        if old is not None and old.active and not replace:
            raise RegistryError(
                f"device {device_id!r} already has an active token: `foodrisk devices add {device_id} --replace` "
                "issues a new one (the old one stops working)"
            )
        token = new_token()
        tid = token_id_of(token)
        assert tid is not None  # noqa: S101 - new_token() makes well-formed tokens
        entries[device_id] = DeviceEntry(device_id, tid, token_hash(token), _now_iso(), None, note)
    return token


def revoke_device(path: Path, device_id: str) -> DeviceEntry:
    with _locked(path) as entries:
        old = entries.get(device_id)
        if old is None:
            raise RegistryError(f"no device {device_id!r} in {path}: `foodrisk devices list` shows the registered ones")
        if not old.active:
            return old
        entries[device_id] = DeviceEntry(
            device_id, old.token_id, old.token_sha256, old.created_at, _now_iso(), old.note
        )
        return entries[device_id]


class TokenRegistry:
    """The worker's view of the registry: token -> device id, reloaded when the file changes."""

    def __init__(self, path: Path, *, check_every_s: float = 1.0) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._checked_at = float("-inf")
        self._stamp: tuple[int, int, int] | None = None
        self._by_id: dict[str, tuple[bytes, str]] = {}  # token id -> (sha256 digest, device id)
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
            entries = load_entries(self.path)
        except RegistryError as exc:
            self.error = str(exc)  # keep the last good tokens; /readyz and the 401 body say why
            return
        self._by_id = {
            e.token_id: (bytes.fromhex(e.token_sha256), e.device_id) for e in entries.values() if e.active
        }
        self._stamp = stamp
        self.error = None

    @property
    def empty(self) -> bool:
        self._refresh()
        return not self._by_id

    def device_for(self, token: str) -> str | None:
        """The device of an active token, else None."""
        self._refresh()
        tid = token_id_of(token)
        entry = self._by_id.get(tid) if tid is not None else None
        if entry is None:
            return None
        stored, device = entry
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        return device if hmac.compare_digest(stored, digest) else None


def main_devices(args: Any, settings: Any) -> int:
    """The `foodrisk devices add|list|revoke` command (called from pipeline.cli)."""
    path: Path = settings.ingest_tokens_path
    out = sys.stdout
    if args.devices_command == "add":
        token = add_device(path, args.device_id, replace=args.replace, note=args.note)
        out.write(f"{token}\n")
        sys.stderr.write(
            f"device {args.device_id} registered in {path}. The token above is shown only this once: give it to "
            "the device (HTTP header `Authorization: Bearer TOKEN`).\n"
        )
        return 0
    if args.devices_command == "revoke":
        entry = revoke_device(path, args.device_id)
        out.write(f"device {entry.device_id} revoked at {entry.revoked_at}\n")
        return 0
    entries = sorted(load_entries(path).values(), key=lambda e: e.device_id)
    if not entries:
        sys.stderr.write(f"no devices in {path}: `foodrisk devices add DEVICE_ID` registers one\n")
        return 0
    width = max(len("device"), *(len(e.device_id) for e in entries))
    out.write(f"{'device':<{width}}  {'status':<8}  {'token id':<8}  {'created':<25}  {'revoked':<25}  note\n")
    for e in entries:
        status = "active" if e.active else "revoked"
        out.write(f"{e.device_id:<{width}}  {status:<8}  {e.token_id:<8}  {e.created_at:<25}  "
                  f"{e.revoked_at or '-':<25}  {e.note}\n")
    return 0
