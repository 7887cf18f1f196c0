"""The published pages of a :class:`~pipeline.publish.tally.Report`, as files (pure: takes the report,
returns ``{file name: text}``; the shell writes them).

Each table is one HTML page with a CSV and a JSON file of the same name beside it, holding the same
numbers. Labels are Chinese and English. The pages need nothing outside themselves: the CSS is inline,
there is no script (a Content-Security-Policy meta tag forbids scripts and any other origin), and
they read on a phone (viewport meta; below 640 px each table row becomes a card whose cells carry
their column name). Every value from the data is HTML-escaped; CSV cells that a spreadsheet would
take for a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) get a leading apostrophe.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from pipeline.publish.tally import SITE_TYPE_NAMES, Counts, Finding, Line, PriorityLine, Report

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str
    numeric: bool = False
    html: bool = True  # shown on the page (every column is in the CSV and JSON)
    also: str = ""  # on the page, this other column's value follows (the English name after the Chinese)

    @property
    def label(self) -> str:
        return f"{self.zh} {self.en}"


@dataclass(frozen=True, slots=True)
class Table:
    """One published table: its page and file stem, titles, columns and records."""

    stem: str
    title_zh: str
    title_en: str
    intro_zh: str
    intro_en: str
    columns: tuple[Column, ...]
    records: list[Record]
    row_class: Callable[[Record], str] | None = None
    empty_zh: str = "本期无记录。"
    empty_en: str = "Nothing in this period."


COUNT_COLUMNS: tuple[Column, ...] = (
    Column("tests", "检测数", "Tests", numeric=True),
    Column("lab_tests", "实验室检测", "Lab tests", numeric=True),
    Column("lab_pass", "合格", "Pass", numeric=True),
    Column("lab_noncompliant", "不合格", "Non-compliant", numeric=True),
    Column("lab_not_judged", "实验室未判定", "Lab not judged", numeric=True, html=False),
    Column("lab_pass_rate_pct", "合格率(%)", "Pass rate (%)", numeric=True),
    Column("quick_tests", "快检", "Quick tests", numeric=True),
    Column("quick_negative", "快检阴性", "Quick negative", numeric=True, html=False),
    Column("quick_positive", "快检阳性(待实验室确认)", "Quick positive (unconfirmed)", numeric=True),
    Column("quick_not_judged", "快检未判定", "Quick not judged", numeric=True, html=False),
    Column("not_judged", "未判定", "Not judged", numeric=True),
)
NAME_COLUMNS: tuple[Column, ...] = (
    Column("key", "代码", "Code", html=False),
    Column("name_zh", "名称", "Name"),
    Column("name_en", "英文名称", "English name"),
)


def count_record(counts: Counts) -> Record:
    return {
        "tests": counts.tests, "lab_tests": counts.lab_tests, "lab_pass": counts.lab_pass,
        "lab_noncompliant": counts.lab_noncompliant, "lab_not_judged": counts.lab_not_judged,
        "lab_pass_rate_pct": counts.pass_rate_pct, "quick_tests": counts.quick_tests,
        "quick_negative": counts.quick_negative, "quick_positive": counts.quick_positive,
        "quick_not_judged": counts.quick_not_judged, "not_judged": counts.not_judged,
    }


def line_record(line: Line, *, with_level: bool = False) -> Record:
    rec: Record = {"key": line.key, "name_zh": line.name_zh, "name_en": line.name_en}
    if with_level:
        rec |= {"level": line.level, "parent": line.parent}
    return rec | count_record(line.counts)


def finding_record(f: Finding) -> Record:
    site_zh, site_en = SITE_TYPE_NAMES.get(f.site_type, (f.site_type, f.site_type))
    return {
        "sampled_on": f.sampled_on, "district": f.district, "site_type": f.site_type,
        "site_type_zh": site_zh, "site_type_en": site_en, "site_name": f.site_name, "vendor_id": f.vendor_id,
        "commodity": f.commodity, "commodity_zh": f.commodity_zh, "commodity_en": f.commodity_en,
        "analyte": f.analyte, "analyte_zh": f.analyte_zh, "analyte_en": f.analyte_en, "verdict": f.verdict,
        "value_mg_kg": f.value_mg_kg, "limit_mg_kg": f.limit_mg_kg, "basis": f.basis, "sample_id": f.sample_id,
    }


def priority_record(p: PriorityLine) -> Record:
    return {
        "rank": p.priority.rank, "category": p.priority.category, "label": p.priority.label,
        "votes": p.priority.votes, "name_zh": p.name_zh, "name_en": p.name_en, "classified": p.known,
    } | count_record(p.counts)


FINDING_COLUMNS: tuple[Column, ...] = (
    Column("sampled_on", "抽样日期", "Sampled"),
    Column("district", "区", "District"),
    Column("site_type", "场所类型", "Site type", html=False),
    Column("site_type_zh", "场所类型", "Site type (zh)", html=False),
    Column("site_type_en", "场所类型", "Site type (en)", html=False),
    Column("site_name", "被抽样单位", "Site"),
    Column("vendor_id", "经营者", "Vendor"),
    Column("commodity", "食品代码", "Product code", html=False),
    Column("commodity_zh", "食品", "Product", also="commodity_en"),
    Column("commodity_en", "食品(英)", "Product (en)", html=False),
    Column("analyte", "项目代码", "Item code", html=False),
    Column("analyte_zh", "不合格项目", "Item", also="analyte_en"),
    Column("analyte_en", "项目(英)", "Item (en)", html=False),
    Column("verdict", "结论", "Verdict"),
    Column("value_mg_kg", "检测值 mg/kg", "Value mg/kg", numeric=True),
    Column("limit_mg_kg", "限量 mg/kg", "Limit mg/kg", numeric=True),
    Column("basis", "判定依据", "Basis"),
    Column("sample_id", "样品编号", "Sample id", html=False),
)
PRIORITY_COLUMNS: tuple[Column, ...] = (
    Column("rank", "名次", "Rank", numeric=True),
    Column("category", "类别代码", "Category code", html=False),
    Column("label", "投票名称", "Voted as", html=False),
    Column("votes", "票数", "Votes", numeric=True),
    Column("name_zh", "类别", "Category"),
    Column("name_en", "英文名称", "Category (English)"),
    Column("classified", "已归类", "Classified", html=False),
)
VERDICT_NAMES = {"exceeds": "超标 Exceeds the limit", "banned": "检出禁用物质 Banned substance found"}


def tables(report: Report) -> list[Table]:
    """The published tables of a report, in page order."""
    not_judged_en = ("Not judged: unclassified labels, inconclusive methods and results with no limit in force, "
                     "never counted as passes.")
    not_judged_zh = "未判定：食品或项目名称未归类、方法不能判定、无适用限量的结果，不计为合格。"
    rate_zh = "合格率 = 合格 / (合格 + 不合格)，只计实验室(确证)检测；快检阳性只计数，待实验室确认，不公布经营者。"
    rate_en = ("Pass rate = pass / (pass + non-compliant), lab (confirmatory) tests only; quick-test positives are "
               "counts awaiting lab confirmation and name no vendor.")
    return [
        Table("categories", "按食品类别", "By food category",
              f"食品类别按 GB 2763-2021 附录A (大类与亚类)。{rate_zh}{not_judged_zh}",
              f"Food categories and subgroups of GB 2763-2021 Appendix A. {rate_en} {not_judged_en}",
              (*NAME_COLUMNS, Column("level", "层级", "Level", html=False),
               Column("parent", "上级", "Parent", html=False), *COUNT_COLUMNS),
              [line_record(x, with_level=True) for x in report.categories],
              row_class=lambda r: "sub" if r.get("level") == "subgroup" else ""),
        Table("districts", "按区", "By district", f"{rate_zh}{not_judged_zh}", f"{rate_en} {not_judged_en}",
              (*NAME_COLUMNS[:2], *COUNT_COLUMNS), [line_record(x) for x in report.districts]),
        Table("site-types", "按场所类型", "By site type", f"{rate_zh}{not_judged_zh}", f"{rate_en} {not_judged_en}",
              (*NAME_COLUMNS, *COUNT_COLUMNS), [line_record(x) for x in report.site_types]),
        Table("noncompliant", "不合格结果", "Non-compliant results",
              "仅列实验室确证检测(确证方法)判定超标或检出禁用物质的结果。快检阳性不在此列。",
              "Only results of confirmatory lab methods judged over the limit or with a banned substance found. "
              "Quick-test positives are not listed here.",
              FINDING_COLUMNS, [finding_record(f) for f in report.findings],
              empty_zh="本期实验室检测未发现不合格。", empty_en="No lab test found a non-compliance this period."),
        Table("priorities", "市民“你点我检”重点类别", "Citizens' priority categories",
              f"本期得票前十的食品类别及其检测结果。{rate_zh}",
              f"The ten food categories with the most citizens' votes this period, with their results. {rate_en}",
              (*PRIORITY_COLUMNS, *COUNT_COLUMNS), [priority_record(p) for p in report.priorities],
              empty_zh="本期未导入市民投票。", empty_en="No citizens' votes were imported for this period."),
    ]


# ---------------------------------------------------------------------------------------------
# CSV and JSON


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([c.key for c in table.columns])
    w.writerows([[_csv_cell(r.get(c.key)) for c in table.columns] for r in table.records])
    return buf.getvalue()


def to_json(table: Table, report: Report) -> str:
    doc = {
        "period": report.period, "generated_at": report.generated_at, "table": table.stem,
        "title": {"zh": table.title_zh, "en": table.title_en},
        "columns": [{"key": c.key, "zh": c.zh, "en": c.en} for c in table.columns],
        "rows": table.records,
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n"


def summary_record(report: Report) -> Record:
    fu = report.follow_ups
    return {"period": report.period, "findings_named": len(report.findings)} | count_record(report.total) | {
        "quick_positive_confirmed": fu.confirmed, "quick_positive_not_confirmed": fu.not_confirmed,
        "quick_positive_awaiting": fu.awaiting,
    }


FOLLOW_UP_COLUMNS: tuple[Column, ...] = (
    Column("quick_positive_confirmed", "快检阳性经实验室确认", "Quick positives confirmed by a lab", numeric=True),
    Column("quick_positive_not_confirmed", "快检阳性经实验室复检合格", "Quick positives not confirmed (lab passed)",
           numeric=True),
    Column("quick_positive_awaiting", "快检阳性待复检", "Quick positives awaiting a lab result", numeric=True),
)


# ---------------------------------------------------------------------------------------------
# HTML

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei","Noto Sans CJK SC",
"WenQuanYi Micro Hei",sans-serif;
margin:0 auto;max-width:1100px;padding:12px;color:#1a1a1a;line-height:1.45;background:#fff}
h1{font-size:1.35rem;margin:.4em 0}h2{font-size:1.1rem}
nav{display:flex;flex-wrap:wrap;gap:.3em .8em;margin:.5em 0 1em;padding:.5em;background:#f2f5f8;border-radius:6px}
nav a{color:#0b4f8a}
p.note{color:#444;font-size:.92rem}
table.data{border-collapse:collapse;width:100%;font-size:.9rem}
table.data th,table.data td{border:1px solid #d6dbe0;padding:.35em .5em;vertical-align:top;text-align:left}
table.data th{background:#eef2f6}
table.data td.num{text-align:right;font-variant-numeric:tabular-nums}
table.data tr.sub td:first-child{padding-left:1.6em}
table.data tr.total td{font-weight:600}
.empty{padding:1em;background:#f7f7f7;border-radius:6px}
dl.summary{display:grid;grid-template-columns:minmax(0,max-content) auto;gap:.3em 1.2em;align-items:baseline}
dl.summary dd{margin:0;font-weight:600;text-align:right;font-variant-numeric:tabular-nums}
footer{margin-top:2em;font-size:.8rem;color:#555}
@media (max-width:640px){
 table.data thead{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0)}
 table.data,table.data tbody,table.data tr,table.data td{display:block;width:100%}
 table.data tr{border:1px solid #c8cfd6;border-radius:6px;margin:0 0 .7em;padding:.2em 0}
 table.data td,table.data td.num{border:none;border-bottom:1px solid #eef0f2;display:flex;
  justify-content:space-between;gap:1em;text-align:right;word-break:break-word}
 table.data td::before{content:attr(data-label);font-weight:600;text-align:left;color:#333;
  flex:0 0 auto;max-width:48%;word-break:normal;overflow-wrap:normal}
 table.data tr.sub td:first-child{padding-left:.5em}
}
"""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def e(value: object) -> str:
    """Text for HTML, escaped (quotes too: every value may land in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


def _number(value: Any, *, percent: bool = False) -> str:
    if value is None:
        return "—"
    if percent:
        return f"{float(value):.1f}"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _cell(col: Column, rec: Record) -> str:
    v = rec.get(col.key)
    if col.key == "verdict":
        text = VERDICT_NAMES.get(str(v), str(v))
    elif col.key == "limit_mg_kg" and v is None and rec.get("verdict") == "banned":
        text = "不得检出 Not permitted"
    elif col.numeric:
        text = _number(v, percent=col.key.endswith("_pct"))
    else:
        text = "—" if v in (None, "") else str(v)
    extra = rec.get(col.also) if col.also else None
    if extra and extra != v:
        text = f"{text} {extra}"
    cls = ' class="num"' if col.numeric else ""
    return f'<td{cls} data-label="{e(col.label)}">{e(text)}</td>'


def table_html(table: Table) -> str:
    cols = [c for c in table.columns if c.html]
    if not table.records:
        return f'<p class="empty">{e(table.empty_zh)} {e(table.empty_en)}</p>'
    head = "".join(f'<th scope="col">{e(c.zh)}<br><small>{e(c.en)}</small></th>' for c in cols)
    rows = []
    for r in table.records:
        cls = table.row_class(r) if table.row_class else ""
        attr = f' class="{e(cls)}"' if cls else ""
        rows.append(f"<tr{attr}>" + "".join(_cell(c, r) for c in cols) + "</tr>")
    return f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _nav(all_tables: Sequence[Table]) -> str:
    links = ['<a href="index.html">概况 Overview</a>']
    links += [f'<a href="{e(t.stem)}.html">{e(t.title_zh)} {e(t.title_en)}</a>' for t in all_tables]
    return "<nav>" + "".join(links) + "</nav>"


def page_html(title_zh: str, title_en: str, report: Report, body: str, all_tables: Sequence[Table], stem: str) -> str:
    title = f"{title_zh} {title_en} · {report.period}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">'
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>"
        f'<header><h1>食品安全抽检结果 Food safety test results · {e(report.period)}</h1>'
        f"<h2>{e(title_zh)} {e(title_en)}</h2></header>"
        f"{_nav(all_tables)}<main>{body}</main>"
        f'<footer>数据 Data: <a href="{e(stem)}.csv">{e(stem)}.csv</a> · <a href="{e(stem)}.json">{e(stem)}.json</a>'
        f" · 生成于 Generated {e(report.generated_at)}</footer></body></html>\n"
    )


def _summary_html(report: Report) -> str:
    t = report.total
    rate = _number(t.pass_rate_pct, percent=True)
    items = [
        ("检测总数", "Tests", _number(t.tests)),
        ("实验室检测", "Lab tests", _number(t.lab_tests)),
        ("合格", "Pass", _number(t.lab_pass)),
        ("不合格", "Non-compliant", _number(t.lab_noncompliant)),
        ("合格率(%)", "Pass rate (%)", rate),
        ("快检", "Quick tests", _number(t.quick_tests)),
        ("快检阳性(待实验室确认)", "Quick positives (awaiting lab confirmation)", _number(t.quick_positive)),
        ("未判定", "Not judged", _number(t.not_judged)),
        *((c.zh, c.en, _number(summary_record(report)[c.key])) for c in FOLLOW_UP_COLUMNS),
    ]
    dl = "".join(f'<dt>{e(zh)} {e(en)}</dt><dd data-key="{e(en)}">{e(v)}</dd>' for zh, en, v in items)
    return (
        f'<dl class="summary">{dl}</dl>'
        '<p class="note">合格率只计实验室(确证)检测：合格 / (合格 + 不合格)。快检阳性只计数，须经实验室确认，'
        "不公布经营者或场所名称。未判定(名称未归类、方法不能判定、无适用限量)不计为合格。</p>"
        '<p class="note">The pass rate counts lab (confirmatory) tests only: pass / (pass + non-compliant). '
        "Quick-test positives are counts awaiting lab confirmation and name no vendor or site. Results not judged "
        "(unclassified labels, inconclusive methods, no limit in force) are never counted as passes.</p>"
    )


def render_site(report: Report) -> dict[str, str]:
    """Every file of the published site: ``{name: text}`` (HTML, CSV, JSON), UTF-8 text."""
    all_tables = tables(report)
    files: dict[str, str] = {}
    for t in all_tables:
        body = f'<p class="note">{e(t.intro_zh)}</p><p class="note">{e(t.intro_en)}</p>{table_html(t)}'
        files[f"{t.stem}.html"] = page_html(t.title_zh, t.title_en, report, body, all_tables, t.stem)
        files[f"{t.stem}.csv"] = to_csv(t)
        files[f"{t.stem}.json"] = to_json(t, report)
    summary = Table("summary", "概况", "Overview", "", "",
                    (Column("period", "期间", "Period"), Column("findings_named", "公布的不合格结果", "Findings named"),
                     *COUNT_COLUMNS, *FOLLOW_UP_COLUMNS), [summary_record(report)])
    files["index.html"] = page_html("概况", "Overview", report, _summary_html(report), all_tables, "summary")
    files["summary.csv"] = to_csv(summary)
    files["summary.json"] = to_json(summary, report)
    return files
