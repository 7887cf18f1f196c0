"""The market panel beyond pesticides and metals (issue 20), one family at a time: veterinary drug
limits (GB 31650-2019), their sums (enrofloxacin + ciprofloxacin, the sulfonamides), compounds
banned in food animals (MARA announcement 250 and predecessors) and non-food substances, food
additive levels (GB 2760-2024), and the quick strips and kits that screen for them.

Every value is held to its standard or announcement with its source and confidence mark: all of
them are recalled or read from third-party copies, so the mark is ``unverified`` throughout.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from schemas.codes import AnalyteType, Confidence, Method
from schemas.reference import DATA_DIR, KIND_ANALYTE_TYPE, LimitKind, ReferenceDataError, load_reference
from schemas.rules import screen_sum
from schemas.sums import SumBook
from schemas.verdict import Rule, VerdictKind
from tests.unit.test_schemas_rules import REF, both, make

V = VerdictKind
TODAY = date(2026, 11, 2)
UNVERIFIED = Confidence.unverified.value
ANIMAL_ROOTS = {"meat", "offal", "mammal_fat", "poultry_fat", "eggs", "raw_milk", "aquatic_products"}


# --- the families ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "family"),
    [
        (
            "enrofloxacin ciprofloxacin sulfonamides tetracycline oxytetracycline chlortetracycline doxycycline "
            "florfenicol thiamphenicol tylosin ivermectin norfloxacin ofloxacin",
            AnalyteType.veterinary_drug,
        ),
        (
            "clenbuterol ractopamine salbutamol terbutaline cimaterol chloramphenicol aoz amoz ahd sem furazolidone "
            "nitrofurantoin malachite_green leucomalachite_green crystal_violet leucocrystal_violet formaldehyde "
            "borax sodium_formaldehyde_sulfoxylate sudan_red",
            AnalyteType.banned_compound,
        ),
        ("sulfur_dioxide nitrite benzoic_acid sorbic_acid", AnalyteType.additive),
        ("abamectin", AnalyteType.pesticide),  # GB 31650 lists avermectin too; it stays a pesticide here
    ],
)
def test_design_codes_have_their_family(codes: str, family: AnalyteType) -> None:
    for code in codes.split():
        analyte = REF.analyte(code)
        assert analyte is not None and analyte.type is family, code


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("瘦肉精", "clenbuterol"),
        ("莱克多巴胺", "ractopamine"),
        ("孔雀石绿", "malachite_green"),
        ("吊白块", "sodium_formaldehyde_sulfoxylate"),
        ("苏丹红", "sudan_red"),
        ("恩诺沙星", "enrofloxacin"),
        ("二氧化硫", "sulfur_dioxide"),
        ("亚硝酸钠", "nitrite"),
        ("山梨酸钾", "sorbic_acid"),
        ("呋喃唑酮代谢物", "aoz"),
    ],
)
def test_market_names_resolve(label: str, code: str) -> None:
    assert REF.normalise_analyte(label) == code


def test_each_limit_file_holds_its_family_only() -> None:
    kinds = {lim.kind for lim in REF.limits}
    assert {LimitKind.vet_drug, LimitKind.additive} <= kinds
    for lim in REF.limits:
        analyte = REF.analyte(lim.analyte)
        assert analyte is not None and analyte.type is KIND_ANALYTE_TYPE[lim.kind], lim
        assert lim.rule == lim.kind.value
    assert Rule.vet_drug.value == LimitKind.vet_drug.value and Rule.additive.value == LimitKind.additive.value


# --- veterinary drug limits: GB 31650-2019 -----------------------------------------------------------------

# (analyte label, food label as markets write it, value µg/kg, verdict, limit mg/kg, food whose limit applies)
VET_LIMITS = [
    ("土霉素", "猪肉", 250, V.exceeds, 0.2, "mammal_meat"),  # tetracyclines muscle 200 µg/kg
    ("土霉素", "猪肝", 700, V.exceeds, 0.6, "pig_liver"),  # liver 600
    ("四环素", "猪肾", 1000, V.watch, 1.2, "pig_kidney"),  # kidney 1200
    ("金霉素", "鸡蛋", 300, V.watch, 0.4, "eggs"),  # eggs 400
    ("土霉素", "牛奶", 40, V.compliant, 0.1, "raw_milk"),  # milk 100
    ("恩诺沙星", "鸡肉", 150, V.exceeds, 0.1, "poultry_meat"),  # poultry muscle 100 (the DOMAIN.md §7 value)
    ("恩诺沙星", "鸡肉", 100, V.watch, 0.1, "poultry_meat"),  # equal to the limit is not over it
    ("恩诺沙星", "猪肝", 250, V.exceeds, 0.2, "pig_liver"),  # pig liver 200
    ("恩诺沙星", "牛肝", 250, V.watch, 0.3, "cattle_liver"),  # cattle liver 300
    ("恩诺沙星", "草鱼", 120, V.exceeds, 0.1, "aquatic_products"),  # fish muscle+skin 100
    ("恩诺沙星", "对虾", 40, V.compliant, 0.1, "aquatic_products"),  # other animals' muscle 100
    ("磺胺类", "猪肉", 120, V.exceeds, 0.1, "mammal_meat"),  # sulfonamides (sum) 100, all food animals
    ("氟苯尼考", "草鱼", 1200, V.exceeds, 1.0, "fish"),  # fish muscle+skin 1000
    ("氟苯尼考", "猪肉", 200, V.watch, 0.3, "pork"),  # pig muscle 300
    ("多西环素", "鸡肝", 350, V.exceeds, 0.3, "chicken_liver"),  # poultry liver 300
    ("甲砜霉素", "羊肉", 30, V.watch, 0.05, "mammal_meat"),  # muscle 50
    ("泰乐菌素", "鸡蛋", 50, V.compliant, 0.2, "eggs"),  # eggs 200
    ("伊维菌素", "牛奶", 12, V.exceeds, 0.01, "raw_milk"),  # milk 10
]


@pytest.mark.parametrize(("analyte", "food", "ug_kg", "verdict", "limit", "limit_food"), VET_LIMITS)
def test_vet_drug_limits(analyte: str, food: str, ug_kg: float, verdict: V, limit: float, limit_food: str) -> None:
    v = both(make(analyte, food, value=ug_kg, unit="µg/kg", day=TODAY))
    assert (v.verdict, v.rule, v.limit_mg_kg, v.limit_food) == (verdict, Rule.vet_drug.value, limit, limit_food)
    assert v.edition == "GB 31650-2019" and v.confidence == UNVERIFIED
    assert "GB 31650-2019" in v.source  # type: ignore[operator]  # a limit verdict carries its source
    assert v.ratio == pytest.approx(ug_kg / 1000 / limit)


def test_the_issue_examples_find_their_tissue() -> None:
    """猪肉, 猪肝, 鸡肉, 鸡蛋 and 草鱼 each find a GB 31650 limit on the right tissue."""
    at = make("恩诺沙星", "猪肉", value=1, unit="µg/kg", day=TODAY).sampled_at
    expected = {
        "pork": ("enrofloxacin", "mammal_meat"),
        "pig_liver": ("enrofloxacin", "pig_liver"),
        "chicken": ("enrofloxacin", "poultry_meat"),
        "chicken_egg": ("oxytetracycline", "eggs"),
        "grass_carp": ("florfenicol", "fish"),
    }
    for food, (analyte, tissue) in expected.items():
        hit = REF.limit_in_force(analyte, food, at)
        assert hit is not None and hit[0].food == tissue and hit[0].kind is LimitKind.vet_drug, food


def test_before_gb31650_no_vet_drug_limit_is_carried() -> None:
    v = both(make("恩诺沙星", "鸡肉", value=150, unit="µg/kg", day=date(2019, 6, 1)))
    assert (v.verdict, v.rule) == (V.no_limit, Rule.no_limit.value)


def test_offal_other_than_liver_and_kidney_has_no_vet_drug_limit() -> None:
    """GB 31650 sets tissue limits on muscle, fat, liver and kidney: pig stomach is not judged."""
    v = both(make("土霉素", "猪肚", value=300, unit="µg/kg", day=TODAY))
    assert v.verdict is V.no_limit


# --- sums: enrofloxacin + ciprofloxacin, the sulfonamides ---------------------------------------------------


def test_enrofloxacin_is_judged_on_the_sum_with_ciprofloxacin() -> None:
    """Poultry muscle 100 µg/kg on enrofloxacin + ciprofloxacin: 60 + 50 is over it, either alone is not."""
    enro = make("恩诺沙星", "鸡肉", value=60, unit="µg/kg", day=TODAY)
    cipro = make("环丙沙星", "鸡肉", value=50, unit="µg/kg", day=TODAY).model_copy(update={"result_id": "r-cipro"})
    assert both(enro).verdict is V.watch
    alone = both(cipro)
    assert (alone.verdict, alone.rule, alone.limit_mg_kg) == (V.watch, Rule.vet_drug.value, 0.1)
    assert alone.basis.startswith("judged as enrofloxacin")
    book = SumBook()
    assert book.add(enro, REF) and book.add(cipro, REF)
    so_far = book.so_far(cipro, REF)
    assert so_far is not None and so_far.definition == "enrofloxacin"
    assert so_far.total_mg_kg == pytest.approx(0.11)
    v = screen_sum(cipro, REF, so_far.total_mg_kg, so_far.parts)
    assert (v.verdict, v.rule, v.limit_mg_kg, v.edition) == (V.exceeds, Rule.vet_drug.value, 0.1, "GB 31650-2019")
    assert "enrofloxacin + ciprofloxacin" in v.basis and v.confidence == UNVERIFIED


def test_sulfonamide_components_add_up_to_the_group_limit() -> None:
    a = make("磺胺嘧啶", "猪肉", value=60, unit="µg/kg", day=TODAY)
    b = make("磺胺二甲嘧啶", "猪肉", value=60, unit="µg/kg", day=TODAY).model_copy(update={"result_id": "r-b"})
    single = both(b)
    assert (single.verdict, single.limit_mg_kg) == (V.watch, 0.1)
    book = SumBook()
    book.add(a, REF)
    book.add(b, REF)
    so_far = book.so_far(b, REF)
    assert so_far is not None and so_far.definition == "sulfonamides"
    v = screen_sum(b, REF, so_far.total_mg_kg, so_far.parts)
    assert (v.verdict, v.limit_mg_kg, v.limit_food) == (V.exceeds, 0.1, "mammal_meat")


def test_residue_sums_keep_to_one_family(tmp_path: Path) -> None:
    ref_dir = tmp_path / "ref"
    shutil.copytree(DATA_DIR, ref_dir, ignore=shutil.ignore_patterns("sources", "*.py", "__pycache__"))
    with (ref_dir / "residues.csv").open("a", encoding="utf-8") as f:
        f.write("enrofloxacin,carbofuran,1.0,test,unverified\n")
    with pytest.raises(ReferenceDataError, match="one family"):
        load_reference(ref_dir)


# --- bans: compounds banned in food animals (MARA 250 and predecessors), non-food substances -----------------


def test_clenbuterol_in_pork_by_lc_msms_is_banned_under_announcement_250() -> None:
    """The issue's case: clenbuterol in pork, lc_msms, 0.5 µg/kg (was no_limit)."""
    v = both(make("克伦特罗", "猪肉", value=0.5, unit="µg/kg", day=TODAY))
    assert (v.verdict, v.rule, v.limit_mg_kg, v.limit_food) == (V.banned, Rule.ban.value, None, "meat")
    assert v.edition is not None and v.edition.startswith("MARA announcement 250 (2019)")
    assert v.confidence == UNVERIFIED and "03j9n.cn" in (v.source or "")


@pytest.mark.parametrize(
    ("analyte", "food", "day", "announcement", "scope"),
    [
        ("clenbuterol", "beef", date(2015, 3, 1), "MOA announcement 193 (2002)", "meat"),
        ("ractopamine", "pork", date(2015, 3, 1), "MOA/MOH/SDA announcement 176 (2002)", "meat"),
        ("chloramphenicol", "chicken_egg", date(2010, 3, 1), "MOA announcement 193 (2002)", "eggs"),
        ("malachite_green", "grass_carp", date(2010, 3, 1), "MOA announcement 193 (2002)", "aquatic_products"),
        ("malachite_green", "grass_carp", TODAY, "MARA announcement 250 (2019)", "aquatic_products"),
        ("leucomalachite_green", "mandarin_fish", TODAY, "MARA announcement 250 (2019)", "aquatic_products"),
        ("aoz", "penaeid_prawn", TODAY, "MARA announcement 250 (2019)", "aquatic_products"),
        ("sem", "mitten_crab", TODAY, "MARA announcement 250 (2019)", "aquatic_products"),
        ("salbutamol", "mutton", TODAY, "MARA announcement 250 (2019)", "meat"),
        ("clenbuterol", "pig_liver", TODAY, "MARA announcement 250 (2019)", "offal"),
        ("chloramphenicol", "cow_milk", TODAY, "MARA announcement 250 (2019)", "raw_milk"),
        ("norfloxacin", "chicken", TODAY, "MOA announcement 2292 (2015)", "meat"),
        ("enrofloxacin", "chicken_egg", TODAY, "GB 31650-2019: not for use in laying birds", "eggs"),
        ("florfenicol", "duck_egg", TODAY, "GB 31650-2019: not for use in laying birds", "eggs"),
        ("formaldehyde", "squid", TODAY, "List of non-food substances", "aquatic_products"),
        ("borax", "pork", TODAY, "List of non-food substances", "all"),
        ("sodium_formaldehyde_sulfoxylate", "rice", TODAY, "List of non-food substances", "all"),
        ("sudan_red", "dried_chili", TODAY, "List of non-food substances", "all"),
    ],
)
def test_banned_detections(analyte: str, food: str, day: date, announcement: str, scope: str) -> None:
    v = both(make(analyte, food, value=2, unit="µg/kg", day=day))
    assert (v.verdict, v.rule, v.limit_food) == (V.banned, Rule.ban.value, scope), v.basis
    assert v.edition is not None and v.edition.startswith(announcement)
    assert v.confidence == UNVERIFIED and v.source


def test_a_banned_compound_follows_the_lod_loq_rules() -> None:
    trace = both(make("孔雀石绿", "草鱼", value=0.7, unit="µg/kg", lod=0.5, loq=1.0, day=TODAY))
    assert (trace.verdict, trace.rule) == (V.watch, Rule.ban_trace.value)
    assert "not a legal finding" in trace.basis
    below_lod = both(make("孔雀石绿", "草鱼", value=0.3, unit="µg/kg", lod=0.5, loq=1.0, day=TODAY))
    assert (below_lod.verdict, below_lod.rule) == (V.compliant, Rule.ban.value)


def test_bans_stay_in_their_scope() -> None:
    assert both(make("甲醛", "香菇", value=30, day=TODAY)).verdict is V.no_limit  # natural in shiitake
    assert both(make("克伦特罗", "大白菜", value=0.002, day=TODAY)).verdict is V.no_limit
    before = both(make("sem", "mitten_crab", value=2, unit="µg/kg", day=date(2015, 3, 1)))
    assert before.verdict is V.no_limit  # the earlier listing of nitrofurazone is not carried


def test_a_non_food_substance_in_an_unknown_food_is_still_banned() -> None:
    v = both(make("硼砂", "腐竹", value=80, day=TODAY))  # 腐竹 is not in the classification
    assert (v.verdict, v.limit_food) == (V.banned, "all")


def test_predecessor_bans_end_where_announcement_250_starts() -> None:
    for b in REF.bans:
        if b.announcement.startswith(("MOA announcement 193", "MOA/MOH/SDA announcement 176")):
            assert b.effective_to == date(2019, 12, 27), b
        if b.announcement.startswith("MARA announcement 250"):
            assert b.effective_from == date(2019, 12, 27) and b.effective_to is None
            assert b.scope in ANIMAL_ROOTS


# --- additives: GB 2760-2024 ---------------------------------------------------------------------------------

# (analyte label, food label, value mg/kg, verdict, limit mg/kg, food whose level applies)
ADDITIVES = [
    ("亚硝酸盐", "腊肉", 45, V.exceeds, 30.0, "cured_meat"),  # cured meat, residue as NaNO2 30 mg/kg
    ("亚硝酸钠", "西式火腿", 60, V.watch, 70.0, "western_ham"),  # western ham 70 mg/kg
    ("亚硝酸盐", "火腿肠", 20, V.watch, 30.0, "sausage"),  # sausage 30 mg/kg
    ("二氧化硫", "桂圆干", 150, V.exceeds, 100.0, "dried_fruit"),  # dried fruit 0.1 g/kg
    ("二氧化硫", "萝卜干", 150, V.watch, 200.0, "dried_vegetables"),  # dried vegetables 0.2 g/kg
    ("二氧化硫", "果脯", 400, V.exceeds, 350.0, "preserved_fruit"),  # preserved fruit 0.35 g/kg
    ("苯甲酸", "咸菜", 800, V.watch, 1000.0, "pickled_vegetables"),  # pickled vegetables 1.0 g/kg
    ("苯甲酸钠", "蜜饯", 600, V.exceeds, 500.0, "preserved_fruit"),  # preserved fruit 0.5 g/kg
    ("山梨酸钾", "果酱", 300, V.compliant, 1000.0, "jam"),  # jam 1.0 g/kg
    ("山梨酸", "卤肉", 100, V.exceeds, 75.0, "cooked_meat"),  # cooked meat 0.075 g/kg
]


@pytest.mark.parametrize(("analyte", "food", "mg_kg", "verdict", "limit", "limit_food"), ADDITIVES)
def test_additive_levels(analyte: str, food: str, mg_kg: float, verdict: V, limit: float, limit_food: str) -> None:
    v = both(make(analyte, food, value=mg_kg, day=TODAY))
    assert (v.verdict, v.rule, v.limit_mg_kg, v.limit_food) == (verdict, Rule.additive.value, limit, limit_food)
    assert v.edition == "GB 2760-2024" and v.confidence == UNVERIFIED and v.source


def test_additive_levels_start_with_gb2760_2024() -> None:
    v = both(make("亚硝酸盐", "腊肉", value=45, day=date(2024, 12, 1)))
    assert v.verdict is V.no_limit  # GB 2760-2014 values are not carried


def test_processed_foods_inherit_no_fresh_produce_or_meat_limit() -> None:
    assert REF.ancestors("cured_meat") == ("cured_meat", "processed_foods")
    assert both(make("铅", "腊肉", value=0.5, day=TODAY)).verdict is V.no_limit
    assert both(make("恩诺沙星", "腊肉", value=500, unit="µg/kg", day=TODAY)).verdict is V.no_limit


# --- quick tests: strips and kits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analyte", "food", "value", "unit", "verdict", "rule"),
    [
        ("clenbuterol", "pork", 0.3, "µg/kg", V.compliant, Rule.quick_ban),  # below the 0.5 µg/kg strip cut-off
        ("clenbuterol", "pork", 0.8, "µg/kg", V.positive, Rule.quick_ban),  # never banned from a strip
        ("ractopamine", "beef", 0.8, "µg/kg", V.compliant, Rule.quick_ban),  # cut-off 1 µg/kg
        ("beta_agonists", "pork", 0.7, "µg/kg", V.watch, Rule.ban_trace),  # three-in-one: watch 0.5, positive 1
        ("malachite_green", "grass_carp", 3, "µg/kg", V.positive, Rule.quick_ban),  # cut-off 2 µg/kg
        ("chloramphenicol", "penaeid_prawn", 0.2, "µg/kg", V.compliant, Rule.quick_ban),  # cut-off 0.3 µg/kg
        ("formaldehyde", "squid", 6, "mg/kg", V.watch, Rule.ban_trace),  # kit: watch 5, positive 10 mg/kg
        ("formaldehyde", "squid", 15, "mg/kg", V.positive, Rule.quick_ban),
        ("enrofloxacin", "chicken", 60, "µg/kg", V.watch, Rule.quick_limit),  # amount vs the 100 µg/kg limit
        ("enrofloxacin", "chicken_egg", 8, "µg/kg", V.positive, Rule.quick_ban),  # eggs: not to be found
        ("nitrite", "cured_meat", 45, "mg/kg", V.positive, Rule.quick_limit),  # kit amount vs 30 mg/kg
        ("sulfur_dioxide", "dried_longan", 40, "mg/kg", V.compliant, Rule.quick_limit),  # vs 100 mg/kg
    ],
)
def test_quick_amounts_read_against_the_kit_cut_off(
    analyte: str, food: str, value: float, unit: str, verdict: V, rule: Rule
) -> None:
    v = both(make(analyte, food, value=value, unit=unit, method="colloidal_gold", day=TODAY))
    assert (v.verdict, v.rule) == (verdict, rule.value), v.basis
    assert "kit cut-off" in v.basis and v.verdict not in (V.banned, V.exceeds)


def test_a_device_lod_wins_over_the_kit_cut_off() -> None:
    v = both(make("clenbuterol", "pork", value=0.3, unit="µg/kg", lod=0.1, method="colloidal_gold", day=TODAY))
    assert (v.verdict, v.rule) == (V.positive, Rule.quick_ban.value)
    assert "kit cut-off" not in v.basis


@pytest.mark.parametrize(
    ("analyte", "food", "edition"),
    [
        ("瘦肉精", "猪肉", "MARA announcement 250 (2019)"),
        ("孔雀石绿", "草鱼", "MARA announcement 250 (2019)"),
        ("硼砂", "pork", "List of non-food substances"),
    ],
)
def test_a_strip_positive_is_positive_and_names_the_ban(analyte: str, food: str, edition: str) -> None:
    v = both(make(analyte, food, qualitative="positive", method="colloidal_gold", day=TODAY))
    assert (v.verdict, v.rule) == (V.positive, Rule.quick_qualitative.value)
    assert v.edition is not None and v.edition.startswith(edition) and "the kit reads positive" in v.basis
    negative = both(make(analyte, food, qualitative="negative", method="colloidal_gold", day=TODAY))
    assert negative.verdict is V.compliant


def test_kit_cut_offs_carry_source_and_confidence() -> None:
    mass = [c for c in REF.cutoffs if c.is_mass]
    assert {c.analyte for c in mass} >= {
        "clenbuterol",
        "ractopamine",
        "malachite_green",
        "chloramphenicol",
        "enrofloxacin",
        "formaldehyde",
        "sulfur_dioxide",
        "nitrite",
    }
    for c in mass:
        assert c.source and c.confidence is Confidence.unverified and c.positive_mg_kg is not None
        assert c.watch_mg_kg is not None and 0 < c.watch_mg_kg <= c.positive_mg_kg
    clen = REF.mass_cutoff(Method.colloidal_gold, "clenbuterol")
    assert clen is not None and clen.positive_mg_kg == 0.0005  # 0.5 µg/kg
    assert REF.mass_cutoff(Method.lc_msms, "clenbuterol") is None  # strips only
    kit = REF.mass_cutoff(Method.xrf, "formaldehyde")  # a rapid kit under whichever quick method
    assert kit is not None and kit.method is None and kit.positive_mg_kg == 10


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("*,ache_inhibition,%,50,40,x,y,unverified", "any quick method"),
        ("colloidal_gold,clenbuterol,ppb,1,1,x,y,unverified", "unit 'ppb'"),
        ("*,*,mg/kg,1,1,x,y,unverified", "names its analyte"),
    ],
)
def test_cut_off_rows_are_checked(tmp_path: Path, row: str, reason: str) -> None:
    ref_dir = tmp_path / "ref"
    shutil.copytree(DATA_DIR, ref_dir, ignore=shutil.ignore_patterns("sources", "*.py", "__pycache__"))
    with (ref_dir / "quick_cutoffs.csv").open("a", encoding="utf-8") as f:
        f.write(row + "\n")
    with pytest.raises(ReferenceDataError, match=reason):
        load_reference(ref_dir)


# --- the loader: optional files, families per file ---------------------------------------------------------


def test_missing_vet_drug_and_additive_files_mean_no_such_limits(tmp_path: Path) -> None:
    ref_dir = tmp_path / "ref"
    shutil.copytree(DATA_DIR, ref_dir, ignore=shutil.ignore_patterns("sources", "*.py", "__pycache__"))
    (ref_dir / "vet_drug_mrls.csv").unlink()
    (ref_dir / "additive_limits.csv").unlink()
    ref = load_reference(ref_dir)
    assert {lim.kind for lim in ref.limits} == {LimitKind.mrl, LimitKind.contaminant}


def test_a_pesticide_in_the_vet_drug_file_is_rejected(tmp_path: Path) -> None:
    ref_dir = tmp_path / "ref"
    shutil.copytree(DATA_DIR, ref_dir, ignore=shutil.ignore_patterns("sources", "*.py", "__pycache__"))
    with (ref_dir / "vet_drug_mrls.csv").open("a", encoding="utf-8") as f:
        f.write("carbofuran,pork,0.1,GB 31650-2019,2020-04-01,,x,unverified\n")
    with pytest.raises(ReferenceDataError, match="holds veterinary_drug limits"):
        load_reference(ref_dir)


def test_a_contaminant_cannot_be_banned(tmp_path: Path) -> None:
    ref_dir = tmp_path / "ref"
    shutil.copytree(DATA_DIR, ref_dir, ignore=shutil.ignore_patterns("sources", "*.py", "__pycache__"))
    with (ref_dir / "bans.csv").open("a", encoding="utf-8") as f:
        f.write("nitrite,all,2026-06-01,,x,y,unverified\n")
    with pytest.raises(ReferenceDataError, match="a ban names one of banned_compound, pesticide, veterinary_drug"):
        load_reference(ref_dir)
