"""Export the JSON Schemas of the wire formats: ``python -m schemas.export [directory]``.

Writes ``result.v1.json`` and ``alert.v1.json`` (default: ``schemas/json/``). A unit test checks
the committed files equal :func:`schema_documents`, so change a model, then re-run this.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

from schemas.alert import Alert
from schemas.result import Result

JSON_DIR = Path(__file__).resolve().parent / "json"
_ID_BASE = "https://foodrisk.invalid/schemas/"


def schema_documents() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema (validation mode: what a producer may send)."""
    out: dict[str, dict[str, Any]] = {}
    for name, model, description in (
        (
            "result.v1.json",
            Result,
            "foodrisk test result, wire format v1: one JSON object per message on foodrisk.results. "
            "Times without an offset are Asia/Shanghai. The *_mg_kg and percent fields are computed "
            "by the decoder and ignored on input.",
        ),
        ("alert.v1.json", Alert, "foodrisk alert v1: one JSON object per message on foodrisk.alerts."),
    ):
        doc = model.model_json_schema(mode="validation")
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": _ID_BASE + name,
            **doc,
            "description": description,
        }
        out[name] = doc
    return out


def render(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else JSON_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for name, doc in schema_documents().items():
        (directory / name).write_bytes(render(doc))
        sys.stdout.write(f"wrote {directory / name}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
