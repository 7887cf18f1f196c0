from __future__ import annotations

import pytest

from pipeline.refdata import configured_reference
from pipeline.settings import Settings, SettingsError
from schemas.codes import Method
from schemas.reference import default_reference
from schemas.result import parse_result
from schemas.rules import screen
from tests.integration.factories import NOW_FOR_FACTORIES, encode, result


def test_default_cutoffs_unchanged() -> None:
    ref = default_reference()
    assert configured_reference(Settings(), ref) is ref


def test_enzyme_cutoff_is_configurable_to_40_percent() -> None:
    ref = configured_reference(Settings(enzyme_positive_pct=40, enzyme_watch_pct=30), default_reference())
    cut = ref.cutoff(Method.enzyme_inhibition, "ache_inhibition")
    assert cut is not None and cut.positive_at == 40 and cut.watch_from == 30
    r = parse_result(encode(result("c1", value=45.0)), reference=ref, now=NOW_FOR_FACTORIES)
    assert screen(r, ref).verdict == "positive"
    assert screen(r, default_reference()).verdict == "watch"


def test_watch_above_positive_is_a_clear_error() -> None:
    with pytest.raises(SettingsError, match="FOODRISK_ENZYME_WATCH_PCT"):
        configured_reference(Settings(enzyme_positive_pct=40, enzyme_watch_pct=45), default_reference())
