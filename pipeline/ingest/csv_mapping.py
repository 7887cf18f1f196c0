"""How a CSV row becomes a wire-format v1 result for `foodrisk import` (``pipeline/ingest/importer.py``):
the built-in mapping (the wire format's own field names as columns, ``site.*`` flattened to ``site_*``)
or a small YAML file for a LIMS export (``deploy/import/lims-mapping.example.yaml``): columns,
constants, templates, value tables, a time format, the encoding and the delimiter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import yaml

log = logging.getLogger(__name__)

# The wire format's own names as CSV columns: nested site.* fields flattened to site_*.
WIRE_COLUMNS: Final[Mapping[str, str]] = {
    "schema_version": "schema_version",
    "result_id": "result_id",
    "sample_id": "sample_id",
    "device_id": "device_id",
    "site_id": "site.id",
    "site_type": "site.type",
    "site_district": "site.district",
    "site_name": "site.name",
    "vendor_id": "vendor_id",
    "supplier_id": "supplier_id",
    "origin": "origin",
    "commodity": "commodity",
    "analyte": "analyte",
    "method": "method",
    "value": "value",
    "unit": "unit",
    "qualitative": "qualitative",
    "lod": "lod",
    "loq": "loq",
    "sampled_at": "sampled_at",
    "tested_at": "tested_at",
    "confirms": "confirms",
}
REQUIRED_FIELDS: Final = (
    "result_id", "sample_id", "device_id", "site.id", "site.type", "site.district",
    "commodity", "analyte", "method", "sampled_at", "tested_at",
)
_FIELDS: Final = frozenset(WIRE_COLUMNS.values())
_NUMBERS: Final = frozenset({"value", "lod", "loq"})
_TIMES: Final = frozenset({"sampled_at", "tested_at"})


class CsvImportError(ValueError):
    """The file or the mapping cannot be imported; the message says what to fix."""


# -- the mapping ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnMapping:
    """How CSV rows become wire-format results (see deploy/import/lims-mapping.example.yaml)."""

    columns: Mapping[str, str]  # CSV column -> field (dotted for site.*)
    constants: Mapping[str, Any] = field(default_factory=dict)  # field -> value for every row
    templates: Mapping[str, str] = field(default_factory=dict)  # field -> "{column}..." format string
    values: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # field -> {CSV text: value}
    time_format: str | None = None  # strptime format of sampled_at / tested_at (default ISO 8601)
    encoding: str = "utf-8-sig"
    delimiter: str = ","
    default: bool = False  # the built-in wire-format mapping (unknown columns are ignored)

    @classmethod
    def wire_format(cls) -> ColumnMapping:
        return cls(columns=WIRE_COLUMNS, default=True)

    @classmethod
    def from_yaml(cls, path: Path) -> ColumnMapping:
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CsvImportError(f"cannot read mapping {path}: {exc}") from None
        except yaml.YAMLError as exc:
            raise CsvImportError(f"mapping {path} is not valid YAML: {exc}") from None
        if not isinstance(doc, dict):
            raise CsvImportError(f"mapping {path}: expected a YAML mapping with `columns:`")
        known = {"columns", "constants", "templates", "values", "time_format", "encoding", "delimiter"}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise CsvImportError(f"mapping {path}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(known))}")

        def table(name: str) -> dict[str, Any]:
            t = doc.get(name) or {}
            if not isinstance(t, dict):
                raise CsvImportError(f"mapping {path}: `{name}` must be a mapping")
            return {str(k): v for k, v in t.items()}

        columns = {k: str(v) for k, v in table("columns").items()}
        constants, templates = table("constants"), {k: str(v) for k, v in table("templates").items()}
        values = {k: {str(a): b for a, b in (v or {}).items()} for k, v in table("values").items()}
        for where, names in (("columns", columns.values()), ("constants", constants), ("templates", templates),
                             ("values", values)):
            bad = sorted(n for n in names if n not in _FIELDS)
            if bad:
                raise CsvImportError(
                    f"mapping {path}: {where} name unknown field(s) {', '.join(bad)}; fields are "
                    f"{', '.join(sorted(_FIELDS))}"
                )
        delimiter = str(doc.get("delimiter", ","))
        if len(delimiter) != 1:
            raise CsvImportError(f"mapping {path}: delimiter must be one character (use \"\\t\" for tabs)")
        encoding = str(doc.get("encoding", "utf-8-sig"))
        try:
            "".encode(encoding)
        except LookupError:
            raise CsvImportError(f"mapping {path}: unknown encoding {encoding!r} (e.g. utf-8-sig, gb18030)") from None
        tf = doc.get("time_format")
        return cls(columns=columns, constants=constants, templates=templates, values=values,
                   time_format=str(tf) if tf else None, encoding=encoding, delimiter=delimiter)

    def bind(self, header: Sequence[str]) -> Callable[[Sequence[str]], dict[str, Any]]:
        """A row -> result function for a file with this header; raises when columns are missing."""
        index = {name.strip(): i for i, name in enumerate(header)}
        missing = [c for c in self.columns if c not in index]
        template_cols = sorted({c for t in self.templates.values() for c in _template_columns(t)})
        missing += [c for c in template_cols if c not in index and c not in missing]
        if self.default:
            have = {f for c, f in self.columns.items() if c in index}
            lacking = [c for c, f in WIRE_COLUMNS.items() if f in REQUIRED_FIELDS and f not in have]
            if lacking:
                raise CsvImportError(
                    f"the file has no column(s) {', '.join(lacking)}; the default mapping expects the wire "
                    "format's names (result_id, sample_id, device_id, site_id, site_type, site_district, "
                    "commodity, analyte, method, value, unit, sampled_at, tested_at, ...), or give --mapping MAP.yaml"
                )
            unused = [h for h in index if h not in self.columns]
            if unused:
                log.warning("columns ignored (not in the wire format): %s", ", ".join(unused))
        elif missing:
            raise CsvImportError(
                f"the mapping names column(s) the file does not have: {', '.join(missing)}; "
                f"the file's columns are: {', '.join(index)}"
            )
        pairs = [(index[c], f) for c, f in self.columns.items() if c in index]
        templates = [(f, t, [(c, index[c]) for c in _template_columns(t)]) for f, t in self.templates.items()]
        constants = dict(self.constants)
        values = self.values
        time_format = self.time_format

        def convert(fld: str, text: str) -> Any:
            if fld in values and text in values[fld]:
                return values[fld][text]
            if fld in _NUMBERS:
                try:
                    return float(text)
                except ValueError:
                    return text  # the decoder says why
            if fld == "schema_version" and text.isdigit():
                return int(text)
            if time_format and fld in _TIMES:
                try:
                    return datetime.strptime(text, time_format).isoformat()  # noqa: DTZ007 - naive = Asia/Shanghai
                except ValueError:
                    return text
            return text

        def row_to_result(row: Sequence[str]) -> dict[str, Any]:
            flat: dict[str, Any] = dict(constants)
            n = len(row)
            for i, fld in pairs:
                if i < n:
                    text = row[i].strip()
                    if text:
                        flat[fld] = convert(fld, text)
            for fld, tmpl, cols in templates:
                flat[fld] = tmpl.format_map({c: row[i].strip() if i < n else "" for c, i in cols})
            out: dict[str, Any] = {}
            site: dict[str, Any] = {}
            for k, v in flat.items():
                if k.startswith("site."):
                    site[k[5:]] = v
                else:
                    out[k] = v
            if site:
                out["site"] = site
            return out

        return row_to_result


def _template_columns(template: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(template) if name]
