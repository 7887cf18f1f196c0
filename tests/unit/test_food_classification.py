"""The food classification: everyday names resolve, groups inherit, and the two standards' groupings
(GB 2763 for MRLs and bans, GB 2762 for contaminants) each pick their own limit."""

from __future__ import annotations

import csv
import shutil
from datetime import date
from pathlib import Path

import pytest

from schemas.codes import AnalyteType, Confidence
from schemas.reference import (
    DATA_DIR,
    GB2762,
    GB2763,
    Analyte,
    Ban,
    Commodity,
    Edition,
    Limit,
    LimitKind,
    Reference,
    ReferenceDataError,
    default_reference,
    load_reference,
)
from schemas.rules import screen, screen_naive
from tests.unit.test_schemas_rules import V, both, china, make

REF = default_reference()

# The names markets and devices send (issue 19), and the Guangzhou market variants.
EVERYDAY = {
    "小白菜": "pak_choi",
    "上海青": "pak_choi",
    "菜心": "choy_sum",
    "生菜": "leaf_lettuce",
    "油麦菜": "indian_lettuce",
    "空心菜": "water_spinach",
    "芥蓝": "chinese_kale",
    "韭菜": "leek",
    "芹菜": "celery",
    "黄瓜": "cucumber",
    "苦瓜": "bitter_gourd",
    "丝瓜": "luffa",
    "冬瓜": "wax_gourd",
    "茄子": "eggplant",
    "番茄": "tomato",
    "辣椒": "pepper",
    "豇豆": "cowpea",
    "四季豆": "green_bean",
    "荷兰豆": "snow_pea",
    "土豆": "potato",
    "萝卜": "radish",
    "胡萝卜": "carrot",
    "莲藕": "lotus_root",
    "芋头": "taro",
    "香菇": "shiitake",
    "金针菇": "enoki",
    "苹果": "apple",
    "梨": "pear",
    "柑橘": "citrus_fruit",
    "香蕉": "banana",
    "荔枝": "lychee",
    "龙眼": "longan",
    "西瓜": "watermelon",
    "葡萄": "grape",
    "草莓": "strawberry",
    "茶叶": "tea",
    "大米": "rice",
    "糙米": "brown_rice",
    "小麦粉": "wheat_flour",
    "猪肉": "pork",
    "猪肝": "pig_liver",
    "猪肾": "pig_kidney",
    "牛肉": "beef",
    "鸡肉": "chicken",
    "鸭肉": "duck",
    "鸡蛋": "chicken_egg",
    "草鱼": "grass_carp",
    "鲈鱼": "sea_bass",
    "对虾": "penaeid_prawn",
    "蟹": "crab",
    "贝类": "bivalves",
    # Guangzhou / market variants
    "青菜": "pak_choi",
    "白菜仔": "pak_choi",
    "奶白菜": "pak_choi",
    "通菜": "water_spinach",
    "西兰花": "broccoli",
    "花菜": "cauliflower",
    "芥兰": "chinese_kale",
    "西洋菜": "watercress",
    "节瓜": "chieh_qua",
    "凉瓜": "bitter_gourd",
    "番薯": "sweet_potato",
    "淮山": "chinese_yam",
    "沙葛": "yam_bean",
    "马蹄": "water_chestnut",
    "姜": "ginger",
    "葱": "welsh_onion",
    "蒜": "garlic",
    "鲩鱼": "grass_carp",
    "罗非鱼": "tilapia",
    "基围虾": "greasyback_shrimp",
    "花甲": "manila_clam",
    "生蚝": "oyster",
    "矮瓜": "eggplant",
    "胜瓜": "luffa",
    "菜头": "radish",
    "甘笋": "carrot",
    "薯仔": "potato",
    "雪耳": "white_fungus",
    "士多啤梨": "strawberry",
    "生鱼": "snakehead",
    "桂花鱼": "mandarin_fish",
    "塘虱": "catfish",
    "濑尿虾": "mantis_shrimp",
    "猪腰": "pig_kidney",
    "鸡肾": "chicken_gizzard",  # Cantonese: the gizzard, not the kidney
    "木瓜": "papaya",
    "bok choy": "pak_choi",
    "Choy Sum": "choy_sum",
}


@pytest.mark.parametrize(("name", "code"), sorted(EVERYDAY.items()))
def test_everyday_name_resolves_to_a_known_food(name: str, code: str) -> None:
    resolved = REF.normalise_commodity(name)
    assert resolved == code
    assert REF.commodity(resolved) is not None


def test_every_spelling_names_its_own_food() -> None:
    for food in REF.foods:
        for spelling in (food.code, food.name_en, food.name_zh, *food.aliases):
            assert REF.normalise_commodity(spelling) == food.code, (spelling, food.code)


def test_size_and_shape_of_the_classification() -> None:
    groups = [f for f in REF.foods if f.is_group]
    assert len(REF.commodities) >= 350 and len(groups) >= 90
    roots = {f.code for f in REF.foods if f.parent is None and f.gb2762_parent is None}
    assert {
        "cereals",
        "oilseeds_and_oils",
        "vegetables",
        "dried_vegetables",
        "fruit",
        "dried_fruit",
        "sugar_crops",
        "beverages",
        "edible_fungi",
        "condiments",
        "medicinal_plants",
        "meat",
        "offal",
        "mammal_fat",
        "poultry_fat",
        "eggs",
        "raw_milk",
        "aquatic_products",
    } <= roots
    for group in ("bulb_vegetables", "brassica_vegetables", "leafy_vegetables", "solanaceous_vegetables",
                  "cucurbit_vegetables", "legume_vegetables", "stem_vegetables", "root_vegetables",
                  "aquatic_vegetables", "sprouts", "other_vegetables"):  # fmt: skip
        assert REF.commodity(group).parent == "vegetables", group  # type: ignore[union-attr]  # exists
    for sub, group in (("green_alliums", "bulb_vegetables"), ("stem_brassicas", "brassica_vegetables"),
                       ("chinese_cabbages", "leafy_vegetables"), ("bivalves", "molluscs"),
                       ("cephalopods", "molluscs"), ("gastropods", "molluscs")):  # fmt: skip
        assert REF.commodity(sub).parent == group  # type: ignore[union-attr]  # exists


def test_existing_codes_are_kept_in_their_groups() -> None:
    assert "bulb_vegetables" in REF.ancestors("leek")
    assert REF.ancestors("leek")[1] == "green_alliums"
    assert "leafy_vegetables" in REF.ancestors("celery")
    assert "brassica_vegetables" in REF.ancestors("cabbage")
    assert "root_vegetables" in REF.ancestors("ginger")
    assert "edible_fungi" in REF.ancestors("mushroom")
    assert REF.ancestors("offal") == ("offal",)
    assert REF.ancestors("pig_liver") == ("pig_liver", "mammal_offal", "offal")


# --- the two chains ----------------------------------------------------------------------------------


def test_ancestors_per_standard() -> None:
    assert REF.ancestors("celery", standard=GB2763) == (
        "celery",
        "petiole_vegetables",
        "leafy_vegetables",
        "vegetables",
    )
    assert REF.ancestors("celery", standard=GB2762) == ("celery", "stem_vegetables", "vegetables")
    assert REF.ancestors("pig_liver", standard=GB2762) == ("pig_liver", "liver_gb2762", "offal")
    assert REF.ancestors("potato", standard=GB2762) == (
        "potato",
        "tubers_gb2762",
        "root_tuber_vegetables_gb2762",
        "vegetables",
    )
    assert REF.ancestors("soybean", standard=GB2762) == ("soybean", "pulses_gb2762")
    assert REF.ancestors("soybean") == ("soybean", "large_oilseeds", "oilseeds_and_oils")
    assert REF.ancestors("no_such_food", standard=GB2762) == ()
    with pytest.raises(ValueError, match="standard"):
        REF.ancestors("celery", standard="GB 2760")


def _tiny_reference() -> Reference:
    """Food x: GB 2763 puts it under group a, GB 2762 under group b; limits on both groups."""
    day = date(2020, 1, 1)
    foods = [
        Commodity("top", "Top", "顶", is_group=True),
        Commodity("a", "A", "甲", parent="top", is_group=True),
        Commodity("b", "B", "乙", parent="top", is_group=True),
        Commodity("x", "X", "丙", parent="a", gb2762_parent="b"),
    ]
    analytes = [
        Analyte("pest", AnalyteType.pesticide, "Pest", "农"),
        Analyte("metal", AnalyteType.contaminant, "Metal", "金"),
    ]
    editions = [
        Edition("M-1", "M", LimitKind.mrl, day, None, "s", Confidence.checked),
        Edition("C-1", "C", LimitKind.contaminant, day, None, "s", Confidence.checked),
    ]

    def lim(analyte: str, food: str, value: float, kind: LimitKind) -> Limit:
        edition = "M-1" if kind is LimitKind.mrl else "C-1"
        return Limit(analyte, food, value, edition, day, None, "s", Confidence.checked, kind)

    limits = [
        lim("pest", "a", 1.0, LimitKind.mrl),
        lim("pest", "b", 2.0, LimitKind.mrl),
        lim("metal", "a", 3.0, LimitKind.contaminant),
        lim("metal", "b", 4.0, LimitKind.contaminant),
    ]
    bans = [Ban("pest", "a", day, None, "ann", "s", Confidence.checked)]
    return Reference(foods=foods, analytes=analytes, editions=editions, limits=limits, bans=bans, cutoffs=[])


def test_a_food_grouped_differently_takes_each_standards_limit() -> None:
    ref = _tiny_reference()
    at = china(date(2025, 1, 1))
    pest = ref.limit_in_force("pest", "x", at)
    metal = ref.limit_in_force("metal", "x", at)
    assert pest is not None and (pest[0].food, pest[0].limit_mg_kg) == ("a", 1.0)  # GB 2763: parent
    assert metal is not None and (metal[0].food, metal[0].limit_mg_kg) == ("b", 4.0)  # GB 2762: gb2762_parent
    ban = ref.ban_in_force("pest", "x", at)
    assert ban is not None and ban.scope == "a"  # bans follow GB 2763
    assert ref.ancestors("b", standard=GB2762) == ("b", "top")


def test_screen_and_naive_agree_on_the_two_chains() -> None:
    ref = _tiny_reference()
    for analyte, value, limit_food in (("metal", 3.5, "b"), ("pest", 0.0, "a")):
        result = make("lead", "cowpea", value=value).model_copy(update={"analyte": analyte, "commodity": "x"})
        verdict = screen(result, ref)
        assert screen_naive(result, ref) == verdict
        assert verdict.limit_food == limit_food
    over = make("lead", "cowpea", value=3.5).model_copy(update={"analyte": "metal", "commodity": "x"})
    assert screen(over, ref, watch_fraction=1.0).verdict is V.compliant  # under b's 4.0, over a's 3.0


# --- inheritance in the shipped data -----------------------------------------------------------------

INHERITED = [
    # (analyte, name as sent, limit, food whose limit applies)
    ("lead", "菜心", 0.2, "brassica_vegetables"),
    ("lead", "芥蓝", 0.2, "brassica_vegetables"),
    ("lead", "小白菜", 0.3, "leafy_vegetables"),
    ("lead", "上海青", 0.3, "leafy_vegetables"),
    ("cadmium", "生菜", 0.2, "leafy_vegetables"),
    ("cadmium", "空心菜", 0.2, "leafy_vegetables"),
    ("lead", "芹菜", 0.1, "vegetables"),  # GB 2762: a stem vegetable, not leafy
    ("cadmium", "芹菜", 0.2, "celery"),
    ("cadmium", "莴笋", 0.1, "stem_vegetables"),
    ("cadmium", "猪肝", 0.5, "liver_gb2762"),
    ("lead", "猪肝", 0.5, "offal"),
    ("cadmium", "猪肾", 1.0, "kidney_gb2762"),
    ("cadmium", "鸡肝", 0.5, "liver_gb2762"),
    ("mercury", "猪肝", 0.05, "offal"),
    ("lead", "土豆", 0.2, "tubers_gb2762"),
    ("lead", "萝卜", 0.1, "vegetables"),
    ("cadmium", "萝卜", 0.1, "root_tuber_vegetables_gb2762"),
    ("lead", "生姜", 0.2, "ginger"),
    ("cadmium", "香菇", 0.5, "shiitake"),
    ("cadmium", "金针菇", 0.2, "fresh_edible_fungi_gb2762"),
    ("lead", "苹果", 0.1, "fruit"),
    ("lead", "甘蔗", 0.1, "fruit"),  # a sugar crop in GB 2763, fresh fruit in GB 2762
    ("lead", "草莓", 0.2, "berries_small_fruit"),
    ("lead", "葡萄", 0.2, "berries_small_fruit"),
    ("lead", "茶叶", 5.0, "tea"),
    ("cadmium", "糙米", 0.2, "brown_rice"),
    ("inorganic_arsenic", "稻谷", 0.2, "rice_paddy"),
    ("cadmium", "小麦粉", 0.1, "milled_cereal_products_gb2762"),
    ("cadmium", "黄豆", 0.2, "pulses_gb2762"),
    ("cadmium", "花生", 0.5, "peanut"),
    ("lead", "鸡肉", 0.2, "meat"),
    ("lead", "鸡蛋", 0.2, "eggs"),
    ("lead", "草鱼", 0.5, "fish"),
    ("methylmercury", "金枪鱼", 1.0, "predatory_fish"),
    ("methylmercury", "对虾", 0.5, "aquatic_products"),
    ("cadmium", "对虾", 0.5, "crustaceans"),
    ("cadmium", "花甲", 2.0, "bivalves"),
    ("lead", "生蚝", 1.5, "bivalves"),
    ("lead", "鱿鱼", 1.0, "aquatic_products"),
    ("cadmium", "鱿鱼", 2.0, "cephalopods"),
    ("cadmium", "贝类", 2.0, "bivalves"),
    ("tin", "罐装饮料", 150.0, "canned_beverages"),
    ("nickel", "氢化植物油", 1.0, "hydrogenated_vegetable_oil"),
]


@pytest.mark.parametrize(("analyte", "name", "limit", "food"), INHERITED)
def test_group_limits_reach_everyday_foods(analyte: str, name: str, limit: float, food: str) -> None:
    verdict = both(make(analyte, name, value=limit * 1.01))
    assert (verdict.verdict, verdict.limit_mg_kg, verdict.limit_food) == (V.exceeds, limit, food)


def test_offal_other_than_liver_and_kidney_has_no_cadmium_limit() -> None:
    assert both(make("cadmium", "猪心", value=5.0)).verdict is V.no_limit  # GB 2762: meat line excludes offal


# --- the GB 2762 source table ------------------------------------------------------------------------

SOURCE = DATA_DIR / "sources" / "gb2762-2022.csv"


def _records(path: Path) -> list[dict[str, str]]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines))


def test_every_source_path_is_a_gb2762_chain_of_the_classification() -> None:
    rows = _records(SOURCE)
    assert rows
    for row in rows:
        codes = [REF.normalise_commodity(segment) for segment in row["food_path"].split(":")]
        assert all(REF.commodity(c) is not None for c in codes), row["food_path"]
        assert tuple(reversed(codes)) == REF.ancestors(codes[-1], standard=GB2762), row["food_path"]
        assert row["unit"] == "mg/kg" and float(row["limit"]) > 0
        assert row["confidence"] in {c.value for c in Confidence} and row["source"]
        assert REF.analyte(REF.normalise_analyte(row["analyte"])) is not None, row["analyte"]


def test_contaminant_limits_are_the_source_table() -> None:
    expected = sorted(
        (
            REF.normalise_analyte(row["analyte"]),
            REF.normalise_commodity(row["food_path"].split(":")[-1]),
            float(row["limit"]),
            row["confidence"],
        )
        for row in _records(SOURCE)
    )
    shipped = sorted(
        (lim.analyte, lim.food, lim.limit_mg_kg, lim.confidence.value)
        for lim in REF.limits
        if lim.kind is LimitKind.contaminant
    )
    assert shipped == expected


# --- loader: the gb2762_parent column ----------------------------------------------------------------


@pytest.fixture
def data_copy(tmp_path: Path) -> Path:
    for path in DATA_DIR.glob("*.csv"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _without_column(text: str) -> str:
    out = []
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith("#"):
            out.append(raw)
            continue
        cells = next(csv.reader([raw]))
        del cells[2]
        out.append(",".join(f'"{c}"' if "," in c else c for c in cells))
    return "\n".join(out) + "\n"


def test_a_foods_file_without_the_column_reads_as_empty(data_copy: Path) -> None:
    path = data_copy / "foods.csv"
    path.write_text(_without_column(path.read_text(encoding="utf-8")), encoding="utf-8")
    ref = load_reference(data_copy)
    assert all(f.gb2762_parent is None for f in ref.foods)
    assert ref.ancestors("celery", standard=GB2762) == ref.ancestors("celery")


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (
            "celery,petiole_vegetables,stem_vegetables,",
            "celery,petiole_vegetables,no_such_group,",
            "gb2762_parent 'no_such_group'",
        ),
        ("celery,petiole_vegetables,stem_vegetables,", "celery,petiole_vegetables,petiole_vegetables,", "equals"),
        ("stem_vegetables,vegetables,,yes,", "stem_vegetables,vegetables,celery,yes,", "GB 2762 parent cycle"),
    ],
)
def test_bad_gb2762_parent_names_file_line_reason(data_copy: Path, old: str, new: str, reason: str) -> None:
    path = data_copy / "foods.csv"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    with pytest.raises(ReferenceDataError) as info:
        load_reference(data_copy)
    assert info.value.file == "foods.csv" and reason in info.value.reason
