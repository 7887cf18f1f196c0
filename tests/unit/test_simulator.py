"""The simulated device fleet: determinism, wire format v1, rates, incidents."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.simulator import (
    BANNED_ON_VEGETABLES,
    CST,
    DISTRICTS,
    TAG_CLENBUTEROL_PORK,
    TAG_CONFIRMATION,
    TAG_COWPEA_CARBOFURAN,
    TAG_FAULTY_DEVICE,
    TAG_INVALID,
    TAG_REPEAT_OFFENDER,
    VEGETABLES,
    Fleet,
    FleetConfig,
    SimMessage,
    sim_limit_mg_kg,
)
from pipeline.simulator.catalogue import ANIMAL_PRODUCTS, BETA_AGONISTS, DRIED_GOODS
from pipeline.simulator.limits import current_limits
from schemas.reference import default_reference

START = datetime(2026, 11, 27, 6, 0, tzinfo=CST)  # a morning market, the shell's default start

COMMODITIES = {
    "cowpea", "leek", "celery", "ginger", "radish", "pepper", "banana", "chinese_cabbage", "spinach",
    "rice", "pork", "fish", "predatory_fish",
    "beef", "mutton", "chicken", "chicken_egg", "grass_carp", "penaeid_prawn", "dried_daylily", "dried_longan",
}  # fmt: skip
ZH = {"豇豆": "cowpea", "韭菜": "leek"}
ANALYTES = {
    "carbofuran", "cyromazine", "lambda_cyhalothrin", "emamectin_benzoate", "clothianidin", "thiamethoxam",
    "acetamiprid", "chlorpyrifos", "procymidone", "phorate", "isofenphos_methyl", "imidacloprid", "omethoate",
    "methamidophos", "isocarbophos", "fenthion", "lead", "cadmium", "mercury", "methylmercury", "arsenic",
    "inorganic_arsenic", "chromium", "ache_inhibition",
    # veterinary drugs, banned compounds, additives (issue 20)
    "clenbuterol", "ractopamine", "salbutamol", "enrofloxacin", "doxycycline", "florfenicol", "chloramphenicol",
    "malachite_green", "leucomalachite_green", "aoz", "amoz", "sem", "ahd", "formaldehyde", "sulfur_dioxide",
}  # fmt: skip
QUICK = {"enzyme_inhibition", "colloidal_gold", "xrf"}
LAB = {"lc_msms", "gc_ms", "gc_msms", "icp_ms", "aas", "afs"}
SITE_TYPES = {"farmers_market", "supermarket", "ecommerce_warehouse", "wholesale_market", "testing_centre"}
UNITS = {"mg/kg", "ug/kg", "%"}
REQUIRED = ("result_id", "sample_id", "device_id", "site", "commodity", "analyte", "method", "sampled_at", "tested_at")


# ---- helpers -------------------------------------------------------------------------------------


def wire_errors(raw: bytes) -> list[str]:
    """A small stand-in for the wire-format v1 validator: what is wrong with ``raw``."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ["not JSON"]
    if not isinstance(d, dict):
        return ["not an object"]
    return dict_errors(d)


def dict_errors(d: dict[str, Any]) -> list[str]:
    errors = [f"missing {k}" for k in REQUIRED if k not in d]
    for key, val in d.items():
        if isinstance(val, str) and len(val) > 256:
            errors.append(f"{key} too long")
    has_value, has_qual = "value" in d, "qualitative" in d
    if not (has_value or has_qual):
        errors.append("neither value nor qualitative")
    if has_value:
        value = d["value"]
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            errors.append("bad value")
        if d.get("unit") not in UNITS:
            errors.append("bad unit")
    if has_qual and d["qualitative"] not in {"negative", "positive", "invalid"}:
        errors.append("bad qualitative")
    try:
        sampled = datetime.fromisoformat(d["sampled_at"])
        tested = datetime.fromisoformat(d["tested_at"])
    except (KeyError, TypeError, ValueError):
        errors.append("bad time")
    else:
        if sampled.tzinfo is None or tested.tzinfo is None:
            errors.append("naive time")
        elif sampled > tested:
            errors.append("sampled after tested")
    return errors


def mg_kg(d: Mapping[str, Any], key: str = "value") -> float:
    value = float(d[key])
    return value / 1000.0 if d["unit"] == "ug/kg" else value


def commodity(d: Mapping[str, Any]) -> str:
    code: str = d["commodity"]
    return ZH.get(code, code)


def quick_positive(d: Mapping[str, Any]) -> bool:
    if d["method"] == "enzyme_inhibition":
        return bool(d["value"] >= 50.0)
    if d["method"] == "colloidal_gold":
        return bool(d["qualitative"] == "positive")
    limit = sim_limit_mg_kg(d["analyte"], commodity(d))
    assert limit is not None
    return mg_kg(d) > limit


def lab_noncompliant(d: Mapping[str, Any]) -> bool:
    value = mg_kg(d)
    if commodity(d) in VEGETABLES and d["analyte"] in BANNED_ON_VEGETABLES:
        return value > 0 and value >= mg_kg(d, "loq")
    if current_limits().banned(d["analyte"], commodity(d)):  # banned compounds on animal products
        return value > 0 and value >= mg_kg(d, "loq")
    limit = sim_limit_mg_kg(d["analyte"], commodity(d))
    assert limit is not None, (d["analyte"], d["commodity"])
    return value > limit


@dataclass
class Run:
    messages: list[SimMessage]
    results: list[dict[str, Any]]  # parsed valid messages, in order
    tags: list[str | None]  # of the parsed ones

    @classmethod
    def of(cls, messages: list[SimMessage]) -> Run:
        valid = [m for m in messages if m.tag != TAG_INVALID]
        return cls(messages, [orjson.loads(m.value) for m in valid], [m.tag for m in valid])


def run(fleet: Fleet, until: datetime, step: timedelta | None = None) -> list[SimMessage]:
    if step is None:
        return fleet.next_batch(until)
    out: list[SimMessage] = []
    t = fleet.config.start
    while t < until:
        t = min(t + step, until)
        out += fleet.next_batch(t)
    return out


@pytest.fixture(scope="module")
def baseline() -> Run:
    """Two simulated days without incidents, ~105k messages."""
    fleet = Fleet(FleetConfig(seed=3, start=START, rate_per_sim_hour=2200, incidents=False))
    return Run.of(run(fleet, START + timedelta(days=2), step=timedelta(hours=6)))


@pytest.fixture(scope="module")
def incident_fleet() -> Fleet:
    return Fleet(FleetConfig(seed=7, start=START, rate_per_sim_hour=300))


@pytest.fixture(scope="module")
def incidents(incident_fleet: Fleet) -> Run:
    """The first six simulated days, incidents on (15% of the default traffic, to stay fast)."""
    return Run.of(run(incident_fleet, START + timedelta(days=6), step=timedelta(minutes=10)))


# ---- config and determinism ----------------------------------------------------------------------


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FleetConfig(start=datetime(2026, 11, 27, 6, 0))  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="rate_per_sim_hour"):
        FleetConfig(start=START, rate_per_sim_hour=0)
    with pytest.raises(ValueError, match="invalid_fraction"):
        FleetConfig(start=START, invalid_fraction=1.5)
    with pytest.raises(ValueError, match="timezone-aware"):
        Fleet(FleetConfig(start=START)).next_batch(datetime(2026, 11, 27, 7, 0))  # noqa: DTZ001


def test_same_seed_same_messages_whatever_the_batching() -> None:
    until = START + timedelta(hours=1)
    whole = run(Fleet(FleetConfig(start=START)), until)
    chunked = run(Fleet(FleetConfig(start=START)), until, step=timedelta(seconds=7))
    assert whole == chunked
    assert len(whole) > 3000
    other = run(Fleet(FleetConfig(seed=8, start=START)), until)
    assert [m.value for m in other[:50]] != [m.value for m in whole[:50]]


_REFERENCE = run(Fleet(FleetConfig(start=START, rate_per_sim_hour=4000)), START + timedelta(minutes=30))


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1800), max_size=12))
def test_any_cut_points_give_the_same_stream(cuts: list[int]) -> None:
    fleet = Fleet(FleetConfig(start=START, rate_per_sim_hour=4000))
    out: list[SimMessage] = []
    for cut in [*sorted(cuts), 1800]:
        out += fleet.next_batch(START + timedelta(seconds=cut))
    assert out == _REFERENCE


def test_batches_are_in_event_time_order_and_bounded() -> None:
    fleet = Fleet(FleetConfig(start=START, rate_per_sim_hour=5000))
    previous = START - timedelta(seconds=1)
    t = START
    for _ in range(40):
        t += timedelta(seconds=97.5)
        batch = fleet.next_batch(t)
        times = [m.event_time for m in batch]
        assert times == sorted(times)
        assert all(previous <= x < t for x in times)  # nothing late, nothing early
        previous = t
    assert fleet.next_batch(START) == []  # time does not go back


def test_start_is_the_first_event_time() -> None:
    start = datetime(2026, 11, 27, 2, 0, 0, 250000, tzinfo=CST)  # a night start, with a fraction
    batch = Fleet(FleetConfig(start=start, incidents=False)).next_batch(start + timedelta(hours=1))
    assert batch
    assert batch[0].event_time >= start


# ---- wire format ----------------------------------------------------------------------------------


def test_every_valid_message_is_wire_format_v1(baseline: Run) -> None:
    for msg, d in zip((m for m in baseline.messages if m.tag != TAG_INVALID), baseline.results, strict=True):
        assert dict_errors(d) == [], d
        assert msg.key == d["device_id"].encode()
        tested = datetime.fromisoformat(d["tested_at"])
        assert tested == msg.event_time
        assert d["tested_at"].endswith("+08:00") and d["sampled_at"].endswith("+08:00")
        assert set(d["site"]) == {"id", "type", "district", "name"}
        assert d["site"]["type"] in SITE_TYPES
        assert commodity(d) in COMMODITIES
        assert d["analyte"] in ANALYTES
        assert d["method"] in QUICK | LAB
        assert isinstance(d["supplier_id"], str) and d["origin"].isdigit() and len(d["origin"]) == 6
        if "value" in d:
            assert isinstance(d["value"], float)
            assert "qualitative" not in d
            assert d["unit"] == "%" if d["analyte"] == "ache_inhibition" else d["unit"] in ("mg/kg", "ug/kg")
        else:
            assert d["method"] == "colloidal_gold" and "lod" not in d
        if "lod" in d:
            assert d["lod"] > 0 and ("loq" not in d or d["loq"] >= d["lod"])
        sampled = datetime.fromisoformat(d["sampled_at"])
        if d["method"] in QUICK:
            assert timedelta(minutes=1) <= tested - sampled <= timedelta(minutes=30)
            assert d["site"]["type"] != "testing_centre" and "confirms" not in d
        else:
            assert tested - sampled >= timedelta(hours=1)
            assert d["site"]["type"] == "testing_centre" and "loq" in d
        if d["site"]["type"] in ("farmers_market", "wholesale_market") and d["method"] in QUICK:
            assert d["vendor_id"].startswith(d["site"]["id"] + "-S")


def test_result_ids_are_unique(baseline: Run) -> None:
    assert len(baseline.messages) > 100_000
    ids = [d["result_id"] for d in baseline.results]
    assert len(ids) == len(set(ids))
    assert all(i.startswith(d["device_id"] + "-") for i, d in zip(ids, baseline.results, strict=True))


def test_every_code_the_reference_promises_is_exercised(baseline: Run) -> None:
    seen_commodities = {d["commodity"] for d in baseline.results}
    assert seen_commodities >= COMMODITIES and set(ZH) <= seen_commodities  # and a few Chinese names
    assert {d["analyte"] for d in baseline.results} == ANALYTES
    assert {d["method"] for d in baseline.results} == QUICK | LAB - {"gc_ms"}
    assert {d["unit"] for d in baseline.results if "unit" in d} == UNITS
    assert {d["site"]["district"] for d in baseline.results} == {d[0] for d in DISTRICTS}
    assert {d["site"]["type"] for d in baseline.results} == SITE_TYPES


# ---- rates ----------------------------------------------------------------------------------------


def test_quick_test_positive_rate_is_realistic(baseline: Run) -> None:
    quick = [d for d in baseline.results if d["method"] in QUICK]
    positives = sum(map(quick_positive, quick))
    assert 0.0003 <= positives / len(quick) <= 0.003  # docs/domain.md §3: 0.03-0.3%
    enzyme = [d["value"] for d in quick if d["method"] == "enzyme_inhibition"]
    assert 0.002 < sum(40 <= v < 50 for v in enzyme) / len(enzyme) < 0.02  # a watch band
    assert sum(v <= 30 for v in enzyme) / len(enzyme) > 0.9  # mostly 0-30 %
    methods = Counter(d["method"] for d in quick)
    assert methods["enzyme_inhibition"] > methods["colloidal_gold"] > methods["xrf"] > 0


def test_lab_results_are_mostly_below_lod_with_1_to_4_percent_noncompliant(baseline: Run) -> None:
    lab = [d for d in baseline.results if d["method"] in LAB and "confirms" not in d]
    assert len(lab) > 5000
    assert 0.01 <= sum(map(lab_noncompliant, lab)) / len(lab) <= 0.04
    assert sum(d["value"] == 0.0 for d in lab) / len(lab) > 0.5  # ND, reported as 0.0 with lod
    high = sorted(mg_kg(d) / (sim_limit_mg_kg(d["analyte"], commodity(d)) or 1) for d in lab)
    assert high[-1] > 3  # a long right tail


def test_positives_are_followed_by_lab_confirmations(baseline: Run) -> None:
    by_id = {d["result_id"]: (i, d) for i, d in enumerate(baseline.results)}
    confirmations = [(i, d) for i, d in enumerate(baseline.results) if "confirms" in d]
    assert confirmations
    for i, d in confirmations:
        j, positive = by_id[d["confirms"]]
        assert j < i and quick_positive(positive)
        assert d["method"] in LAB and d["sample_id"] == positive["sample_id"]
        assert d["sampled_at"] == positive["sampled_at"]
        lag = datetime.fromisoformat(d["tested_at"]) - datetime.fromisoformat(positive["tested_at"])
        assert timedelta(hours=1) < lag <= timedelta(hours=10)
    assert {baseline.tags[i] for i, _ in confirmations} == {TAG_CONFIRMATION}
    end = START + timedelta(days=2) - timedelta(hours=10)
    positives = [
        d["result_id"]
        for d in baseline.results
        if d["method"] in QUICK and quick_positive(d) and datetime.fromisoformat(d["tested_at"]) < end
    ]
    followed = {d["confirms"] for _, d in confirmations}
    share = sum(p in followed for p in positives) / len(positives)
    assert 0.5 <= share <= 0.9  # ~70% get a lab test, the rest never do
    confirmed = sum(map(lab_noncompliant, (d for _, d in confirmations))) / len(confirmations)
    assert 0.1 < confirmed < 0.7  # some confirm, many don't


def test_invalid_share_is_honoured_and_really_invalid(baseline: Run) -> None:
    invalid = [m for m in baseline.messages if m.tag == TAG_INVALID]
    assert 0.0006 <= len(invalid) / len(baseline.messages) <= 0.0015
    for msg in invalid:
        assert wire_errors(msg.value), msg.value
        assert msg.key


def test_invalid_fraction_zero_and_one() -> None:
    until = START + timedelta(hours=1)
    none = Fleet(FleetConfig(start=START, invalid_fraction=0.0, incidents=False)).next_batch(until)
    assert all(m.tag != TAG_INVALID for m in none)
    every = Fleet(FleetConfig(start=START, invalid_fraction=1.0, incidents=False)).next_batch(until)
    assert every and all(m.tag == TAG_INVALID and wire_errors(m.value) for m in every)


def test_volume_follows_market_hours() -> None:
    # a quarter of the default rate, over a whole day from midnight
    fleet = Fleet(FleetConfig(start=START - timedelta(hours=6), incidents=False, rate_per_sim_hour=500))
    per_hour = Counter(m.event_time.hour for m in fleet.next_batch(START + timedelta(hours=18)))
    assert 4 * sum(per_hour.values()) == pytest.approx(48_000, rel=0.05)  # default: 2,000 an hour on average
    assert 3000 < 4 * per_hour[6] < 8000  # a 60 s run at speed 60 from 06:00: a few thousand
    morning = sum(per_hour[h] for h in range(5, 11))
    assert morning > sum(per_hour.values()) / 2
    assert per_hour[2] < per_hour[8] / 10


def test_rate_scales() -> None:
    until = START + timedelta(hours=1)
    default = len(Fleet(FleetConfig(start=START, incidents=False)).next_batch(until))
    triple = len(Fleet(FleetConfig(start=START, incidents=False, rate_per_sim_hour=6000)).next_batch(until))
    assert triple == pytest.approx(3 * default, rel=0.05)


# ---- the fleet -----------------------------------------------------------------------------------


def test_devices_cover_guangzhou(incident_fleet: Fleet, incidents: Run) -> None:
    devices = incident_fleet.devices()
    assert len({d.device_id for d in devices}) == len(devices)
    assert {d.site.district for d in devices} == {d[0] for d in DISTRICTS}
    types = Counter(d.site.type for d in devices)
    assert types["farmers_market"] > types["supermarket"] > types["testing_centre"] >= 2
    assert types["ecommerce_warehouse"] > 0
    by_id = {d.device_id: d for d in devices}
    for d in incidents.results:
        device = by_id[d["device_id"]]
        assert d["site"] == device.site._asdict()
        assert d["method"] in device.methods


# ---- incidents ------------------------------------------------------------------------------------


def test_no_incidents_when_off(baseline: Run) -> None:
    assert not any(t and t.startswith("incident:") for t in baseline.tags)
    assert Fleet(FleetConfig(start=START, incidents=False)).incidents() == []


def test_every_incident_shows_in_the_first_simulated_hour() -> None:
    """A 60 s run at the default speed and rate covers the first simulated hour."""
    fleet = Fleet(FleetConfig(start=START))
    tags = Counter(m.tag for m in fleet.next_batch(START + timedelta(hours=1)))
    assert tags[TAG_COWPEA_CARBOFURAN] >= 10 and tags[TAG_FAULTY_DEVICE] >= 10 and tags[TAG_REPEAT_OFFENDER] >= 1
    assert tags[TAG_CLENBUTEROL_PORK] >= 8
    assert {i.tag for i in fleet.incidents()} == {
        TAG_COWPEA_CARBOFURAN, TAG_FAULTY_DEVICE, TAG_REPEAT_OFFENDER, TAG_CLENBUTEROL_PORK,
    }  # fmt: skip


def test_cowpea_lot_with_carbofuran(incident_fleet: Fleet, incidents: Run) -> None:
    lot = [d for d, t in zip(incidents.results, incidents.tags, strict=True) if t == TAG_COWPEA_CARBOFURAN]
    assert {commodity(d) for d in lot} == {"cowpea"}
    assert len({d["supplier_id"] for d in lot}) == 1
    positives = [d for d in lot if d["method"] in QUICK and quick_positive(d)]
    markets = {d["site"]["id"] for d in positives}
    assert len(markets) >= 3 and len({d["site"]["district"] for d in positives}) >= 2
    assert {d["site"]["type"] for d in positives} == {"farmers_market"}
    labs = [d for d in lot if d["method"] in LAB]
    assert labs and {d["method"] for d in labs} == {"lc_msms"}
    assert {d["site"]["type"] for d in labs} == {"testing_centre"}
    positive_ids = {d["result_id"] for d in positives}
    for d in labs:
        assert d["analyte"] == "carbofuran" and d["confirms"] in positive_ids
        assert 0.05 <= mg_kg(d) <= 0.4 and lab_noncompliant(d)
    assert len(labs) < len(positives)  # one positive is left unconfirmed
    # visible in the first simulated hour (one minute of a default run)
    first_hour = START + timedelta(hours=1)
    early = [d for d in lot if datetime.fromisoformat(d["tested_at"]) < first_hour]
    assert len({d["site"]["id"] for d in early if d["method"] in QUICK}) >= 3
    assert any(d["method"] == "lc_msms" for d in early)
    (info,) = [i for i in incident_fleet.incidents() if i.tag == TAG_COWPEA_CARBOFURAN]
    assert info.supplier_id == lot[0]["supplier_id"] and set(info.site_ids) == markets
    assert info.starts_at < first_hour


def test_faulty_device_drifts_into_positives(incident_fleet: Fleet, incidents: Run) -> None:
    (info,) = [i for i in incident_fleet.incidents() if i.tag == TAG_FAULTY_DEVICE]
    readings = [
        d
        for d, t in zip(incidents.results, incidents.tags, strict=True)
        if t == TAG_FAULTY_DEVICE and d["method"] == "enzyme_inhibition"
    ]
    assert {d["device_id"] for d in readings} == {info.device_id}
    positives = [d for d in readings if d["value"] >= 50]
    assert len(positives) >= 20
    first_hour = START + timedelta(hours=1)
    assert sum(datetime.fromisoformat(d["tested_at"]) < first_hour for d in positives) >= 5
    # its peers at the same site stay normal meanwhile
    site = readings[0]["site"]["id"]
    peers = [
        d
        for d in incidents.results
        if d["site"]["id"] == site
        and d["device_id"] != info.device_id
        and d["method"] == "enzyme_inhibition"
        and info.starts_at <= datetime.fromisoformat(d["tested_at"]) < START + timedelta(hours=3)
    ]
    assert peers and sum(d["value"] >= 50 for d in peers) <= 1
    # its lab follow-ups find nothing
    follow_ups = [d for d in incidents.results if d.get("confirms") in {p["result_id"] for p in positives}]
    assert follow_ups and not any(map(lab_noncompliant, follow_ups))


def test_repeat_offender_stall(incident_fleet: Fleet, incidents: Run) -> None:
    (info,) = [i for i in incident_fleet.incidents() if i.tag == TAG_REPEAT_OFFENDER]
    rows = [d for d, t in zip(incidents.results, incidents.tags, strict=True) if t == TAG_REPEAT_OFFENDER]
    assert {d["vendor_id"] for d in rows} == {info.vendor_id}
    bad_days = {
        datetime.fromisoformat(d["tested_at"]).date()
        for d in rows
        if (d["method"] in QUICK and quick_positive(d)) or (d["method"] in LAB and lab_noncompliant(d))
    }
    assert len(bad_days) >= 5


def test_incident_confirmations_reference_earlier_positives(incidents: Run) -> None:
    seen: dict[str, dict[str, Any]] = {}
    by_tag: defaultdict[str | None, int] = defaultdict(int)
    for d, tag in zip(incidents.results, incidents.tags, strict=True):
        if "confirms" in d:
            assert quick_positive(seen[d["confirms"]])
            by_tag[tag] += 1
        seen[d["result_id"]] = d
    assert by_tag[TAG_COWPEA_CARBOFURAN] and by_tag[TAG_FAULTY_DEVICE] and by_tag[TAG_REPEAT_OFFENDER]
    assert by_tag[TAG_CLENBUTEROL_PORK] == 5
    assert by_tag[TAG_CONFIRMATION]


# ---- animal products and dried goods (issue 20) ---------------------------------------------------


def family(analyte: str) -> str:
    row = default_reference().analyte(analyte)
    assert row is not None, analyte
    return str(row.type)


def test_animal_products_are_tested_by_strip_and_lc_msms(baseline: Run) -> None:
    animal = [d for d in baseline.results if commodity(d) in ANIMAL_PRODUCTS | DRIED_GOODS]
    quick = [d for d in animal if d["method"] in QUICK]
    lab = [d for d in animal if d["method"] in LAB and family(d["analyte"]) not in ("contaminant",)]
    # strips and kits: read-outs on meat, fish, shrimp, poultry, eggs and dried goods, about a tenth of quick tests
    assert {d["method"] for d in quick} == {"colloidal_gold"} and all("qualitative" in d for d in quick)
    assert {commodity(d) for d in quick} == ANIMAL_PRODUCTS | DRIED_GOODS
    assert 0.05 < len(quick) / sum(d["method"] in QUICK for d in baseline.results) < 0.2
    assert {family(d["analyte"]) for d in quick} == {"banned_compound", "veterinary_drug", "additive"}
    assert {d["analyte"] for d in quick if commodity(d) in {"pork", "beef", "mutton"}} == set(BETA_AGONISTS)
    assert 0 < sum(map(quick_positive, quick)) / len(quick) <= 0.002  # at or below the surge baseline
    # the labs' LC-MS/MS panels: banned compounds at 0.3/1 ug/kg, drugs with an MRL at 2/5 ug/kg
    assert {d["method"] for d in lab} == {"lc_msms"}
    assert {family(d["analyte"]) for d in lab} == {"banned_compound", "veterinary_drug"}
    for d in lab:
        banned = current_limits().banned(d["analyte"], commodity(d))
        assert (mg_kg(d, "lod"), mg_kg(d, "loq")) == pytest.approx((0.0003, 0.001) if banned else (0.002, 0.005))
    non_compliant = sum(map(lab_noncompliant, lab)) / len(lab)
    assert 0.001 < non_compliant < 0.02  # mostly clean, a few findings
    assert sum(d["value"] == 0.0 for d in lab) / len(lab) > 0.8


def test_clenbuterol_pork_from_one_pig_supplier_in_three_markets(incident_fleet: Fleet, incidents: Run) -> None:
    (info,) = [i for i in incident_fleet.incidents() if i.tag == TAG_CLENBUTEROL_PORK]
    rows = [d for d, t in zip(incidents.results, incidents.tags, strict=True) if t == TAG_CLENBUTEROL_PORK]
    assert {(commodity(d), d["analyte"]) for d in rows} == {("pork", "clenbuterol")}
    assert {d["supplier_id"] for d in rows} == {info.supplier_id}
    strips = [d for d in rows if d["method"] in QUICK]
    labs = [d for d in rows if d["method"] in LAB]
    assert len(strips) == 6 and all(quick_positive(d) and d["method"] == "colloidal_gold" for d in strips)
    assert len({d["site"]["id"] for d in strips}) == 3 and len({d["site"]["district"] for d in strips}) == 3
    assert {d["site"]["id"] for d in strips} == set(info.site_ids)
    assert all(d["vendor_id"] in {s["vendor_id"] for s in strips} for d in labs)  # counted at the meat stall
    assert len(labs) == 5 and {d["method"] for d in labs} == {"lc_msms"}
    assert {d["confirms"] for d in labs} < {d["result_id"] for d in strips}  # one strip never confirmed
    for d in labs:
        assert 0.002 <= mg_kg(d) <= 0.03 and lab_noncompliant(d)  # banned in food animals: detected is the finding
    first_hour = START + timedelta(hours=1)
    assert all(datetime.fromisoformat(d["tested_at"]) < first_hour + timedelta(minutes=30) for d in strips)
    assert sum(datetime.fromisoformat(d["tested_at"]) < first_hour for d in labs) >= 2
