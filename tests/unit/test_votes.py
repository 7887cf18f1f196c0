"""The vote file of `foodrisk votes import` (schemas/votes.py): categories resolved through the food
classification, every problem listed with its line, ranks per period, nothing dropped silently."""

from __future__ import annotations

from schemas.reference import load_reference
from schemas.votes import PRIORITY_CATEGORIES, parse_period, parse_votes, priority_categories, rank_categories

REF = load_reference()

FILE = """\ufeff# votes of the city's "you pick, we test" page
category,votes,period
豇豆,1200,2026-11
菜心,900,2026-11
leafy_vegetables,900,2026-11
长豆角,5,2026-11
大白菜,30,2026/12
"""


def test_categories_resolve_by_name_alias_and_code_and_rank_per_period() -> None:
    batch = parse_votes(FILE, REF)
    assert batch.problems == ()
    assert batch.periods == ("2026-11", "2026-12")
    nov = [(r.category, r.votes, r.rank) for r in batch.rows if r.period == "2026-11"]
    assert nov[0][1] >= 1200 and nov[0][2] == 1
    assert [r for _, _, r in nov] == list(range(1, len(nov) + 1))
    codes = {c for c, _, _ in nov}
    assert {"choy_sum", "leafy_vegetables"} <= codes
    assert all(REF.commodity(r.category) is not None for r in batch.rows)
    assert priority_categories(batch.rows, "2026-12") == (batch.rows[-1].category,)


def test_two_labels_of_one_category_add_up_and_are_noted() -> None:
    cowpea = REF.normalise_commodity("豇豆")
    text = "category,votes,period\n豇豆,10,2026-11\ncowpea,5,2026-11\n"
    batch = parse_votes(text, REF)
    (row,) = batch.rows
    assert row.category == cowpea == REF.normalise_commodity("cowpea")
    assert row.votes == 15 and row.label == "豇豆 | cowpea"
    assert batch.merged and "votes added" in batch.merged[0]


def test_unknown_and_broken_rows_are_listed_with_their_line_never_dropped_silently() -> None:
    text = "类别,票数,月份\n豇豆,10,2026-11\n榴莲饼干礼盒,99,2026-11\n菜心,lots,2026-11\n菜心,3,November\n"
    batch = parse_votes(text, REF)
    kinds = [(p.line, p.kind) for p in batch.problems]
    assert kinds == [(3, "unknown_category"), (4, "bad_votes"), (5, "bad_period")]
    assert len(batch.rows) == 1
    assert batch.blocking(allow_unknown=True) == batch.problems[1:]
    assert len(batch.blocking(allow_unknown=False)) == 3
    line = batch.problems[0].render("v.csv")
    assert "榴莲饼干礼盒" in line and line.startswith("v.csv:3: unknown_category")


def test_missing_column_and_empty_file() -> None:
    assert parse_votes("category,count\n豇豆,1\n", REF).problems[0].kind == "missing_column"
    assert parse_votes("", REF).problems[0].kind == "empty"


def test_periods_and_ranks() -> None:
    assert parse_period("2026-11") == "2026-11"
    assert parse_period("2026/1") == "2026-01"
    assert parse_period("2026年11月") == "2026-11"
    assert parse_period("2026-13") is None and parse_period("11/2026") is None
    ranks = rank_categories({f"c{i:03d}": 1000 - i for i in range(300)} | {"tie_a": 5, "tie_b": 5})
    assert ranks["c000"] == 1 and max(ranks.values()) == 255
    assert rank_categories({"b": 5, "a": 5}) == {"a": 1, "b": 2}
    assert PRIORITY_CATEGORIES == 10
