"""The simulated world: sites (markets, supermarkets, warehouses, testing centres) with their stalls,
the suppliers that deliver to them, and the devices at each site, all drawn from one seeded RNG.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from pipeline.simulator.catalogue import (
    ANIMAL_ORIGINS,
    CATEGORY,
    DISTRICTS,
    MARKET_WORDS,
    ORIGINS,
    QUICK_PESTICIDE,
    QUICK_XRF,
    SUPERMARKET_BRANDS,
    WAREHOUSE_BRANDS,
)
from pipeline.simulator.model import DeviceInfo, SiteInfo


class Supplier:
    __slots__ = ("commodities", "id", "origin", "sites")

    def __init__(self, supplier_id: str, origin: str, commodities: set[str]) -> None:
        self.id = supplier_id
        self.origin = origin
        self.commodities = commodities
        self.sites: set[str] = set()


class Site:
    __slots__ = ("district", "id", "info", "sample_seq", "stalls", "suppliers", "type", "weight", "wire")

    def __init__(self, site_id: str, site_type: str, district: str, name: str, weight: float) -> None:
        self.id = site_id
        self.type = site_type
        self.district = district
        self.info = SiteInfo(site_id, site_type, district, name)
        self.wire: dict[str, str] = {"id": site_id, "type": site_type, "district": district, "name": name}
        self.weight = weight
        self.sample_seq = 0
        self.stalls: dict[str, list[str]] = {}
        self.suppliers: dict[str, list[Supplier]] = {}


class Device:
    __slots__ = ("id", "info", "key", "kind", "seq", "site", "ugkg", "weight", "zh")

    def __init__(self, device_id: str, site: Site, kind: str, methods: tuple[str, ...], weight: float) -> None:
        self.id = device_id
        self.key = device_id.encode()
        self.site = site
        self.kind = kind
        self.info = DeviceInfo(device_id, site.info, kind, methods)
        self.weight = weight
        self.seq = 0
        self.zh = False  # older firmware: reports 豇豆 / 韭菜 instead of the codes
        self.ugkg = False  # reports in ug/kg


class Sample(NamedTuple):
    sample_id: str
    vendor_id: str | None
    supplier: Supplier
    commodity: str



class World:
    """Sites, stalls, suppliers and devices, all drawn from one RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.sites: list[Site] = []
        self.devices: list[Device] = []
        self.suppliers: list[Supplier] = []
        self.centres: list[Site] = []
        self._build_sites(rng)
        self._build_suppliers(rng, ORIGINS)
        self._build_devices(rng)
        # the commodities added later (meat, poultry, eggs, aquatic products, dried goods) get their
        # suppliers from an RNG of their own, drawn last: the rest of a seed's world is unchanged
        self._build_suppliers(random.Random(rng.random()), ANIMAL_ORIGINS)  # noqa: S311 - simulation

    def _build_sites(self, rng: random.Random) -> None:
        words = list(MARKET_WORDS)
        for name, zh, code, weight in DISTRICTS:
            rng.shuffle(words)
            for n in range(max(2, round(weight * 2.6))):
                site = Site(f"FM-{code}-{n + 1:02d}", "farmers_market", name, f"{zh}区{words[n]}肉菜市场", 1.0)
                self._add_stalls(rng, site, veg=rng.randint(4, 9))
                self.sites.append(site)
            for n in range(max(1, round(weight * 0.8))):
                brand = rng.choice(SUPERMARKET_BRANDS)
                site = Site(f"SM-{code}-{n + 1:02d}", "supermarket", name, f"{brand} {name} {n + 1}", 0.7)
                self.sites.append(site)
        for n, code in enumerate(("BY", "PY", "HP", "TH", "ZC")):
            district = self._district(code)
            brand = WAREHOUSE_BRANDS[n % len(WAREHOUSE_BRANDS)]
            site = Site(f"EW-{code}-01", "ecommerce_warehouse", district, f"{brand} {district} DC", 1.4)
            self.sites.append(site)
        for code, label in (("BY", "江南果菜批发市场"), ("HZ", "海珠农产品批发市场")):
            site = Site(f"WM-{code}-01", "wholesale_market", self._district(code), label, 2.0)
            self._add_stalls(rng, site, veg=rng.randint(8, 12))
            self.sites.append(site)
        for code in ("TH", "BY", "PY"):
            district = self._district(code)
            zh = next(z for d, z, c, _ in DISTRICTS if c == code)
            site = Site(f"TC-{code}-01", "testing_centre", district, f"广州市食品检验中心({zh})", 0.0)
            self.centres.append(site)
            self.sites.append(site)

    @staticmethod
    def _district(code: str) -> str:
        return next(d for d, _, c, _ in DISTRICTS if c == code)

    @staticmethod
    def _add_stalls(rng: random.Random, site: Site, *, veg: int) -> None:
        counts = {"veg": veg, "fruit": rng.randint(1, 2), "meat": rng.randint(1, 2), "fish": 1, "grain": 1}
        n = 0
        for category, count in counts.items():
            stalls = []
            for _ in range(count):
                n += 1
                stalls.append(f"{site.id}-S{n:02d}")
            site.stalls[category] = stalls

    def _build_suppliers(self, rng: random.Random, origins: dict[str, tuple[tuple[str, float], ...]]) -> None:
        markets = [s for s in self.sites if s.type != "testing_centre"]
        commodities = list(origins)
        primaries = commodities + rng.choices(commodities, k=30 * len(commodities) // len(ORIGINS))
        first = len(self.suppliers)
        added: list[Supplier] = []
        for i, primary in enumerate(primaries, start=first):
            regions, weights = zip(*origins[primary], strict=True)
            # the first cowpea supplier is a Hainan one: the winter cowpea trade (and incident a)
            origin = "460000" if i == 0 else rng.choices(regions, weights=weights)[0]
            carried = {primary}
            for other in commodities:
                same_kind = CATEGORY[other] == CATEGORY[primary]
                if other != primary and same_kind and origin in dict(origins[other]) and rng.random() < 0.4:
                    carried.add(other)
            supplier = Supplier(f"SUP-{origin}-{i + 1:03d}", origin, carried)
            for site in rng.sample(markets, rng.randint(4, 10)):
                supplier.sites.add(site.id)
            added.append(supplier)
        self.suppliers += added
        by_id = {s.id: s for s in markets}
        for supplier in added:
            for site_id in sorted(supplier.sites):
                for commodity in supplier.commodities:
                    by_id[site_id].suppliers.setdefault(commodity, []).append(supplier)
        for site in markets:
            for commodity in commodities:
                if commodity not in site.suppliers:
                    supplier = rng.choice([s for s in added if commodity in s.commodities])
                    supplier.sites.add(site.id)
                    site.suppliers[commodity] = [supplier]

    def _build_devices(self, rng: random.Random) -> None:
        for site in self.sites:
            n_pest, p_xrf = {
                "farmers_market": (1 if rng.random() < 0.6 else 2, 0.3),
                "supermarket": (1, 0.2),
                "ecommerce_warehouse": (2, 1.0),
                "wholesale_market": (3, 1.0),
                "testing_centre": (0, 0.0),
            }[site.type]
            n = 0
            for _ in range(n_pest):
                n += 1
                methods = ("enzyme_inhibition", "colloidal_gold")
                self.devices.append(Device(f"{site.id}-D{n}", site, QUICK_PESTICIDE, methods, site.weight))
            if rng.random() < p_xrf:
                n += 1
                self.devices.append(Device(f"{site.id}-D{n}", site, QUICK_XRF, ("xrf",), 0.5 * site.weight))
        for i, centre in enumerate(self.centres):
            lab_methods = ["lc_msms", "gc_msms", "icp_ms"] + [["afs"], ["aas", "afs"], ["aas"]][i % 3]
            for n, method in enumerate(lab_methods, start=1):
                device = Device(f"{centre.id}-D{n}", centre, f"lab_{method}", (method,), 0.0)
                device.ugkg = i == 1 and method in ("lc_msms", "gc_msms")
                self.devices.append(device)
        pesticide_fm = [d for d in self.devices if d.kind == QUICK_PESTICIDE and d.site.type == "farmers_market"]
        for device in rng.sample(pesticide_fm, 3):
            device.zh = True
