"""What an alert update means (issue 21, agents/early/lifecycle.py): a growing alert is re-emitted
when one of its counts crosses a step of the ladder 1, 2, 3, 5, 10, 20, 50, 100, ... or its severity
changes (a lab confirms it, finds something banned), never at every further finding; the resolved
event is always emitted, under the id the alert fired with."""

from __future__ import annotations

from agents.early import cluster, offender
from agents.early.common import DAY, JSON, EarlyParams, apply
from agents.early.lifecycle import ladder
from schemas.alert import Alert
from tests.early.records import HOUR, T0, lab, rec

P = EarlyParams()


def test_the_ladder() -> None:
    assert [ladder(n) for n in (0, 1, 2, 3, 4, 5, 9, 10, 19, 20, 49, 50, 99, 100, 199, 200, 500, 1999, 5000)] == [
        0, 1, 2, 3, 3, 5, 5, 10, 10, 20, 20, 50, 50, 100, 100, 200, 500, 1000, 5000]
    steps = sorted({ladder(n) for n in range(1, 10_001)})
    assert steps == [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]


def _grow_cluster(n: int) -> tuple[dict[str, JSON], list[tuple[int, Alert]]]:
    """A cluster growing by one place (and one result) per step; the alerts with the place count."""
    state: dict[str, JSON] = {}
    emitted: list[tuple[int, Alert]] = []
    for i in range(n):
        r = rec(f"h{i}", T0 + i * 60, site_id=f"m-{i}", vendor_id=f"v{i}", verdict="positive")
        s = cluster.step(state, [r], T0 + i * 60, P)
        state = apply(state, s.updates)
        emitted.extend((i + 1, a) for a in s.alerts)
    return state, emitted


def test_a_cluster_growing_one_place_at_a_time_is_updated_only_at_ladder_steps() -> None:
    state, emitted = _grow_cluster(60)
    assert [n for n, _ in emitted] == [2, 3, 5, 10, 20, 50]
    assert len({a.alert_id for _, a in emitted}) == 1 and all(a.status == "firing" for _, a in emitted)
    for n, a in emitted:  # each update carries the cluster as of then
        assert a.details["places"] == n and a.details["results"] == n and len(a.evidence) == n
    first = emitted[0][1]
    # more results at places already counted: only when the results cross a step (50 -> 100)
    more = [rec(f"x{i}", T0 + 3600 + i, site_id=f"m-{i % 5}", vendor_id="v", verdict="positive") for i in range(39)]
    s = cluster.step(state, more, T0 + 3600, P)
    assert s.alerts == []  # 99 results, 60 places
    state = apply(state, s.updates)
    s = cluster.step(state, [rec("x99", T0 + 3700, site_id="m-0", verdict="positive")], T0 + 3700, P)
    assert [(a.alert_id, a.details["results"], a.details["places"]) for a in s.alerts] == [(first.alert_id, 100, 60)]
    state = apply(state, s.updates)
    # a severity change is news at once: a lab confirms it, no count crosses a step
    confirmed = lab("l1", T0 + 3800, site_id="m-1", site_type="farmers_market", verdict="banned", confirms="h1")
    s = cluster.step(state, [confirmed], T0 + 3800, P)
    assert [(a.alert_id, a.classification, a.risk) for a in s.alerts] == [(first.alert_id, "alert", "serious")]
    state = apply(state, s.updates)
    # the resolved event, always, under the id it fired with and with everything it held
    end = cluster.step(state, [], T0 + 3800 + 48 * HOUR + 1, P)
    assert [(a.alert_id, a.status) for a in end.alerts] == [(first.alert_id, "resolved")]
    assert end.alerts[0].details["results"] == 101 and end.alerts[0].details["places"] == 60
    assert apply(state, end.updates) == {}


def test_a_listed_vendor_is_updated_at_ladder_steps_and_at_once_when_a_lab_finds_it_banned() -> None:
    state: dict[str, JSON] = {}
    emitted: list[tuple[int, Alert]] = []
    rows = 0
    for i in range(12):
        s = offender.step(state, [rec(f"b{i}", T0 + i * HOUR, verdict="positive")], T0 + i * HOUR, P)
        state = apply(state, s.updates)
        emitted.extend((i + 1, a) for a in s.alerts)
        rows += len(s.redlist)
    assert [n for n, _ in emitted] == [3, 5, 10]
    assert [a.details["findings"] for _, a in emitted] == [3, 5, 10]
    assert rows == 10  # the red list still gets a row at every change
    listed = emitted[0][1]
    assert len({a.alert_id for _, a in emitted}) == 1 and listed.classification == "follow_up"
    # a lab finds a banned substance in a sample already counted: no new finding, but more severe
    banned = lab("b4-lab", T0 + 13 * HOUR, sample_id="s-b4", verdict="banned", confirms="b4")
    s = offender.step(state, [banned], T0 + 13 * HOUR, P)
    assert [(a.alert_id, a.classification, a.risk, a.details["findings"]) for a in s.alerts] == [
        (listed.alert_id, "alert", "serious", 12)]
    state = apply(state, s.updates)
    # delisted after K clean samples: resolved under the id it was listed with
    clean = [rec(f"c{i}", T0 + DAY + i) for i in range(P.offender_clean_k)]
    s = offender.step(state, clean, T0 + DAY, P)
    assert [(a.alert_id, a.status) for a in s.alerts] == [(listed.alert_id, "resolved")]
    assert apply(state, s.updates) == {}
