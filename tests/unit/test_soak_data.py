"""The national soak's generator (tests/bench/soak_data.py): deterministic by seed, the key space
the issue asks for, records as the early-warning agent sees them."""

from __future__ import annotations

from collections import Counter

from agents.screened import Screened
from tests.bench.soak_data import DAY, HOUR, SoakConfig, SoakStream, key_space

SMALL = SoakConfig(days=3, per_day=4_000)


def _days(cfg: SoakConfig) -> list[list[Screened]]:
    return [records for _, records in SoakStream(cfg).days()]


def test_same_seed_same_records_other_seed_other_records() -> None:
    a, b = _days(SMALL), _days(SMALL)
    assert a == b
    c = _days(SoakConfig(days=3, per_day=4_000, seed=SMALL.seed + 1))
    assert c != a


def test_key_space_has_the_national_sizes() -> None:
    cfg = SoakConfig()
    k = key_space(cfg)
    assert len(set(k.vendors)) == cfg.vendors >= 200_000
    assert len(set(k.devices)) == cfg.devices >= 50_000
    assert len(set(k.sites)) == cfg.sites >= 20_000
    assert len(set(k.commodities)) == cfg.commodities >= 500
    assert len(set(k.districts)) == cfg.districts == 2_900
    assert len(set(k.suppliers)) == cfg.suppliers == 20_000
    assert k.site_type.count("testing_centre") == cfg.labs
    assert all(k.site_devices[s] for s in range(cfg.sites))  # every site has a device
    assert all(k.device_method[d] == "" for d in range(cfg.devices) if k.device_site[d] < cfg.labs)
    assert len(k.offenders) == cfg.vendors * cfg.offender_share
    assert len(k.hot) == cfg.hot_vendors
    assert not k.offenders & k.hot


def test_records_span_the_key_space_with_a_realistic_verdict_mix() -> None:
    cfg = SoakConfig(days=2, per_day=50_000)
    days = _days(cfg)
    records = [r for day in days for r in day]
    assert all(len(day) >= cfg.per_day for day in days)
    assert len({r.vendor_id for r in records}) > 50_000
    assert len({r.device_id for r in records}) > 25_000
    assert len({r.district for r in records}) > 2_500
    quick = [r for r in records if r.quick]
    lab = [r for r in records if not r.quick]
    assert 0.8 < len(quick) / len(records) < 0.95
    positive = Counter(r.verdict for r in quick)["positive"] / len(quick)
    assert 0.012 < positive < 0.03  # ~1.5 % plus offenders, drifting devices and clusters
    lab_bad = Counter(r.verdict for r in lab)
    assert 0.01 < (lab_bad["exceeds"] + lab_bad["banned"]) / len(lab) < 0.08
    # confirmations: a lab result of a quick positive's sample, sampled with it
    by_id = {r.result_id: r for r in quick}
    confirmations = [r for r in lab if r.confirms is not None]
    assert confirmations
    for c in confirmations:
        q = by_id[c.confirms or ""]
        assert q.verdict == "positive"
        assert (c.sample_id, c.sampled_at, c.vendor_id) == (q.sample_id, q.sampled_at, q.vendor_id)
        assert c.tested_at >= q.sampled_at + 4 * HOUR
    # resends: the same device and result id twice
    keys = Counter((r.device_id, r.result_id) for r in records)
    assert 0 < sum(n > 1 for n in keys.values()) < 0.01 * len(records)


def test_records_arrive_in_order_late_within_the_grace() -> None:
    cfg = SoakConfig(days=2, per_day=10_000)
    for day, records in enumerate(_days(cfg)):
        latest = 0
        for r in records:
            if r.confirms is None:  # a confirmation is sampled hours before it arrives, by design
                assert r.sampled_at >= latest - HOUR
                latest = max(latest, r.sampled_at)
            assert cfg.start - 2 * DAY <= r.sampled_at < cfg.start + (day + 1) * DAY
