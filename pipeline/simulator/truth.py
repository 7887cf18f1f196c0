"""The simulator's hidden truth for the sampling-plan backtest: how likely a lab sample of a commodity,
taken from a stall at a site and tested for one analyte, is non-compliant. Pure, seeded.

The fleet's ordinary traffic (fleet.py) draws every lab line at one rate per analyte family
(``LAB_P_EXCEED`` and friends); a plan can only beat uniform sampling where risk is uneven and lasts,
so this module states, for the world of a seed, who carries residues:

* **base rate** per (commodity, analyte): the fleet's family rate (pesticide over its MRL 3 %,
  banned pesticide detected 0.6 %, metal 2 %, veterinary drug 0.8 %, banned compound 0.3 %) times a
  per-pair factor, lognormal (sigma 0.5), so some pairs run hotter than others;
* **carrier suppliers**: each supplier, for each commodity it delivers, carries residues of one
  analyte of that commodity's panel with probability ``P_CARRIER`` (10 %), at ``CARRIER_FACTOR``
  (x8) the base rate; the first cowpea supplier (the Hainan one of incident a) carries carbofuran;
* **offending vendors**: a stall is an offender with probability ``P_OFFENDER`` (4 %): x5 on what
  it sells; each stall buys each commodity from one of its site's suppliers (fixed);
* **site factor**: lognormal (sigma 0.3) per site.

Probabilities are capped at ``P_MAX`` (60 %). The truth is fixed for a seed and over time (no
seasons, no incidents ending), which is the setting in which "risk-based" can be measured at all.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

from pipeline.simulator.catalogue import (
    CATEGORY,
    LAB_ANIMAL,
    LAB_COMMODITIES,
    LAB_METAL_P_EXCEED,
    LAB_P_BANNED_DETECT,
    LAB_P_EXCEED,
    LAB_VET_P_BANNED_DETECT,
    LAB_VET_P_EXCEED,
    LC_ANALYTES,
    METAL_PANELS,
    METALS,
    PESTICIDE_PANELS,
    VEGETABLES,
    VET_PANELS,
)
from pipeline.simulator.limits import SimLimits
from pipeline.simulator.world import Site, Supplier, World
from schemas.plan import Stratum

P_CARRIER: Final = 0.10
CARRIER_FACTOR: Final = 8.0
P_OFFENDER: Final = 0.04
OFFENDER_FACTOR: Final = 5.0
PAIR_SIGMA: Final = 0.5
SITE_SIGMA: Final = 0.3
P_MAX: Final = 0.6


def lab_method(analyte: str) -> str:
    """The instrument a testing centre runs ``analyte`` on (as fleet.instrument picks, without AAS/AFS)."""
    if analyte in METALS:
        return "icp_ms"
    vet = {a for panel in VET_PANELS.values() for a in panel}
    return "lc_msms" if analyte in LC_ANALYTES or analyte in vet else "gc_msms"


def commodity_panels(commodity: str) -> tuple[str, ...]:
    """Every analyte a lab tests ``commodity`` for in the fleet."""
    out: list[str] = []
    if commodity in PESTICIDE_PANELS:
        out += PESTICIDE_PANELS[commodity]
    if commodity in VEGETABLES:
        out += METAL_PANELS["veg"]
    elif commodity in METAL_PANELS:
        out += METAL_PANELS[commodity]
    if commodity in VET_PANELS:
        out += VET_PANELS[commodity]
    return tuple(dict.fromkeys(out))


def lab_strata() -> tuple[Stratum, ...]:
    """The (commodity, method, analyte) strata of the fleet's lab panels."""
    commodities = dict.fromkeys(c for c, _ in (*LAB_COMMODITIES, *LAB_ANIMAL))
    return tuple(Stratum(c, lab_method(a), a) for c in commodities for a in commodity_panels(c))


@dataclass(frozen=True, slots=True)
class Draw:
    """One lab sample under the truth: who it came from and whether it is non-compliant."""

    vendor_id: str | None
    supplier_id: str
    noncompliant: bool


class Truth:
    """The hidden non-compliance probabilities of a seed's world (see the module's text)."""

    def __init__(self, world: World, limits: SimLimits, seed: int) -> None:
        rng = random.Random(f"foodrisk-truth:{seed}")  # noqa: S311 - simulation
        self.world = world
        self.sites = {s.id: s for s in world.sites if s.type != "testing_centre"}
        self.strata = lab_strata()
        self._base: dict[tuple[str, str], float] = {}
        for s in self.strata:
            self._base[(s.commodity, s.analyte)] = self._family_rate(limits, s) * rng.lognormvariate(0.0, PAIR_SIGMA)
        self.carriers: dict[tuple[str, str], str] = {}  # (supplier, commodity) -> analyte
        for i, supplier in enumerate(world.suppliers):
            for commodity in sorted(supplier.commodities):
                panel = commodity_panels(commodity)
                if not panel:
                    continue
                if i == 0 and commodity == "cowpea":
                    self.carriers[(supplier.id, commodity)] = "carbofuran"
                elif rng.random() < P_CARRIER:
                    self.carriers[(supplier.id, commodity)] = panel[int(rng.random() * len(panel))]
        self.offenders: set[str] = set()
        self._stall_supplier: dict[tuple[str, str], Supplier] = {}
        self.site_factor: dict[str, float] = {}
        for site in sorted(self.sites.values(), key=lambda x: x.id):
            self.site_factor[site.id] = rng.lognormvariate(0.0, SITE_SIGMA)
            for stalls in site.stalls.values():
                for stall in stalls:
                    if rng.random() < P_OFFENDER:
                        self.offenders.add(stall)
            for commodity, suppliers in sorted(site.suppliers.items()):
                for stall in site.stalls.get(CATEGORY.get(commodity, ""), ()):
                    self._stall_supplier[(stall, commodity)] = suppliers[int(rng.random() * len(suppliers))]

    @staticmethod
    def _family_rate(limits: SimLimits, s: Stratum) -> float:
        vet = {a for panel in VET_PANELS.values() for a in panel}
        if s.analyte in METALS:
            return LAB_METAL_P_EXCEED
        if s.analyte in vet:
            return LAB_VET_P_BANNED_DETECT if limits.banned(s.analyte, s.commodity) else LAB_VET_P_EXCEED
        return LAB_P_BANNED_DETECT if limits.banned(s.analyte, s.commodity) else LAB_P_EXCEED

    def p(self, site_id: str, vendor_id: str | None, supplier_id: str, stratum: Stratum) -> float:
        """P(non-compliant) of one sample."""
        p = self._base.get((stratum.commodity, stratum.analyte), 0.0) * self.site_factor.get(site_id, 1.0)
        if self.carriers.get((supplier_id, stratum.commodity)) == stratum.analyte:
            p *= CARRIER_FACTOR
        if vendor_id is not None and vendor_id in self.offenders:
            p *= OFFENDER_FACTOR
        return min(P_MAX, p)

    def sources(self, site: Site, commodity: str) -> list[tuple[str | None, str, float]]:
        """(vendor, supplier, probability of being the one sampled) of a sample of ``commodity`` at
        ``site`` when no vendor is named: a stall of the commodity's category uniformly, and its
        supplier; a site without such stalls (supermarkets, warehouses): its suppliers uniformly."""
        stalls = site.stalls.get(CATEGORY.get(commodity, ""), [])
        if stalls:
            return [(v, self._stall_supplier[(v, commodity)].id, 1.0 / len(stalls)) for v in stalls]
        suppliers = site.suppliers.get(commodity, [])
        return [(None, s.id, 1.0 / len(suppliers)) for s in suppliers]

    def expected(self, site_id: str, stratum: Stratum, vendor_id: str | None = None) -> float:
        """P(non-compliant) of a sample of ``stratum`` at the site, over who is sampled."""
        site = self.sites[site_id]
        if vendor_id is not None:
            supplier = self._stall_supplier.get((vendor_id, stratum.commodity))
            if supplier is not None:
                return self.p(site_id, vendor_id, supplier.id, stratum)
        return sum(w * self.p(site_id, v, s, stratum) for v, s, w in self.sources(site, stratum.commodity))

    def draw(self, rng: random.Random, site_id: str, stratum: Stratum, vendor_id: str | None = None) -> Draw:
        site = self.sites[site_id]
        sources = self.sources(site, stratum.commodity)
        if vendor_id is not None and (vendor_id, stratum.commodity) in self._stall_supplier:
            supplier = self._stall_supplier[(vendor_id, stratum.commodity)].id
        else:
            u, acc = rng.random(), 0.0
            vendor_id, supplier = sources[-1][0], sources[-1][1]
            for v, s, w in sources:
                acc += w
                if u < acc:
                    vendor_id, supplier = v, s
                    break
        return Draw(vendor_id, supplier, rng.random() < self.p(site_id, vendor_id, supplier, stratum))

    def candidates(self, site_id: str) -> tuple[Stratum, ...]:
        """The strata that can be sampled at the site (a supplier delivers the commodity there)."""
        site = self.sites[site_id]
        return tuple(s for s in self.strata if site.suppliers.get(s.commodity))
