"""The closed vocabularies of the domain (string enums, so they serialise as their plain values).

They live apart from the models so that the reference data and the result model can both import
them without a cycle; ``schemas.result`` re-exports the ones the wire format uses.
"""

from __future__ import annotations

from enum import StrEnum


class SiteType(StrEnum):
    """Where a sample was tested."""

    farmers_market = "farmers_market"
    supermarket = "supermarket"
    ecommerce_warehouse = "ecommerce_warehouse"
    wholesale_market = "wholesale_market"
    testing_centre = "testing_centre"


class Method(StrEnum):
    """How it was tested: three quick methods (never a legal finding) and the lab methods."""

    enzyme_inhibition = "enzyme_inhibition"
    colloidal_gold = "colloidal_gold"
    xrf = "xrf"
    lc_msms = "lc_msms"
    gc_ms = "gc_ms"
    gc_msms = "gc_msms"
    icp_ms = "icp_ms"
    aas = "aas"
    afs = "afs"

    @property
    def is_quick(self) -> bool:
        """True for a quick (screening) method, whose positive needs a lab confirmation."""
        return self in QUICK_METHODS


QUICK_METHODS: frozenset[Method] = frozenset({Method.enzyme_inhibition, Method.colloidal_gold, Method.xrf})
CONFIRMATORY_METHODS: frozenset[Method] = frozenset(Method) - QUICK_METHODS


def is_quick(method: Method | str) -> bool:
    """Function form of :attr:`Method.is_quick` (accepts the plain string too)."""
    return Method(method) in QUICK_METHODS


class Qualitative(StrEnum):
    """A read-out without a number (colloidal-gold strips, some lab reports)."""

    negative = "negative"
    positive = "positive"
    invalid = "invalid"


class Unit(StrEnum):
    """The canonical spelling of each accepted unit (aliases are in ``schemas.result.UNIT_ALIASES``)."""

    mg_kg = "mg/kg"
    ug_kg = "µg/kg"
    mg_l = "mg/L"
    percent = "%"


class Confidence(StrEnum):
    """How far a reference value can be trusted (docs/domain.md marks)."""

    checked = "checked"  # seen in an official notice or standard text
    old = "old"  # checked against an older edition; re-check before calling it current
    unverified = "unverified"  # commonly quoted, nobody here confirmed it


class AnalyteType(StrEnum):
    """The family of an analyte: which standard limits it and how a finding is named."""

    pesticide = "pesticide"  # GB 2763 MRLs; bans by MOA/MARA announcements
    contaminant = "contaminant"  # GB 2762 maximum levels
    screen = "screen"  # a group screen such as enzyme (AChE) inhibition
    veterinary_drug = "veterinary_drug"  # GB 31650 maximum residue limits per animal tissue
    banned_compound = "banned_compound"  # banned in food animals (MARA 250) or never to be added to food
    additive = "additive"  # GB 2760 maximum use levels (judged as residue limits)
