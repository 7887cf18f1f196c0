"""The limits the simulator shapes its values against (a value is drawn relative to the limit, so
the share of exceedances stays what the mixes say).
"""

from __future__ import annotations

from typing import Final

from pipeline.simulator.catalogue import METALS, VEGETABLES

VEG_PESTICIDE_LIMITS: Final[dict[str, float]] = {
    "carbofuran": 0.02,
    "omethoate": 0.02,
    "methamidophos": 0.05,
    "isocarbophos": 0.05,
    "fenthion": 0.05,
    "phorate": 0.01,
    "isofenphos_methyl": 0.01,
    "chlorpyrifos": 0.05,
}
PESTICIDE_LIMITS: Final[dict[tuple[str, str], float]] = {
    ("cyromazine", "cowpea"): 0.5,
    ("lambda_cyhalothrin", "cowpea"): 0.2,
    ("emamectin_benzoate", "cowpea"): 0.015,
    ("clothianidin", "cowpea"): 0.01,
    ("clothianidin", "ginger"): 0.2,
    ("thiamethoxam", "ginger"): 0.3,
    ("thiamethoxam", "radish"): 0.3,
    ("acetamiprid", "pepper"): 0.2,
    ("chlorpyrifos", "celery"): 0.05,
    ("procymidone", "leek"): 0.2,
    ("phorate", "leek"): 0.01,
    ("isofenphos_methyl", "cowpea"): 0.01,
    ("imidacloprid", "banana"): 0.05,
}
CONTAMINANT_GROUP: Final[dict[str, str]] = {
    "cowpea": "legume",
    "chinese_cabbage": "brassica",
    "spinach": "leafy",
    "celery": "leafy",
    "leek": "veg",
    "ginger": "veg",
    "radish": "veg",
    "pepper": "veg",
    "rice": "rice",
    "pork": "meat",
    "fish": "fish",
    "predatory_fish": "predatory_fish",
}
VEG_METALS: Final = {"mercury": 0.01, "arsenic": 0.5, "chromium": 0.5}
CONTAMINANT_LIMITS: Final[dict[str, dict[str, float]]] = {
    "veg": {"lead": 0.1, "cadmium": 0.05, **VEG_METALS},
    "brassica": {"lead": 0.2, "cadmium": 0.05, **VEG_METALS},
    "leafy": {"lead": 0.3, "cadmium": 0.2, **VEG_METALS},
    "legume": {"lead": 0.2, "cadmium": 0.1, **VEG_METALS},
    "rice": {"lead": 0.2, "cadmium": 0.2, "mercury": 0.02, "inorganic_arsenic": 0.2, "chromium": 1.0},
    "meat": {"lead": 0.2, "cadmium": 0.1, "mercury": 0.05, "chromium": 1.0},
    "fish": {"lead": 0.5, "cadmium": 0.1, "methylmercury": 0.5, "inorganic_arsenic": 0.1, "chromium": 2.0},
    "predatory_fish": {
        "lead": 0.5,
        "cadmium": 0.1,
        "methylmercury": 1.0,
        "inorganic_arsenic": 0.1,
        "chromium": 2.0,
    },
}


def sim_limit_mg_kg(analyte: str, commodity: str) -> float | None:
    """The limit (mg/kg) the simulator shapes its values against, or None if it has none.

    For a pesticide in :data:`BANNED_ON_VEGETABLES` on a vegetable, detection at or above the LOQ
    is the violation, whatever this limit says.
    """
    if analyte in METALS:
        return CONTAMINANT_LIMITS[CONTAMINANT_GROUP[commodity]].get(analyte)
    limit = PESTICIDE_LIMITS.get((analyte, commodity))
    if limit is None and commodity in VEGETABLES:
        limit = VEG_PESTICIDE_LIMITS.get(analyte)
    return limit
