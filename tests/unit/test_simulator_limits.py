"""The simulator reads its limits and bans from the screening reference (pipeline/simulator/limits.py)."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipeline.simulator import BANNED_ON_VEGETABLES, CST, VEGETABLES, sim_limit_mg_kg
from pipeline.simulator.catalogue import (
    ANIMAL_QUICK,
    CATEGORY,
    GOLD_PAIRS,
    METAL_PANELS,
    METALS,
    PESTICIDE_PANELS,
    VET_PANELS,
    XRF_PAIRS,
)
from pipeline.simulator.limits import SimLimits, after_last_change
from schemas.reference import default_reference

START = datetime(2026, 11, 27, 6, 0, tzinfo=CST)


def simulated_pairs() -> set[tuple[str, str]]:
    """Every (analyte, commodity) the fleet can draw a concentration or a strip result for."""
    pairs = {(a, c) for c, panel in PESTICIDE_PANELS.items() for a in panel}
    pairs |= {(a, c) for c in VEGETABLES for a in METAL_PANELS["veg"]}
    pairs |= {(a, c) for c, panel in METAL_PANELS.items() if c != "veg" for a in panel}
    pairs |= {(a, c) for c, a, _ in (*GOLD_PAIRS, *XRF_PAIRS)}
    pairs |= {(a, c) for c, panel in VET_PANELS.items() for a in panel}
    pairs |= {(a, c) for c, a, _, _ in ANIMAL_QUICK}
    return pairs


def test_the_simulated_vegetables_are_the_references_vegetables() -> None:
    ref = default_reference()
    assert {c for c in CATEGORY if "vegetables" in ref.ancestors(c)} == VEGETABLES


@pytest.mark.parametrize(("analyte", "commodity"), sorted(simulated_pairs()))
def test_every_simulated_pair_is_either_banned_or_has_a_reference_limit(analyte: str, commodity: str) -> None:
    limits = SimLimits(default_reference(), START)
    assert limits.banned(analyte, commodity) or limits.limit_mg_kg(analyte, commodity) is not None
    if analyte in METALS:
        assert not limits.banned(analyte, commodity)


def test_the_limits_are_the_references_in_force() -> None:
    ref = default_reference()
    limits = SimLimits(ref, START)
    for analyte, commodity in simulated_pairs():
        found = ref.limit_in_force(analyte, commodity, START)
        expected = None if found is None or found[1] else found[0].limit_mg_kg
        assert limits.limit_mg_kg(analyte, commodity) == expected
        assert limits.banned(analyte, commodity) == (ref.ban_in_force(analyte, commodity, START) is not None)
    assert sim_limit_mg_kg("cadmium", "chinese_cabbage") == 0.2  # leafy vegetables (GB 2762), as screening reads it
    assert sim_limit_mg_kg("procymidone", "leek") == 0.2


def test_bans_follow_the_reference_in_time() -> None:
    ref = default_reference()
    before = SimLimits(ref, datetime(2024, 8, 1, tzinfo=CST))
    assert before.banned("phorate", "leek")  # on vegetables since 2002 (announcement 199)
    assert not before.banned("phorate", "rice")  # banned on all foods from 2024-09-01
    assert SimLimits(ref, START).banned("phorate", "rice")
    assert after_last_change(ref) >= START.replace(year=2026, month=6, day=1, hour=0)
    assert {"carbofuran", "omethoate", "methamidophos", "phorate", "isofenphos_methyl", "isocarbophos",
            "chlorpyrifos"} <= BANNED_ON_VEGETABLES  # fmt: skip


def test_a_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimLimits(default_reference(), datetime(2026, 11, 27))  # noqa: DTZ001 - naive on purpose
