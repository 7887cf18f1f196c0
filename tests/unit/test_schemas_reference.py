"""Reference data: integrity, every docs/domain.md value present with its mark, loader errors."""

from __future__ import annotations

import shutil
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from schemas.codes import AnalyteType, Confidence, Method
from schemas.reference import (
    ALL_FOODS,
    CHINA_TZ,
    DATA_DIR,
    KIND_ANALYTE_TYPE,
    Ban,
    Edition,
    Limit,
    QuickCutoff,
    Reference,
    ReferenceDataError,
    default_reference,
    load_reference,
    snake,
)

REF = default_reference()

REQUIRED_COMMODITIES = [
    "cowpea",
    "leek",
    "celery",
    "ginger",
    "radish",
    "pepper",
    "banana",
    "chinese_cabbage",
    "spinach",
    "rice",
    "pork",
    "fish",
    "predatory_fish",
]
REQUIRED_GROUPS = [
    "vegetables",
    "legume_vegetables",
    "leafy_vegetables",
    "brassica_vegetables",
    "bulb_vegetables",
    "root_vegetables",
    "solanaceous_vegetables",
    "fruit",
    "tropical_fruit",
    "cereals",
    "meat",
    "aquatic_products",
]
REQUIRED_ANALYTES = {
    AnalyteType.pesticide: [
        "carbofuran",
        "cyromazine",
        "lambda_cyhalothrin",
        "emamectin_benzoate",
        "clothianidin",
        "thiamethoxam",
        "acetamiprid",
        "chlorpyrifos",
        "procymidone",
        "phorate",
        "isofenphos_methyl",
        "imidacloprid",
        "omethoate",
        "methamidophos",
        "isocarbophos",
        "fenthion",
        "ethoprophos",
        "methomyl",
        "aldicarb",
        "triazophos",
    ],
    AnalyteType.contaminant: [
        "lead",
        "cadmium",
        "mercury",
        "methylmercury",
        "arsenic",
        "inorganic_arsenic",
        "chromium",
    ],
    AnalyteType.screen: ["ache_inhibition"],
}

# docs/domain.md §2, pesticide MRLs: (pesticide, food, mg/kg, mark)
DOMAIN_MRLS = [
    ("carbofuran", "cowpea", 0.02, Confidence.old),
    ("cyromazine", "cowpea", 0.5, Confidence.old),
    ("lambda_cyhalothrin", "cowpea", 0.2, Confidence.checked),
    ("emamectin_benzoate", "cowpea", 0.015, Confidence.checked),
    ("clothianidin", "cowpea", 0.01, Confidence.checked),
    ("clothianidin", "ginger", 0.2, Confidence.checked),
    ("thiamethoxam", "ginger", 0.3, Confidence.checked),
    ("thiamethoxam", "radish", 0.3, Confidence.checked),
    ("acetamiprid", "pepper", 0.2, Confidence.checked),
    ("chlorpyrifos", "celery", 0.05, Confidence.checked),
    ("procymidone", "leek", 0.2, Confidence.old),
    ("phorate", "leek", 0.01, Confidence.checked),
    ("isofenphos_methyl", "legume_vegetables", 0.01, Confidence.checked),
    ("imidacloprid", "banana", 0.05, Confidence.checked),
    ("omethoate", "vegetables", 0.02, Confidence.unverified),
    ("methamidophos", "vegetables", 0.05, Confidence.unverified),
    ("isocarbophos", "vegetables", 0.05, Confidence.unverified),
    ("fenthion", "vegetables", 0.05, Confidence.unverified),
]

# docs/domain.md §2, GB 2762-2022 cells given explicitly: (analyte, food, mg/kg, mark)
DOMAIN_CONTAMINANTS = [
    ("lead", "vegetables", 0.1, Confidence.old),
    ("cadmium", "vegetables", 0.05, Confidence.checked),
    ("mercury", "vegetables", 0.01, Confidence.checked),
    ("arsenic", "vegetables", 0.5, Confidence.checked),
    ("chromium", "vegetables", 0.5, Confidence.checked),
    ("lead", "brassica_vegetables", 0.2, Confidence.checked),
    ("lead", "leafy_vegetables", 0.3, Confidence.old),
    ("cadmium", "leafy_vegetables", 0.2, Confidence.old),
    ("lead", "legume_vegetables", 0.2, Confidence.old),
    ("cadmium", "legume_vegetables", 0.1, Confidence.old),
    ("lead", "rice", 0.2, Confidence.old),
    ("cadmium", "rice", 0.2, Confidence.old),
    ("mercury", "rice", 0.02, Confidence.unverified),
    ("inorganic_arsenic", "rice", 0.2, Confidence.old),
    ("chromium", "rice", 1.0, Confidence.unverified),
    ("lead", "meat", 0.2, Confidence.old),
    ("lead", "offal", 0.5, Confidence.old),
    ("cadmium", "meat", 0.1, Confidence.unverified),
    ("mercury", "meat", 0.05, Confidence.unverified),
    ("chromium", "meat", 1.0, Confidence.unverified),
    ("lead", "fish", 0.5, Confidence.old),
    ("cadmium", "fish", 0.1, Confidence.unverified),
    ("methylmercury", "fish", 0.5, Confidence.checked),
    ("methylmercury", "predatory_fish", 1.0, Confidence.checked),
    ("inorganic_arsenic", "fish", 0.1, Confidence.unverified),
    ("chromium", "fish", 2.0, Confidence.checked),
]

# docs/domain.md cells left unmarked for a vegetable sub-group: they equal the general value, inherited.
DOMAIN_INHERITED = [
    (analyte, group, value)
    for group in ("brassica_vegetables", "leafy_vegetables", "legume_vegetables")
    for analyte, value in (("cadmium", 0.05), ("mercury", 0.01), ("arsenic", 0.5), ("chromium", 0.5))
    if (analyte, group) not in {("cadmium", "leafy_vegetables"), ("cadmium", "legume_vegetables")}
]

# docs/domain.md §2 bans: (pesticide, scope, from, mark)
DOMAIN_BANS = [
    ("methamidophos", ALL_FOODS, date(2007, 1, 1), Confidence.unverified),
    ("phorate", ALL_FOODS, date(2024, 9, 1), Confidence.checked),
    ("isofenphos_methyl", ALL_FOODS, date(2024, 9, 1), Confidence.checked),
    ("isocarbophos", ALL_FOODS, date(2024, 9, 1), Confidence.checked),
    ("ethoprophos", ALL_FOODS, date(2024, 9, 1), Confidence.checked),
    ("omethoate", ALL_FOODS, date(2026, 6, 1), Confidence.checked),
    ("carbofuran", ALL_FOODS, date(2026, 6, 1), Confidence.checked),
    ("methomyl", ALL_FOODS, date(2026, 6, 1), Confidence.checked),
    ("aldicarb", ALL_FOODS, date(2026, 6, 1), Confidence.checked),
    ("omethoate", "vegetables", date(2002, 6, 5), Confidence.unverified),
    ("carbofuran", "vegetables", date(2002, 6, 5), Confidence.unverified),
    ("methomyl", "vegetables", date(2002, 6, 5), Confidence.unverified),
    ("aldicarb", "vegetables", date(2002, 6, 5), Confidence.unverified),
    ("chlorpyrifos", "vegetables", date(2016, 12, 31), Confidence.unverified),
    ("triazophos", "vegetables", date(2016, 12, 31), Confidence.unverified),
]


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=CHINA_TZ).astimezone(UTC)


# --- integrity ------------------------------------------------------------------------------------


def test_required_codes_exist() -> None:
    for code in REQUIRED_COMMODITIES:
        food = REF.commodity(code)
        assert food is not None and not food.is_group, code
        assert food.name_zh and food.name_en
    for code in REQUIRED_GROUPS:
        group = REF.commodity(code)
        assert group is not None and group.is_group, code
    for kind, codes in REQUIRED_ANALYTES.items():
        for code in codes:
            analyte = REF.analyte(code)
            assert analyte is not None and analyte.type is kind, code


def test_listings_for_the_simulator() -> None:
    assert {c.code for c in REF.commodities} >= set(REQUIRED_COMMODITIES)
    assert all(not c.is_group for c in REF.commodities)
    assert {a.code for a in REF.analytes} >= {c for codes in REQUIRED_ANALYTES.values() for c in codes}


def test_no_duplicate_keys() -> None:
    for codes in ([f.code for f in REF.foods], [a.code for a in REF.analytes]):
        assert [c for c, n in Counter(codes).items() if n > 1] == []
    limit_keys = Counter((lim.analyte, lim.food, lim.edition) for lim in REF.limits)
    assert [k for k, n in limit_keys.items() if n > 1] == []
    ban_keys = Counter((b.analyte, b.scope, b.effective_from) for b in REF.bans)
    assert [k for k, n in ban_keys.items() if n > 1] == []


def test_every_reference_exists() -> None:
    for food in REF.foods:
        assert food.parent is None or REF.commodity(food.parent) is not None
        assert REF.ancestors(food.code)[0] == food.code
        assert REF.commodity(REF.ancestors(food.code)[-1]).parent is None  # type: ignore[union-attr]  # exists
    for lim in REF.limits:
        assert REF.commodity(lim.food) is not None, lim
        analyte = REF.analyte(lim.analyte)
        assert analyte is not None, lim
        assert analyte.type is KIND_ANALYTE_TYPE[lim.kind]
        assert lim.edition in REF.editions
    for ban in REF.bans:
        assert REF.analyte(ban.analyte) is not None
        assert ban.scope == ALL_FOODS or REF.commodity(ban.scope) is not None
    for analyte in REF.analytes:
        assert analyte.speciated_as is None or REF.analyte(analyte.speciated_as) is not None
    for cutoff in REF.cutoffs:
        assert cutoff.method is None or cutoff.method.is_quick  # None: any quick method (mass cut-offs)


def test_every_limit_positive_with_source_and_confidence() -> None:
    rows: list[Limit | Ban | QuickCutoff | Edition] = [*REF.limits, *REF.bans, *REF.cutoffs, *REF.editions.values()]
    for row in rows:
        assert row.source.strip(), row
        assert isinstance(row.confidence, Confidence), row
    for lim in REF.limits:
        assert lim.limit_mg_kg > 0
        assert lim.effective_to is None or lim.effective_to > lim.effective_from


def test_every_gb2763_2021_value_is_carried_into_2026_marked_unverified() -> None:
    by_key = {(lim.analyte, lim.food, lim.edition): lim for lim in REF.limits}
    for lim in REF.limits:
        if lim.edition != "GB 2763-2021":
            continue
        assert lim.effective_to == date(2026, 3, 1)
        carried = by_key[(lim.analyte, lim.food, "GB 2763-2026")]
        assert carried.limit_mg_kg == lim.limit_mg_kg
        assert carried.effective_from == date(2026, 3, 1) and carried.effective_to is None
        assert carried.confidence is Confidence.unverified
        assert "carried forward" in carried.source


def test_editions() -> None:
    assert REF.editions["GB 2763-2026"].effective_from == date(2026, 3, 1)
    assert REF.editions["GB 2763-2021"].effective_from == date(2021, 9, 3)
    assert REF.editions["GB 2763-2021"].effective_to == date(2026, 3, 1)
    assert REF.editions["GB 2763.1-2022"].effective_to == date(2026, 3, 1)
    assert REF.editions["GB 2762-2022"].effective_from == date(2023, 6, 30)


def test_taxonomy_examples() -> None:
    assert REF.ancestors("cowpea") == ("cowpea", "edible_podded_legumes", "legume_vegetables", "vegetables")
    assert REF.ancestors("predatory_fish") == ("predatory_fish", "fish", "aquatic_products")
    assert REF.ancestors("banana") == (
        "banana",
        "tropical_large_fruit",
        "tropical_inedible_peel",
        "tropical_fruit",
        "fruit",
    )
    assert REF.ancestors("offal") == ("offal",)  # not under meat: must not inherit meat's limits
    assert REF.ancestors("no_such_food") == ()


# --- every docs/domain.md value, with its mark ------------------------------------------------------------


@pytest.mark.parametrize(("analyte", "food", "value", "mark"), DOMAIN_MRLS)
def test_domain_mrl_present(analyte: str, food: str, value: float, mark: Confidence) -> None:
    rows = {lim.edition: lim for lim in REF.limits if (lim.analyte, lim.food) == (analyte, food)}
    assert rows["GB 2763-2021"].limit_mg_kg == value
    assert rows["GB 2763-2021"].confidence is mark
    assert rows["GB 2763-2026"].limit_mg_kg == value
    assert rows["GB 2763-2026"].confidence is Confidence.unverified
    hit = REF.limit_in_force(analyte, food, at(date(2025, 1, 15)))
    assert hit is not None and hit[0] is rows["GB 2763-2021"]


@pytest.mark.parametrize(("analyte", "food", "value", "mark"), DOMAIN_CONTAMINANTS)
def test_domain_contaminant_present(analyte: str, food: str, value: float, mark: Confidence) -> None:
    hit = REF.limit_in_force(analyte, food, at(date(2025, 1, 15)))
    assert hit is not None
    limit, speciated = hit
    assert not speciated
    assert (limit.food, limit.limit_mg_kg, limit.confidence, limit.edition) == (food, value, mark, "GB 2762-2022")


@pytest.mark.parametrize(("analyte", "group", "value"), DOMAIN_INHERITED)
def test_domain_unmarked_cells_inherit_the_vegetable_value(analyte: str, group: str, value: float) -> None:
    hit = REF.limit_in_force(analyte, group, at(date(2025, 1, 15)))
    assert hit is not None
    assert (hit[0].food, hit[0].limit_mg_kg) == ("vegetables", value)


@pytest.mark.parametrize(("analyte", "scope", "start", "mark"), DOMAIN_BANS)
def test_domain_ban_present(analyte: str, scope: str, start: date, mark: Confidence) -> None:
    [ban] = [b for b in REF.bans if (b.analyte, b.scope, b.effective_from) == (analyte, scope, start)]
    assert ban.confidence is mark
    assert ban.announcement and ban.source


def test_domain_cutoffs() -> None:
    cutoff = REF.cutoff(Method.enzyme_inhibition, "ache_inhibition")
    assert cutoff is not None
    assert (cutoff.positive_at, cutoff.watch_from, cutoff.unit) == (50.0, 40.0, "%")
    assert cutoff.standard == "GB/T 5009.199-2003"
    assert REF.cutoff(Method.xrf, "lead") is None


def test_domain_enzyme_false_positive_foods_flagged() -> None:
    for code in ("leek", "garlic", "onion", "ginger", "celery", "coriander", "radish", "mushroom", "tomato"):
        food = REF.commodity(code)
        assert food is not None and food.enzyme_false_positive, code
    assert not REF.commodity("cowpea").enzyme_false_positive  # type: ignore[union-attr]  # exists


def test_with_cutoff_is_configuration() -> None:
    ref40 = REF.with_cutoff(Method.enzyme_inhibition, "ache_inhibition", positive_at=40, watch_from=30)
    cutoff = ref40.cutoff(Method.enzyme_inhibition, "ache_inhibition")
    assert cutoff is not None and (cutoff.positive_at, cutoff.watch_from) == (40, 30)
    assert REF.cutoff(Method.enzyme_inhibition, "ache_inhibition").positive_at == 50  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="watch_from"):
        REF.with_cutoff(Method.enzyme_inhibition, "ache_inhibition", positive_at=40, watch_from=45)
    with pytest.raises(KeyError):
        REF.with_cutoff(Method.xrf, "lead", positive_at=1, watch_from=0.5)


# --- names ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("豇豆", "cowpea"),
        ("韭菜", "leek"),
        ("Cowpea", "cowpea"),
        ("  cowpea ", "cowpea"),
        ("豆角", "cowpea"),
        ("napa cabbage", "chinese_cabbage"),
        ("大白菜", "chinese_cabbage"),
        ("芹菜", "celery"),
        ("生姜", "ginger"),
        ("香蕉", "banana"),
        ("大米", "rice"),
        ("Pak Choi", "pak_choi"),
        ("菜心", "choy_sum"),
        ("Dragon Pear", "dragon_pear"),  # unknown: the snake-cased name
        ("龙梨", "龙梨"),
    ],
)
def test_normalise_commodity(name: str, code: str) -> None:
    assert REF.normalise_commodity(name) == code


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("克百威", "carbofuran"),
        ("呋喃丹", "carbofuran"),
        ("Lambda-Cyhalothrin", "lambda_cyhalothrin"),
        ("λ-cyhalothrin", "lambda_cyhalothrin"),
        ("甲维盐", "emamectin_benzoate"),
        ("Isofenphos-methyl", "isofenphos_methyl"),
        ("Pb", "lead"),
        ("铅", "lead"),
        ("总汞", "mercury"),
        ("甲基汞", "methylmercury"),
        ("无机砷", "inorganic_arsenic"),
        ("酶抑制率", "ache_inhibition"),
        ("Spinosad", "spinosad"),
    ],
)
def test_normalise_analyte(name: str, code: str) -> None:
    assert REF.normalise_analyte(name) == code


def test_snake() -> None:
    assert snake(" Lambda-Cyhalothrin ") == "lambda_cyhalothrin"
    assert snake("A  B//C") == "a_b_c"
    assert snake("豇豆") == "豇豆"


def test_default_reference_is_cached() -> None:
    assert default_reference() is default_reference()
    assert isinstance(REF, Reference)
    assert "foods" in repr(REF)


# --- loader errors name the file, line and reason ------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    for path in DATA_DIR.glob("*.csv"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _append(directory: Path, name: str, line: str) -> int:
    path = directory / name
    text = path.read_text(encoding="utf-8")
    path.write_text(text + line + "\n", encoding="utf-8")
    return len((text + line).splitlines())


def _replace(directory: Path, name: str, old: str, new: str) -> int:
    path = directory / name
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return next(i for i, line in enumerate(text.splitlines(), start=1) if old in line)


def test_copy_loads(data_copy: Path) -> None:
    assert len(load_reference(data_copy).limits) == len(REF.limits)


BAD_APPENDS = [
    ("foods.csv", "cowpea,legume_vegetables,,no,Cowpea,豇豆2,,no,", "duplicate food"),
    ("foods.csv", "dragon_pear,no_such_group,,no,Dragon pear,龙梨,,no,", "parent 'no_such_group'"),
    ("foods.csv", "dragon_pear,fruit,,maybe,Dragon pear,龙梨,,no,", "is_group must be yes or no"),
    ("foods.csv", "dragon_pear,fruit,,no,Dragon pear,,,no,", "name_zh is empty"),
    ("foods.csv", "Dragon_pear,fruit,,no,Dragon pear,龙梨,,no,", "not a snake_case code"),
    ("foods.csv", "dragon_pear,fruit,,no,Dragon pear,豇豆,,no,", "already names cowpea"),
    ("foods.csv", "dragon_pear,fruit,,no,Dragon pear,龙梨,,no", "8 cells"),
    ("analytes.csv", "lead,contaminant,Lead,铅2,,,", "duplicate analyte"),
    ("analytes.csv", "zinc,metal,Zinc,锌,,,", "type 'metal'"),
    ("analytes.csv", "zinc,contaminant,Zinc,锌,,cobalt,", "speciated_as 'cobalt'"),
    ("pesticide_mrls.csv", "carbofuran,dragon_pear,0.02,GB 2763-2026,2026-03-01,,x,checked", "food 'dragon_pear'"),
    ("pesticide_mrls.csv", "spinosad,cowpea,0.02,GB 2763-2026,2026-03-01,,x,checked", "analyte 'spinosad'"),
    ("pesticide_mrls.csv", "lead,cowpea,0.02,GB 2763-2026,2026-03-01,,x,checked", "holds pesticide limits"),
    ("pesticide_mrls.csv", "carbofuran,leek,0,GB 2763-2026,2026-03-01,,x,checked", "must be > 0"),
    ("pesticide_mrls.csv", "carbofuran,leek,-1,GB 2763-2026,2026-03-01,,x,checked", "must be > 0"),
    ("pesticide_mrls.csv", "carbofuran,leek,nan,GB 2763-2026,2026-03-01,,x,checked", "must be > 0"),
    ("pesticide_mrls.csv", "carbofuran,leek,abc,GB 2763-2026,2026-03-01,,x,checked", "not a number"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2026,2026-03-01,,,checked", "source is empty"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2026,2026-03-01,,x,", "confidence is empty"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2026,2026-03-01,,x,sure", "confidence 'sure'"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2099,2026-03-01,,x,checked", "edition 'GB 2763-2099'"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2762-2022,2026-03-01,,x,checked", "contaminant edition"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2026,2026-13-01,,x,checked", "not a date"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2026,2026-03-01,2026-03-01,x,checked", "not after"),
    ("pesticide_mrls.csv", "carbofuran,leek,0.1,GB 2763-2026,2020-03-01,,x,checked", "outside edition"),
    ("pesticide_mrls.csv", "carbofuran,cowpea,0.1,GB 2763-2026,2026-04-01,,x,checked", "duplicate"),
    ("contaminant_limits.csv", "lead,cowpea,0.2,GB 2763-2026,2026-03-01,,x,checked", "not contaminant"),
    ("bans.csv", "carbofuran,dragon_pear,2026-06-01,,x,y,checked", "scope 'dragon_pear'"),
    ("bans.csv", "lead,all,2026-06-01,,x,y,checked", "a ban names one of"),
    ("bans.csv", "carbofuran,leek,2026-07-01,,x,y,checked", "already banned"),
    ("quick_cutoffs.csv", "xrf,lead,mg/kg,1,2,KJ,x,checked", "above positive_at"),
    ("quick_cutoffs.csv", "lc_msms,lead,mg/kg,1,0.5,KJ,x,checked", "not a quick method"),
    ("quick_cutoffs.csv", "enzyme_inhibition,ache_inhibition,%,45,40,GB/T,x,checked", "duplicate cut-off"),
]


@pytest.mark.parametrize(("name", "line", "reason"), BAD_APPENDS)
def test_broken_file_names_file_line_reason(data_copy: Path, name: str, line: str, reason: str) -> None:
    number = _append(data_copy, name, line)
    with pytest.raises(ReferenceDataError) as info:
        load_reference(data_copy)
    err = info.value
    assert (err.file, err.line) == (name, number), str(err)
    assert reason in err.reason
    assert str(err).startswith(f"{name}:{number}: ")


def test_parent_cycle_is_reported(data_copy: Path) -> None:
    old, new = "vegetables,,,yes,Vegetables (fresh)", "vegetables,cowpea,,yes,Vegetables (fresh)"
    line = _replace(data_copy, "foods.csv", old, new)
    with pytest.raises(ReferenceDataError, match="parent cycle") as info:
        load_reference(data_copy)
    assert (info.value.file, info.value.line) == ("foods.csv", line)


def test_wrong_header(data_copy: Path) -> None:
    line = _replace(data_copy, "bans.csv", "analyte,scope,", "pesticide,scope,")
    with pytest.raises(ReferenceDataError, match="header must be") as info:
        load_reference(data_copy)
    assert (info.value.file, info.value.line) == ("bans.csv", line)


def test_missing_file(data_copy: Path) -> None:
    (data_copy / "editions.csv").unlink()
    with pytest.raises(ReferenceDataError, match=r"editions\.csv:0: file not found"):
        load_reference(data_copy)


def test_comments_and_blank_lines_keep_line_numbers(data_copy: Path) -> None:
    _append(data_copy, "bans.csv", "")
    _append(data_copy, "bans.csv", "# a comment, with commas")
    number = _append(data_copy, "bans.csv", "carbofuran,dragon_pear,2026-06-01,,x,y,checked")
    with pytest.raises(ReferenceDataError) as info:
        load_reference(data_copy)
    assert info.value.line == number
