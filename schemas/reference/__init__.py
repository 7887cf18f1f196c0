"""Reference data: food taxonomy, analytes, limit editions, pesticide MRLs (GB 2763), contaminant
limits (GB 2762), veterinary drug MRLs (GB 31650), additive levels (GB 2760), bans and quick-test
cut-offs; loaded and validated once at start.

    ref = default_reference()               # the packaged CSV files, cached
    ref = load_reference(Path("my/ref"))    # another directory with the same files
"""

from __future__ import annotations

from functools import lru_cache

from schemas.reference.loader import DATA_DIR, ReferenceDataError, load_reference
from schemas.reference.model import (
    ALL_FOODS,
    ANY_ANALYTE,
    CHINA_TZ,
    GB2762,
    GB2763,
    KIND_ANALYTE_TYPE,
    KIND_CHAIN,
    STANDARDS,
    Analyte,
    Ban,
    Commodity,
    Edition,
    Limit,
    LimitKind,
    QuickCutoff,
    Reference,
    ResidueComponent,
    snake,
    up,
)

__all__ = [
    "ALL_FOODS",
    "ANY_ANALYTE",
    "CHINA_TZ",
    "DATA_DIR",
    "GB2762",
    "GB2763",
    "KIND_ANALYTE_TYPE",
    "KIND_CHAIN",
    "STANDARDS",
    "Analyte",
    "Ban",
    "Commodity",
    "Edition",
    "Limit",
    "LimitKind",
    "QuickCutoff",
    "Reference",
    "ReferenceDataError",
    "ResidueComponent",
    "default_reference",
    "load_reference",
    "snake",
    "up",
]


@lru_cache(maxsize=1)
def default_reference() -> Reference:
    """The packaged reference data, loaded once per process."""
    return load_reference()
