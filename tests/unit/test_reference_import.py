"""The standards' tables as input: the importer (each problem kind), `foodrisk reference build` (the
committed files equal a fresh build) and `foodrisk reference import` (a complete new directory)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from pathlib import Path

import pytest

from pipeline.cli import build_parser
from pipeline.reference_cmd import PROVENANCE_FILE, SOURCES_DIR, build, main_reference
from schemas.codes import AnalyteType, Confidence
from schemas.reference import DATA_DIR, LimitKind, default_reference, load_reference
from schemas.reference.importer import EditionSpec, FoodIndex, Problem, ProblemKind, parse_table

REF = default_reference()
SPEC = EditionSpec(
    edition="GB 2763-2026",
    kind=LimitKind.mrl,
    effective_from=date(2026, 3, 1),
    effective_to=None,
    default_source="test table",
)
HEADER = "analyte,food_path,limit,unit,remark,residue_definition,source,confidence"


Row = tuple[str, str, float]


def parse(body: str, *, header: str = HEADER, spec: EditionSpec = SPEC) -> tuple[list[Row], list[Problem]]:
    result = parse_table(f"# a comment\n{header}\n{body}", file="t.csv", reference=REF, spec=spec)
    return [(r.limit.analyte, r.limit.food, r.limit.limit_mg_kg) for r in result.limits], list(result.problems)


# --- parsing ----------------------------------------------------------------------------------------------


def test_regulator_layout_with_chinese_headers_and_full_width_colon() -> None:
    result = parse_table(
        "农药,食品类别/名称,最大残留限量,单位,备注,残留物\n"
        "克百威,蔬菜：豆类蔬菜：豇豆,20,µg/kg,,克百威及3-羟基克百威之和\n"
        "毒死蜱,蔬菜:叶菜类蔬菜:芹菜,0.05*,mg/kg,,毒死蜱\n"
        "Imidacloprid,香蕉,0.05,,* 临时限量,吡虫啉\n",
        file="t.csv",
        reference=REF,
        spec=SPEC,
    )
    assert result.problems == ()
    rows = {(r.limit.analyte, r.limit.food): r for r in result.limits}
    assert rows[("carbofuran", "cowpea")].limit.limit_mg_kg == 0.02  # 20 µg/kg, converted exactly
    assert rows[("carbofuran", "cowpea")].residue_definition == "克百威及3-羟基克百威之和"
    assert rows[("chlorpyrifos", "celery")].temporary
    assert "temporary limit (*)" in rows[("chlorpyrifos", "celery")].limit.source
    banana = rows[("imidacloprid", "banana")]
    assert banana.temporary and "remark: 临时限量" in banana.limit.source
    assert banana.limit.confidence is Confidence.unverified  # empty cell: the default
    assert (banana.limit.edition, banana.limit.effective_from) == ("GB 2763-2026", date(2026, 3, 1))
    assert banana.limit.line == 4
    assert result.residue_definitions()["carbofuran"] == "克百威及3-羟基克百威之和"


def test_food_paths() -> None:
    foods = FoodIndex(REF)
    assert foods.resolve("蔬菜:叶菜类蔬菜:大白菜") == ("chinese_cabbage", "")
    assert foods.resolve("大白菜") == ("chinese_cabbage", "")  # a single unique name
    assert foods.resolve("蔬菜:豇豆") == ("cowpea", "")  # a path may skip levels
    assert foods.resolve("蔬菜：豆类蔬菜") == ("legume_vegetables", "")
    assert foods.resolve("长豇豆") == ("cowpea", "")  # an alias
    code, why = foods.resolve("水果:豆类蔬菜:豇豆")
    assert code is None and "not under" in why
    code, why = foods.resolve("豆类蔬菜:蔬菜:豇豆")  # ancestors in the wrong order
    assert code is None
    code, why = foods.resolve("蔬菜:瓜类蔬菜:火星瓜")
    assert code is None and "火星瓜" in why
    assert foods.resolve("蔬菜::豇豆")[0] is None


@pytest.mark.parametrize(
    ("row", "kind"),
    [
        ("克百威,蔬菜:瓜类蔬菜:火星瓜,0.02,mg/kg,,,,", ProblemKind.unknown_path),
        ("克百威,水果:豇豆,0.02,mg/kg,,,,", ProblemKind.unknown_path),
        ("没有这种农药,蔬菜,0.02,mg/kg,,,,", ProblemKind.unknown_analyte),
        ("克百威,蔬菜,abc,mg/kg,,,,", ProblemKind.bad_number),
        ("克百威,蔬菜,0,mg/kg,,,,", ProblemKind.bad_number),
        ("克百威,蔬菜,-1,mg/kg,,,,", ProblemKind.bad_number),
        ("克百威,蔬菜,inf,mg/kg,,,,", ProblemKind.bad_number),
        ("克百威,蔬菜,,mg/kg,,,,", ProblemKind.bad_number),
        ("克百威,蔬菜,0.02,g/L,,,,", ProblemKind.bad_unit),
        ("克百威,蔬菜,0.02,mg/kg,,,,sure", ProblemKind.bad_confidence),
        ("铅,蔬菜,0.1,mg/kg,,,,", ProblemKind.wrong_kind),
        ("克百威,蔬菜,0.02,mg/kg", ProblemKind.bad_row),
    ],
)
def test_each_problem_kind_names_file_and_line(row: str, kind: ProblemKind) -> None:
    rows, problems = parse(f"毒死蜱,芹菜,0.05,mg/kg,,,,\n{row}\n")
    assert rows == [("chlorpyrifos", "celery", 0.05)]  # the good row stays, the bad one is reported
    [problem] = problems
    assert (problem.kind, problem.file, problem.line) == (kind, "t.csv", 4)
    assert str(problem).startswith(f"t.csv:4: {kind}: ")


def test_duplicate_with_another_value_keeps_neither() -> None:
    body = "克百威,豇豆,0.02,mg/kg,,,,\n毒死蜱,芹菜,0.05,mg/kg,,,,\nCarbofuran,蔬菜:豆类蔬菜:豇豆,0.05,,,,,\n"
    rows, problems = parse(body)
    assert rows == [("chlorpyrifos", "celery", 0.05)]
    [problem] = problems
    assert (problem.kind, problem.line) == (ProblemKind.duplicate, 5)
    assert "line 3" in problem.message


def test_exact_repeat_is_kept_once_and_counted() -> None:
    result = parse_table(
        f"{HEADER}\n克百威,豇豆,0.02,mg/kg,,,,\ncarbofuran,蔬菜:豆类蔬菜:豇豆,20,µg/kg,,,,\n",
        file="t.csv",
        reference=REF,
        spec=SPEC,
    )
    assert result.problems == () and len(result.limits) == 1 and len(result.merged) == 1


@pytest.mark.parametrize(
    "header", ["analyte,limit,unit", "analyte,food_path,limit,食品类别", "", "food_path,limit"]
)
def test_bad_header(header: str) -> None:
    result = parse_table(f"{header}\n" if header else "# only comments\n", file="t.csv", reference=REF, spec=SPEC)
    assert [p.kind for p in result.problems] == [ProblemKind.bad_header]
    assert result.limits == ()


def test_contaminant_table() -> None:
    spec = EditionSpec("GB 2762-2022", LimitKind.contaminant, date(2023, 6, 30), None, "t")
    rows, problems = parse("铅,蔬菜:叶菜类蔬菜,300,μg/kg,,,,\n克百威,蔬菜,0.02,mg/kg,,,,\n", spec=spec)
    assert rows == [("lead", "leafy_vegetables", 0.3)]
    assert [p.kind for p in problems] == [ProblemKind.wrong_kind]


def test_parse_is_pure() -> None:
    text = f"{HEADER}\n克百威,豇豆,0.02,mg/kg,,,,\n"
    first = parse_table(text, file="t", reference=REF, spec=SPEC)
    assert first == parse_table(text, file="t", reference=REF, spec=SPEC)


# --- build ------------------------------------------------------------------------------------------------


def test_committed_reference_files_equal_a_fresh_build() -> None:
    """Nobody edits pesticide_mrls.csv / contaminant_limits.csv by hand: edit sources/ and `make reference`."""
    result = build()
    for name, text in result.outputs.items():
        assert (DATA_DIR / name).read_text(encoding="utf-8") == text, f"{name}: run `make reference`"


def test_build_drops_nothing_silently() -> None:
    result = build()
    provenance = json.loads(result.outputs[PROVENANCE_FILE])
    for table in provenance["tables"]:
        if table["edition"] == "GB 2763-2026":  # carried forward from GB 2763-2021's rows
            continue
        accounted = table["rows_written"] + len(table["problems"]) + table["repeats_kept_once"]
        assert accounted == table["rows_read"], table["table"]
    # only unknown food paths are let through (issue 19: foods.csv does not hold all of Appendix A yet)
    assert {p.kind for p in result.problems} <= {ProblemKind.unknown_path}


def test_shipped_breadth() -> None:
    sources = (SOURCES_DIR / "gb2763-2021.csv").read_text(encoding="utf-8")
    table = parse_table(sources, file="gb2763-2021.csv", reference=REF, spec=SPEC)
    assert len({r.limit.analyte for r in table.limits}) >= 100  # pesticides with a limit on a known food
    limits_2021 = [lim for lim in REF.limits if lim.edition == "GB 2763-2021"]
    assert len(limits_2021) >= 300
    assert all(lim.source and lim.confidence for lim in limits_2021)
    recalled = [lim for lim in limits_2021 if lim.source.startswith("recalled from GB 2763-2021")]
    assert recalled and all(lim.confidence is Confidence.unverified for lim in recalled)


# --- bans and residues ------------------------------------------------------------------------------------


def test_2002_scopes_exist_and_carbofuran_history() -> None:
    for group in ("vegetables", "fruit", "medicinal_plants"):
        food = REF.commodity(group)
        assert food is not None and food.is_group
    assert REF.commodity("tea") is not None  # a named food (under beverages): the ban covers it
    history = sorted((b.effective_from, b.effective_to, b.scope) for b in REF.bans if b.analyte == "carbofuran")
    assert history == [
        (date(2002, 6, 5), date(2026, 6, 1), "fruit"),
        (date(2002, 6, 5), date(2026, 6, 1), "medicinal_plants"),
        (date(2002, 6, 5), date(2026, 6, 1), "tea"),
        (date(2002, 6, 5), date(2026, 6, 1), "vegetables"),
        (date(2026, 6, 1), None, "all"),
    ]
    announcements = {b.announcement.split(":")[0] for b in REF.bans}
    assert any("199" in a for a in announcements) and any("736" in a for a in announcements)
    assert all(REF.analyte(b.analyte) is not None for b in REF.bans)


def test_residue_definitions_name_known_analytes() -> None:
    text = (DATA_DIR / "residues.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(line for line in io.StringIO(text) if not line.startswith("#")))
    assert rows and set(rows[0]) == {"definition", "component", "factor", "source", "confidence"}
    definitions: dict[str, set[str]] = {}
    for row in rows:
        kinds = set()
        for code in (row["definition"], row["component"]):
            analyte = REF.analyte(code)
            assert analyte is not None, code
            kinds.add(analyte.type)
        # a sum adds parts of one family: pesticides (GB 2763) or veterinary drugs (GB 31650)
        assert len(kinds) == 1 and kinds <= {AnalyteType.pesticide, AnalyteType.veterinary_drug}, row
        assert 0 < float(row["factor"]) <= 2 and row["source"] and Confidence(row["confidence"])
        definitions.setdefault(row["definition"], set()).add(row["component"])
    assert definitions["carbofuran"] == {"carbofuran", "carbofuran_3_hydroxy"}
    assert {"phorate", "phorate_sulfoxide", "phorate_sulfone", "phorate_oxon"} <= definitions["phorate"]
    assert definitions["aldicarb"] == {"aldicarb", "aldicarb_sulfoxide", "aldicarb_sulfone"}
    assert definitions["fipronil"] == {"fipronil", "fipronil_sulfone", "fipronil_sulfide", "fipronil_desulfinyl"}
    assert definitions["enrofloxacin"] == {"enrofloxacin", "ciprofloxacin"}


# --- import -----------------------------------------------------------------------------------------------


def run(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    args = build_parser().parse_args(["reference", *argv])
    return main_reference(args, err), err.getvalue()


def write_table(tmp_path: Path, body: str) -> Path:
    table = tmp_path / "gb2763-2027.csv"
    table.write_text(f"{HEADER}\n{body}", encoding="utf-8")
    return table


IMPORT = ["--standard", "GB 2763", "--edition", "GB 2763-2027", "--from", "2027-03-01"]


def test_import_writes_a_complete_new_directory(tmp_path: Path) -> None:
    table = write_table(tmp_path, "克百威,豇豆,0.01,mg/kg,,,GB 2763-2027 table,checked\n毒死蜱,芹菜,30,µg/kg,*,,,\n")
    out = tmp_path / "ref"
    code, err = run(["import", str(table), *IMPORT, "--out", str(out)])
    assert code == 0, err
    ref = load_reference(out)
    assert ref.editions["GB 2763-2026"].effective_to == date(2027, 3, 1)  # ended where the new one starts
    rows = {(lim.analyte, lim.food): lim for lim in ref.limits if lim.edition == "GB 2763-2027"}
    assert rows[("carbofuran", "cowpea")].confidence is Confidence.checked
    assert rows[("chlorpyrifos", "celery")].limit_mg_kg == 0.03
    assert "temporary limit" in rows[("chlorpyrifos", "celery")].source
    old = [lim for lim in ref.limits if lim.edition == "GB 2763-2026"]
    assert old and all(lim.effective_to == date(2027, 3, 1) for lim in old)
    assert len(ref.foods) == len(REF.foods) and len(ref.bans) == len(REF.bans)
    assert (out / "residues.csv").exists()
    provenance = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert provenance["rows_read"] == 2 and provenance["rows_written"] == 2 and provenance["problems"] == []
    assert provenance["editions_ended"] == ["GB 2763-2026"] and len(provenance["sha256"]) == 64
    assert provenance["built_at"]


def test_import_refuses_unknown_paths_unless_allowed(tmp_path: Path) -> None:
    table = write_table(tmp_path, "克百威,豇豆,0.01,mg/kg,,,,\n克百威,蔬菜:瓜类蔬菜:火星瓜,0.01,mg/kg,,,,\n")
    out = tmp_path / "ref"
    code, err = run(["import", str(table), *IMPORT, "--out", str(out)])
    assert code == 1 and "gb2763-2027.csv:3: unknown_path" in err and not out.exists()
    code, err = run(["import", str(table), *IMPORT, "--out", str(out), "--allow-unknown"])
    assert code == 0 and "unknown_path" in err
    provenance = json.loads((out / PROVENANCE_FILE).read_text(encoding="utf-8"))
    assert provenance["unknown_paths"] == ["蔬菜:瓜类蔬菜:火星瓜"] and provenance["rows_written"] == 1


def test_import_refuses_other_problems_even_with_allow_unknown(tmp_path: Path) -> None:
    table = write_table(tmp_path, "克百威,豇豆,zero,mg/kg,,,,\n")
    out = tmp_path / "ref"
    code, err = run(["import", str(table), *IMPORT, "--out", str(out), "--allow-unknown"])
    assert code == 1 and "bad_number" in err and not out.exists()


def test_import_into_a_non_empty_directory_is_refused(tmp_path: Path) -> None:
    table = write_table(tmp_path, "克百威,豇豆,0.01,mg/kg,,,,\n")
    (tmp_path / "ref").mkdir()
    (tmp_path / "ref" / "x").write_text("x")
    code, err = run(["import", str(table), *IMPORT, "--out", str(tmp_path / "ref")])
    assert code == 2 and "not empty" in err


def test_build_check_and_write(tmp_path: Path) -> None:
    out = tmp_path / "ref"
    out.mkdir()
    for item in DATA_DIR.iterdir():
        if item.is_file() and item.suffix in (".csv", ".json"):
            (out / item.name).write_bytes(item.read_bytes())
    assert run(["build", "--out", str(out), "--check"])[0] == 0  # every source row resolves
    (out / "pesticide_mrls.csv").write_text("edited by hand\n", encoding="utf-8")
    code, err = run(["build", "--out", str(out), "--check", "--allow-unknown"])
    assert code == 1 and "pesticide_mrls.csv differs" in err
    assert run(["build", "--out", str(out), "--allow-unknown"])[0] == 0
    assert (out / "pesticide_mrls.csv").read_text(encoding="utf-8") == (DATA_DIR / "pesticide_mrls.csv").read_text(
        encoding="utf-8"
    )
