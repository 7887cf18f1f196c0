"""Reference editions: the id of a directory of reference files, and the watch that puts a new
edition in force in a running worker (pipeline/refdata.py), on real directories."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from agents import metrics as metrics_mod
from agents.screening import CurrentReference
from pipeline.refdata import ReferenceWatcher, load_configured_reference
from pipeline.settings import Settings
from schemas.codes import Method
from schemas.reference import (
    DATA_DIR,
    ReferenceDataError,
    default_reference,
    edition_id,
    load_reference,
    reference_edition,
)
from tests.reference_copy import break_line, copy_reference, set_limit

EDITION = re.compile(r"^ref-[0-9a-f]{12}$")
AT = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)

files = st.dictionaries(st.text(min_size=1, max_size=12), st.binary(max_size=40), max_size=5)


@settings(deadline=None, max_examples=200)
@given(files, st.randoms())
def test_edition_id_is_a_function_of_the_set_of_files(contents: dict[str, bytes], rnd: object) -> None:
    items = list(contents.items())
    shuffled = items[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]  # hypothesis' Random
    assert EDITION.match(edition_id(items))
    assert edition_id(items) == edition_id(shuffled)  # the reading order does not matter


@settings(deadline=None, max_examples=200)
@given(files, st.text(min_size=1, max_size=12), st.binary(max_size=40))
def test_any_change_to_the_files_gives_another_id(contents: dict[str, bytes], name: str, data: bytes) -> None:
    before = edition_id(contents.items())
    changed = dict(contents)
    changed[name] = data
    if changed != contents:
        assert edition_id(changed.items()) != before


def test_bytes_do_not_slide_between_name_and_content() -> None:
    assert edition_id([("a", b"bc")]) != edition_id([("ab", b"c")])
    assert edition_id([("a", b""), ("b", b"")]) != edition_id([("a", b"\0\0b\0")])


def test_the_loader_names_the_edition_of_what_it_read(tmp_path: Path) -> None:
    ref = default_reference()
    assert EDITION.match(ref.edition) and ref.edition == reference_edition() == reference_edition(DATA_DIR)
    copy = copy_reference(tmp_path / "ref")
    (copy / "provenance.json").write_text("{}")  # only *.csv files count
    assert load_reference(copy).edition == ref.edition
    lim = ref.limits[0]
    set_limit(copy, lim, lim.limit_mg_kg * 2)
    changed = load_reference(copy)
    assert changed.edition != ref.edition and EDITION.match(changed.edition)
    assert changed.edition == reference_edition(copy)
    # configured cut-offs keep the files' id
    configured = load_configured_reference(Settings(enzyme_positive_pct=40, reference_dir=copy))
    assert configured.edition == changed.edition
    cut = configured.cutoff(Method.enzyme_inhibition, "ache_inhibition")
    assert cut is not None and cut.positive_at == 40


# --- the watch ----------------------------------------------------------------------------------------------


def _watcher(directory: Path, **over: object) -> tuple[ReferenceWatcher, CurrentReference, CollectorRegistry]:
    settings_ = Settings(reference_dir=directory, **over)  # type: ignore[arg-type]  # test overrides
    current = CurrentReference(load_configured_reference(settings_))
    registry = CollectorRegistry()
    return ReferenceWatcher(settings_, current, metrics_mod.create(registry)), current, registry


def _info(registry: CollectorRegistry, edition: str) -> float | None:
    return registry.get_sample_value("foodrisk_reference_edition_info", {"edition": edition})


def _failures(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("foodrisk_reference_reload_failures_total") or 0.0


def test_a_new_edition_is_put_in_force_and_a_broken_one_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = copy_reference(tmp_path / "ref")
    watcher, current, registry = _watcher(directory, enzyme_positive_pct=45)
    first = current.reference
    assert _info(registry, first.edition) == 1
    assert not asyncio.run(watcher.poll())  # nothing changed
    assert current.reference is first

    lim = first.limits[0]
    set_limit(directory, lim, lim.limit_mg_kg / 10)
    with caplog.at_level(logging.INFO, logger="pipeline.refdata"):
        assert asyncio.run(watcher.poll())
    second = current.reference
    assert second.edition == reference_edition(directory) != first.edition
    assert second.limit_in_force(lim.analyte, lim.food, max(AT, lim.starts)) is not None
    assert {(x.analyte, x.food, x.limit_mg_kg) for x in second.limits} - {
        (x.analyte, x.food, x.limit_mg_kg) for x in first.limits
    } == {(lim.analyte, lim.food, lim.limit_mg_kg / 10)}
    cut = second.cutoff(Method.enzyme_inhibition, "ache_inhibition")
    assert cut is not None and cut.positive_at == 45  # the configured cut-off holds for the new data
    assert f"{first.edition} -> {second.edition}" in caplog.text
    assert _info(registry, second.edition) == 1 and _info(registry, first.edition) is None
    assert registry.get_sample_value("foodrisk_reference_reloads_total") == 1

    good = (directory / lim.file).read_text(encoding="utf-8").splitlines()[lim.line - 1]
    bad = good.split(",")
    bad[2] = "not-a-number"
    break_line(directory, lim.file, lim.line, ",".join(bad))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="pipeline.refdata"):
        assert not asyncio.run(watcher.poll())
        assert not asyncio.run(watcher.poll())  # the same broken files: not tried (nor counted) again
    assert current.reference is second  # the old edition stays in force
    assert _failures(registry) == 1
    assert f"{lim.file}:{lim.line}: limit_mg_kg 'not-a-number' is not a number" in caplog.text
    assert f"{second.edition} stays in force" in caplog.text
    assert _info(registry, second.edition) == 1

    break_line(directory, lim.file, lim.line, good)
    set_limit(directory, lim, lim.limit_mg_kg)  # fixed (back to the first values): in force again
    assert asyncio.run(watcher.poll())
    assert current.reference.edition == first.edition


def test_a_missing_file_is_refused_with_its_name(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    directory = copy_reference(tmp_path / "ref")
    watcher, current, registry = _watcher(directory)
    first = current.reference
    (directory / "bans.csv").unlink()
    with caplog.at_level(logging.ERROR, logger="pipeline.refdata"):
        assert not asyncio.run(watcher.poll())
    assert current.reference is first and _failures(registry) == 1
    assert "bans.csv:0: file not found" in caplog.text
    with pytest.raises(ReferenceDataError, match=r"bans\.csv"):
        load_reference(directory)


def test_a_broken_directory_at_start_is_one_line_naming_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    directory = copy_reference(tmp_path / "ref")
    lim = default_reference().limits[0]
    good = (directory / lim.file).read_text(encoding="utf-8").splitlines()[lim.line - 1]
    break_line(directory, lim.file, lim.line, good.replace(",", ",,", 1))  # one cell too many
    monkeypatch.setenv("FOODRISK_REFERENCE_DIR", str(directory))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["screen"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith("foodrisk screen: error: reference data in ") and f"{lim.file}:{lim.line}: " in err
