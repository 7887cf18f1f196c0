"""foodrisk schemas: the pure domain core (wire format, reference data, screening rules, alerts).

See ``schemas/README.md``. Nothing here does I/O except the reference loader reading its files.
"""

from schemas.alert import Alert, AlertStatus, Classification, Risk, alert_for_verdict, alert_id_for
from schemas.codes import AnalyteType, Confidence, Method, Qualitative, SiteType, Unit, is_quick
from schemas.reference import Reference, ReferenceDataError, default_reference, load_reference
from schemas.result import FieldError, InvalidResult, Result, Site, parse_result
from schemas.rules import screen, screen_naive
from schemas.verdict import SEVERITY, Verdict, VerdictKind

__all__ = [
    "SEVERITY",
    "Alert",
    "AlertStatus",
    "AnalyteType",
    "Classification",
    "Confidence",
    "FieldError",
    "InvalidResult",
    "Method",
    "Qualitative",
    "Reference",
    "ReferenceDataError",
    "Result",
    "Risk",
    "Site",
    "SiteType",
    "Unit",
    "Verdict",
    "VerdictKind",
    "alert_for_verdict",
    "alert_id_for",
    "default_reference",
    "is_quick",
    "load_reference",
    "parse_result",
    "screen",
    "screen_naive",
]
