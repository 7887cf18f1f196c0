"""The reference data as configured: packaged limits with the configured quick-test cut-offs."""

from __future__ import annotations

from pipeline.settings import Settings, SettingsError
from schemas.codes import Method
from schemas.reference import Reference

ENZYME_SCREEN = "ache_inhibition"


def configured_reference(settings: Settings, reference: Reference) -> Reference:
    """The reference data with the configured quick-test cut-offs applied."""
    if settings.enzyme_positive_pct is None and settings.enzyme_watch_pct is None:
        return reference
    current = reference.cutoff(Method.enzyme_inhibition, ENZYME_SCREEN)
    if current is None:
        raise SettingsError("the reference data has no enzyme-inhibition cut-off to configure")
    positive = settings.enzyme_positive_pct if settings.enzyme_positive_pct is not None else current.positive_at
    watch = settings.enzyme_watch_pct if settings.enzyme_watch_pct is not None else current.watch_from
    if watch > positive:
        raise SettingsError(
            f"FOODRISK_ENZYME_WATCH_PCT ({watch}) must not be above FOODRISK_ENZYME_POSITIVE_PCT ({positive})"
        )
    return reference.with_cutoff(Method.enzyme_inhibition, ENZYME_SCREEN, positive_at=positive, watch_from=watch)
