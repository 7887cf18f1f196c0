"""Reference directories for tests: a copy of the packaged files, and one limit rewritten in place."""

from __future__ import annotations

import csv
import io
import os
import shutil
from pathlib import Path

from schemas.reference import DATA_DIR, Limit


def copy_reference(dst: Path) -> Path:
    """A copy of the packaged ``*.csv`` files in ``dst`` (created); returns ``dst``."""
    dst.mkdir(parents=True, exist_ok=True)
    for src in sorted(DATA_DIR.glob("*.csv")):
        shutil.copyfile(src, dst / src.name)
    return dst


def set_limit(directory: Path, limit: Limit, value: float) -> None:
    """Rewrite the row ``limit`` came from (its file and line) with ``value`` as its limit; the file is
    replaced by a rename, as an operator's tool should (no reader sees half a file)."""
    path = directory / limit.file
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    cells = next(csv.reader([lines[limit.line - 1]]))
    header = next(next(csv.reader([line])) for line in lines if line.strip() and not line.startswith("#"))
    cells[header.index("limit_mg_kg")] = f"{value:g}"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(cells)
    lines[limit.line - 1] = out.getvalue()
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)


def break_line(directory: Path, name: str, line: int, text: str) -> None:
    """Replace line ``line`` (1-based) of ``name`` with ``text``, by a rename like :func:`set_limit` (a
    reader never sees half a file, so a watcher sees exactly one new, broken edition)."""
    path = directory / name
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[line - 1] = text + "\n"
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text("".join(lines), encoding="utf-8")
    os.replace(tmp, path)
