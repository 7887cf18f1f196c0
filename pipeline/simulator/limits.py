"""The limits and bans the simulator shapes its values against, read from the screening reference
(``schemas/reference``: the same :class:`~schemas.reference.Reference` the screening agent judges by,
so the simulator keeps no copy of the limit tables).

A concentration is drawn relative to its limit (:func:`pipeline.simulator.readings.quantity`): an
exceedance is a multiple of the limit, a detection below it is skewed towards the LOD. For a banned
pesticide the LOQ is what counts: detection at or above it is the violation. So the share of
non-compliant results is set by the mixes in ``catalogue.py`` whichever limit applies, and the values
are the ones screening reads against.

Only the analyte's own limit counts, looked up the way ``screen`` does (the food itself, then its
groups, the edition in force at the instant asked for). A total measured against its regulated
species' limit (total mercury on fish) would be a call for speciation, not a limit, and the fleet
does not generate those pairs. A pair without a limit gets None, and the generator then draws on a
scale of 1 mg/kg: only banned pesticides without an MRL come to that, and for them only the LOQ matters.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Final

from schemas.reference import ALL_FOODS, CHINA_TZ, Reference, default_reference

VEGETABLES_GROUP: Final = "vegetables"
"""The reference's root group of fresh vegetables."""


class SimLimits:
    """The reference's limits and bans in force at one instant, as the generator asks for them."""

    __slots__ = ("_at", "_bans", "_limits", "_reference")

    def __init__(self, reference: Reference, at: datetime) -> None:
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError("SimLimits needs a timezone-aware instant")
        self._reference = reference
        self._at = at
        self._limits: dict[tuple[str, str], float | None] = {}
        self._bans: dict[tuple[str, str], bool] = {}

    def limit_mg_kg(self, analyte: str, commodity: str) -> float | None:
        """The analyte's own limit (mg/kg) on the commodity in force at the instant, or None."""
        key = (analyte, commodity)
        try:
            return self._limits[key]
        except KeyError:
            pass
        found = self._reference.limit_in_force(analyte, commodity, self._at)
        value = None if found is None or found[1] else found[0].limit_mg_kg
        self._limits[key] = value
        return value

    def banned(self, analyte: str, commodity: str) -> bool:
        """Whether a ban on the analyte covers the commodity at the instant (detection is the violation)."""
        key = (analyte, commodity)
        try:
            return self._bans[key]
        except KeyError:
            pass
        value = self._reference.ban_in_force(analyte, commodity, self._at) is not None
        self._bans[key] = value
        return value


def after_last_change(reference: Reference) -> datetime:
    """The first instant (a China midnight) on which every limit and ban of ``reference`` that has a
    date is in its final state: what a fleet starting today sees."""
    days = [d for lim in reference.limits for d in (lim.effective_from, lim.effective_to) if d is not None]
    days += [d for ban in reference.bans for d in (ban.effective_from, ban.effective_to) if d is not None]
    last = max(days)
    return datetime(last.year, last.month, last.day, tzinfo=CHINA_TZ)


@cache
def current_limits() -> SimLimits:
    """The packaged reference's limits and bans after its last recorded change."""
    reference = default_reference()
    return SimLimits(reference, after_last_change(reference))


def sim_limit_mg_kg(analyte: str, commodity: str) -> float | None:
    """The limit (mg/kg) the simulator shapes its values against, or None if the reference has none
    (after the reference's last recorded change; a :class:`~pipeline.simulator.Fleet` asks at its start).

    For a pesticide in :data:`BANNED_ON_VEGETABLES` on a vegetable, detection at or above the LOQ
    is the violation, whatever this limit says.
    """
    return current_limits().limit_mg_kg(analyte, commodity)


BANNED_ON_VEGETABLES: Final = frozenset(
    ban.analyte
    for ban in default_reference().bans
    if ban.scope in (VEGETABLES_GROUP, ALL_FOODS) and current_limits().banned(ban.analyte, VEGETABLES_GROUP)
)
"""Pesticides whose mere detection (>= LOQ) on a vegetable is a violation (docs/domain.md §2), from
the reference's bans in force after its last recorded change."""
