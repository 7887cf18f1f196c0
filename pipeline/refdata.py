"""The reference data as configured: the files of FOODRISK_REFERENCE_DIR (default: the packaged data)
with the configured quick-test cut-offs, and the watch that puts a new edition in force in a running
worker (README "Reference editions").

Every ``FOODRISK_REFERENCE_POLL_S`` seconds the worker computes the edition id of the directory's
``*.csv`` files (a hash over names and bytes, in a thread: the event loop never reads files). When it
differs from the edition in force, the new files are loaded and checked in a thread too, the
configured cut-offs applied, and the screening agent's :class:`~agents.screening.CurrentReference`
replaced on the event loop: the next batch is screened with the new edition, the batch in hand ends
with the old one. A directory that does not load (a missing file, a broken row) is refused with its
file, line and reason in the log and ``foodrisk_reference_reload_failures_total``; the edition in
force stays, and the same broken edition is not tried again (a fix gives the files another id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from agents.metrics import Metrics
from agents.screening import CurrentReference
from pipeline.settings import Settings, SettingsError
from schemas.codes import Method
from schemas.reference import DATA_DIR, Reference, ReferenceDataError, default_reference, load_reference
from schemas.reference import reference_edition as edition_of

log = logging.getLogger(__name__)

ENZYME_SCREEN = "ache_inhibition"


def configured_reference(settings: Settings, reference: Reference) -> Reference:
    """The reference data with the configured quick-test cut-offs applied."""
    if settings.enzyme_positive_pct is None and settings.enzyme_watch_pct is None:
        return reference
    current = reference.cutoff(Method.enzyme_inhibition, ENZYME_SCREEN)
    if current is None:
        raise SettingsError("the reference data has no enzyme-inhibition cut-off to configure")
    positive = settings.enzyme_positive_pct if settings.enzyme_positive_pct is not None else current.positive_at
    watch = settings.enzyme_watch_pct if settings.enzyme_watch_pct is not None else current.watch_from
    if watch > positive:
        raise SettingsError(
            f"FOODRISK_ENZYME_WATCH_PCT ({watch}) must not be above FOODRISK_ENZYME_POSITIVE_PCT ({positive})"
        )
    return reference.with_cutoff(Method.enzyme_inhibition, ENZYME_SCREEN, positive_at=positive, watch_from=watch)


def reference_directory(settings: Settings) -> Path:
    """Where the reference files are read from: FOODRISK_REFERENCE_DIR, else the packaged data."""
    return settings.reference_dir if settings.reference_dir is not None else DATA_DIR


def _load(settings: Settings, directory: Path) -> Reference:
    """The reference of ``directory`` with the configured cut-offs. Raises :class:`ReferenceDataError`
    (``file:line: reason``) or :class:`SettingsError` (the cut-offs do not fit the data)."""
    return configured_reference(settings, load_reference(directory))


def load_configured_reference(settings: Settings, directory: Path | None = None) -> Reference:
    """The reference of ``directory`` (default: :func:`reference_directory`), loaded and checked, with
    the configured cut-offs; a directory that does not load is a :class:`SettingsError` naming it and
    the file, line and reason (one line, as every setting error)."""
    if directory is None and settings.reference_dir is None:
        return configured_reference(settings, default_reference())
    where = directory or reference_directory(settings)
    try:
        return _load(settings, where)
    except ReferenceDataError as exc:
        raise SettingsError(f"reference data in {where}: {exc}") from None


class ReferenceWatcher:
    """Polls the reference directory and swaps a new, valid edition into ``current``."""

    def __init__(self, settings: Settings, current: CurrentReference, metrics: Metrics) -> None:
        self._settings = settings
        self._directory = reference_directory(settings)
        self._current = current
        self._metrics = metrics
        self._refused = ""  # the edition id last refused: not tried again until the files change
        self._unreadable = False  # the directory could not be read at the last look (logged once)
        metrics.reference_edition_info.labels(current.reference.edition).set(1)

    @property
    def directory(self) -> Path:
        return self._directory

    async def poll(self) -> bool:
        """Look once; True when a new edition was put in force."""
        loop = asyncio.get_running_loop()
        old = self._current.reference
        try:
            edition = await loop.run_in_executor(None, edition_of, self._directory)
        except ReferenceDataError as exc:
            if not self._unreadable:
                self._unreadable = True
                self._refuse("(unreadable)", exc)
            return False
        self._unreadable = False
        if edition in (old.edition, self._refused):
            return False
        try:
            new = await loop.run_in_executor(None, _load, self._settings, self._directory)
        except (ReferenceDataError, SettingsError) as exc:
            self._refused = edition
            return self._refuse(edition, exc)
        if new.edition == old.edition:  # written back as it was, in the meantime
            return False
        self._current.reference = new  # on the event loop, between two batches of the agent
        self._refused = ""
        self._metrics.reference_edition_info.labels(new.edition).set(1)
        with contextlib.suppress(KeyError):
            self._metrics.reference_edition_info.remove(old.edition)
        self._metrics.reference_reloads.inc()
        log.info("reference edition %s -> %s in force (%s: %d foods, %d analytes, %d limits, %d bans)",
                 old.edition or "-", new.edition, self._directory, len(new.foods), len(new.analytes),
                 len(new.limits), len(new.bans))
        return True

    def _refuse(self, what: str, exc: Exception) -> bool:
        # a ReferenceDataError reads "file:line: reason", the file named within the directory
        log.error("reference edition %s in %s refused, %s stays in force: %s", what, self._directory,
                  self._current.reference.edition or "-", exc)
        self._metrics.reference_reload_failures.inc()
        return False


def register_reference_watch(
    app: Any, settings: Settings, current: CurrentReference, metrics: Metrics
) -> ReferenceWatcher:
    """The watcher, and (unless FOODRISK_REFERENCE_POLL_S is 0) a timer on ``app`` that polls it."""
    watcher = ReferenceWatcher(settings, current, metrics)
    if settings.reference_poll_s <= 0:
        return watcher

    async def watch_reference_edition() -> None:
        try:
            await watcher.poll()
        except Exception:  # a failed look must never stop the worker; the next one tries again
            log.exception("reference edition not checked")

    app.timer(interval=settings.reference_poll_s, name="foodrisk_reference_edition")(watch_reference_edition)
    return watcher
