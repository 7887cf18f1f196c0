"""What the simulated Guangzhou looks like and what it tests: districts, commodities and their stall
categories, the analytes of each lab panel, the quick-test and lab mixes with their rates, origins,
market hours, names, and the garbage a broken device sends. Numbers only; the limits the values are
shaped against come from the screening reference (``pipeline/simulator/limits.py``).
"""

from __future__ import annotations

from typing import Final

from pipeline.simulator.model import HOUR

DISTRICTS: Final[tuple[tuple[str, str, str, float], ...]] = (
    # English name, Chinese name, code used in ids, weight (roughly population, millions)
    ("Yuexiu", "越秀", "YX", 1.0),
    ("Liwan", "荔湾", "LW", 1.1),
    ("Haizhu", "海珠", "HZ", 1.8),
    ("Tianhe", "天河", "TH", 2.2),
    ("Baiyun", "白云", "BY", 3.7),
    ("Huangpu", "黄埔", "HP", 1.2),
    ("Panyu", "番禺", "PY", 2.8),
    ("Huadu", "花都", "HD", 1.6),
    ("Nansha", "南沙", "NS", 0.9),
    ("Conghua", "从化", "CH", 0.7),
    ("Zengcheng", "增城", "ZC", 1.5),
)

# The commodities sold at vegetable stalls (the reference files them under its "vegetables" group,
# tests/unit/test_simulator_limits.py checks that).
VEGETABLES: Final = frozenset({"cowpea", "leek", "celery", "ginger", "radish", "pepper", "chinese_cabbage", "spinach"})

CATEGORY: Final[dict[str, str]] = {
    **dict.fromkeys(VEGETABLES, "veg"),
    "banana": "fruit",
    "rice": "grain",
    "pork": "meat",
    "fish": "fish",
    "predatory_fish": "fish",
    # animal products and dry goods (issue 20): poultry and eggs from the meat stalls, dried goods
    # from the grain and dry-goods stall (粮油干货), shrimp from the fish stall
    "beef": "meat",
    "mutton": "meat",
    "chicken": "meat",
    "chicken_egg": "meat",
    "grass_carp": "fish",
    "penaeid_prawn": "fish",
    "dried_daylily": "grain",
    "dried_longan": "grain",
}

ANIMAL_PRODUCTS: Final = frozenset({"pork", "beef", "mutton", "chicken", "chicken_egg", "grass_carp", "penaeid_prawn"})
"""The animal products the fleet tests for veterinary drugs and banned compounds."""
DRIED_GOODS: Final = frozenset({"dried_daylily", "dried_longan"})
"""The dry goods the fleet tests for additives (sulfur dioxide)."""

ZH_NAME: Final[dict[str, str]] = {"cowpea": "豇豆", "leek": "韭菜"}

METALS: Final = frozenset({"lead", "cadmium", "mercury", "methylmercury", "arsenic", "inorganic_arsenic", "chromium"})

BETA_AGONISTS: Final = ("clenbuterol", "ractopamine", "salbutamol")
"""瘦肉精: beta-agonists banned in food animals (MARA announcement 250)."""
VET_PANELS: Final[dict[str, tuple[str, ...]]] = {
    "pork": (*BETA_AGONISTS, "enrofloxacin", "doxycycline"),
    "beef": BETA_AGONISTS,
    "mutton": BETA_AGONISTS,
    "chicken": ("enrofloxacin", "doxycycline", "florfenicol", "aoz", "chloramphenicol"),
    "chicken_egg": ("enrofloxacin", "florfenicol", "chloramphenicol"),
    "fish": ("malachite_green", "leucomalachite_green", "aoz", "amoz", "sem", "chloramphenicol", "enrofloxacin"),
    "grass_carp": ("malachite_green", "leucomalachite_green", "aoz", "amoz", "chloramphenicol", "enrofloxacin"),
    "penaeid_prawn": ("aoz", "amoz", "sem", "ahd", "chloramphenicol", "enrofloxacin"),
}
"""A lab's LC-MS/MS panels on animal products: veterinary drugs (GB 31650) and banned compounds."""
VET_LOD_LOQ: Final = (0.0003, 0.001)
"""LC-MS/MS LOD and LOQ (mg/kg) for banned compounds (0.3 and 1 ug/kg, the usual confirmatory levels)."""
VET_DRUG_LOD_LOQ: Final = (0.002, 0.005)
"""LC-MS/MS LOD and LOQ (mg/kg) for veterinary drugs with an MRL (tens to hundreds of ug/kg)."""


LC_ANALYTES: Final = frozenset(
    {
        "carbofuran",
        "cyromazine",
        "emamectin_benzoate",
        "clothianidin",
        "thiamethoxam",
        "acetamiprid",
        "imidacloprid",
        "methamidophos",
        "omethoate",
    }
)
"""Pesticides a lab runs on LC-MS/MS; the others go to GC-MS/MS."""

ENZYME_DETECTABLE: Final = (
    "carbofuran",
    "omethoate",
    "methamidophos",
    "chlorpyrifos",
    "phorate",
    "isocarbophos",
    "isofenphos_methyl",
    "fenthion",
)
"""Organophosphates and carbamates: what an enzyme-inhibition positive is followed up for."""

PESTICIDE_PANELS: Final[dict[str, tuple[str, ...]]] = {
    "cowpea": (
        "carbofuran",
        "cyromazine",
        "lambda_cyhalothrin",
        "emamectin_benzoate",
        "clothianidin",
        "isofenphos_methyl",
        "omethoate",
        "methamidophos",
        "isocarbophos",
        "fenthion",
    ),
    "leek": ("procymidone", "phorate", "chlorpyrifos", "omethoate", "methamidophos", "isocarbophos", "fenthion"),
    "celery": ("chlorpyrifos", "omethoate", "methamidophos", "fenthion", "phorate"),
    "ginger": ("clothianidin", "thiamethoxam", "omethoate", "fenthion"),
    "radish": ("thiamethoxam", "omethoate", "isocarbophos", "fenthion"),
    "pepper": ("acetamiprid", "omethoate", "methamidophos", "fenthion"),
    "chinese_cabbage": ("omethoate", "methamidophos", "isocarbophos", "fenthion", "chlorpyrifos"),
    "spinach": ("omethoate", "methamidophos", "fenthion", "chlorpyrifos"),
    "banana": ("imidacloprid",),
}
METAL_PANELS: Final[dict[str, tuple[str, ...]]] = {
    "veg": ("lead", "cadmium", "mercury", "arsenic", "chromium"),
    "rice": ("lead", "cadmium", "inorganic_arsenic", "mercury", "chromium"),
    "pork": ("lead", "cadmium", "mercury", "chromium"),
    "fish": ("lead", "cadmium", "methylmercury", "inorganic_arsenic", "chromium"),
    "predatory_fish": ("methylmercury", "lead", "cadmium"),
}

# Quick-test mixes --------------------------------------------------------------------------------

ENZYME_SHARE: Final = 0.78  # of a pesticide analyser's tests; the rest are colloidal-gold strips
ENZYME_COMMODITIES: Final[tuple[tuple[str, float], ...]] = (
    ("chinese_cabbage", 18),
    ("cowpea", 16),
    ("spinach", 14),
    ("pepper", 10),
    ("celery", 9),
    ("leek", 9),
    ("radish", 7),
    ("ginger", 5),
)
ENZYME_FALSE_POSITIVE_PRONE: Final = frozenset({"leek", "celery", "ginger", "radish"})
ENZYME_P_POSITIVE_PRONE: Final = 0.0035
ENZYME_P_POSITIVE: Final = 0.0006
ENZYME_P_WATCH: Final = 0.006
GOLD_PAIRS: Final[tuple[tuple[str, str, float], ...]] = (
    ("cowpea", "carbofuran", 6),
    ("cowpea", "isofenphos_methyl", 3),
    ("cowpea", "clothianidin", 3),
    ("leek", "phorate", 3),
    ("leek", "procymidone", 2),
    ("celery", "chlorpyrifos", 3),
    ("banana", "imidacloprid", 4),
    ("pepper", "acetamiprid", 3),
    ("ginger", "thiamethoxam", 2),
    ("ginger", "clothianidin", 2),
    ("chinese_cabbage", "omethoate", 3),
    ("spinach", "omethoate", 2),
)
GOLD_P_POSITIVE: Final = 0.001
ANIMAL_QUICK_SHARE: Final = 0.14  # of a market analyser's tests: strips and kits on meat, fish, eggs, dried goods
ANIMAL_QUICK: Final[tuple[tuple[str, str, float, float], ...]] = (
    # commodity, analyte, weight, P(positive): colloidal-gold strips for beta-agonists (瘦肉精),
    # malachite green, nitrofuran metabolites and fluoroquinolones; rapid kits for formaldehyde on
    # aquatic products and sulfur dioxide on dried goods. Rates stay at or below the surge baseline
    # (EarlyParams.baseline_quick 0.15%) so that ordinary traffic raises no rate surges.
    ("pork", "clenbuterol", 8, 0.0005),
    ("pork", "ractopamine", 5, 0.0005),
    ("pork", "salbutamol", 3, 0.0005),
    ("beef", "clenbuterol", 3, 0.0005),
    ("mutton", "clenbuterol", 2, 0.0005),
    ("grass_carp", "malachite_green", 5, 0.001),
    ("grass_carp", "aoz", 2, 0.001),
    ("grass_carp", "enrofloxacin", 2, 0.001),
    ("grass_carp", "formaldehyde", 2, 0.001),
    ("penaeid_prawn", "aoz", 2, 0.001),
    ("penaeid_prawn", "formaldehyde", 2, 0.001),
    ("chicken", "enrofloxacin", 4, 0.001),
    ("chicken_egg", "enrofloxacin", 3, 0.001),
    ("dried_daylily", "sulfur_dioxide", 3, 0.001),
    ("dried_longan", "sulfur_dioxide", 2, 0.001),
)
KIT_METHOD: Final = "colloidal_gold"
"""What the strips and kits report as their method. The wire format's quick methods are enzyme
inhibition, colloidal gold and XRF: a colorimetric kit (formaldehyde, SO2) has no method of its own,
so it reports as a read-out (qualitative) under colloidal gold, as the strip readers that also read
kits do."""
GOLD_P_INVALID: Final = 0.002  # the strip's control line failed: a valid result saying "invalid"
XRF_PAIRS: Final[tuple[tuple[str, str, float], ...]] = (
    ("rice", "cadmium", 6),
    ("rice", "lead", 4),
    ("rice", "chromium", 1),
    ("chinese_cabbage", "lead", 2),
    ("chinese_cabbage", "cadmium", 1),
    ("spinach", "cadmium", 2),
    ("spinach", "lead", 2),
    ("celery", "cadmium", 1),
    ("leek", "lead", 1),
    ("cowpea", "cadmium", 1),
)
XRF_LOD: Final[dict[str, float]] = {"cadmium": 0.03, "lead": 0.05, "chromium": 0.2}
XRF_P_EXCEED: Final = 0.001
XRF_P_DETECT: Final = 0.35

# Lab mixes ---------------------------------------------------------------------------------------

P_LAB_SAMPLE: Final = 0.03  # share of arrivals that are a routine lab sample (2-5 result lines)
LAB_COMMODITIES: Final[tuple[tuple[str, float], ...]] = (
    ("cowpea", 16),
    ("leek", 10),
    ("chinese_cabbage", 10),
    ("rice", 10),
    ("celery", 8),
    ("spinach", 8),
    ("pepper", 7),
    ("pork", 6),
    ("fish", 6),
    ("ginger", 5),
    ("radish", 5),
    ("banana", 5),
    ("predatory_fish", 3),
)
LAB_VEG_METAL_SHARE: Final = 0.1
LAB_ANIMAL: Final[tuple[tuple[str, float], ...]] = (
    ("pork", 4),
    ("beef", 2),
    ("mutton", 1),
    ("chicken", 3),
    ("chicken_egg", 2),
    ("grass_carp", 3),
    ("penaeid_prawn", 2),
)
"""Routine lab samples of animal products for veterinary drugs (added to LAB_COMMODITIES' draw)."""
LAB_VET_SHARE: Final = 0.6  # of pork and fish lab samples: the vet-drug panel (the rest: metals)
LAB_VET_P_EXCEED: Final = 0.008
LAB_VET_P_DETECT: Final = 0.08
LAB_VET_P_BANNED_DETECT: Final = 0.003
LAB_VET_P_BANNED_TRACE: Final = 0.004
LAB_P_EXCEED: Final = 0.03
LAB_P_DETECT: Final = 0.30
LAB_P_BANNED_DETECT: Final = 0.006
LAB_P_BANNED_TRACE: Final = 0.01
LAB_METAL_P_EXCEED: Final = 0.02
LAB_METAL_P_DETECT: Final = 0.55
METAL_LOD_LOQ: Final[dict[tuple[str, str], tuple[float, float]]] = {
    ("lead", "icp_ms"): (0.005, 0.02),
    ("cadmium", "icp_ms"): (0.002, 0.005),
    ("chromium", "icp_ms"): (0.02, 0.05),
    ("arsenic", "icp_ms"): (0.005, 0.01),
    ("inorganic_arsenic", "icp_ms"): (0.01, 0.03),
    ("methylmercury", "icp_ms"): (0.005, 0.015),
    ("mercury", "icp_ms"): (0.002, 0.005),
    ("lead", "aas"): (0.01, 0.03),
    ("cadmium", "aas"): (0.003, 0.01),
    ("mercury", "afs"): (0.001, 0.003),
    ("arsenic", "afs"): (0.01, 0.03),
}

CONFIRM_SHARE: Final = 0.7
CONFIRM_DELAY_S: Final = (2 * HOUR, 10 * HOUR)

# Origins (province-level region codes) by commodity ----------------------------------------------

ORIGINS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "cowpea": (("460000", 5), ("440000", 3), ("450000", 2)),
    "leek": (("440000", 6), ("370000", 2)),
    "celery": (("440000", 5), ("530000", 2)),
    "ginger": (("530000", 3), ("370000", 3), ("440000", 2)),
    "radish": (("440000", 4), ("530000", 2)),
    "pepper": (("460000", 3), ("530000", 3), ("450000", 2)),
    "chinese_cabbage": (("440000", 5), ("530000", 3), ("130000", 1)),
    "spinach": (("440000", 5), ("530000", 2)),
    "banana": (("440000", 3), ("460000", 2), ("530000", 2), ("450000", 2)),
    "rice": (("440000", 3), ("430000", 3), ("360000", 2), ("230000", 1)),
    "pork": (("440000", 4), ("430000", 2), ("450000", 2)),
    "fish": (("440000", 6),),
    "predatory_fish": (("440000", 3), ("350000", 2), ("460000", 1)),
}
ANIMAL_ORIGINS: Final[dict[str, tuple[tuple[str, float], ...]]] = {
    "beef": (("150000", 3), ("440000", 2), ("530000", 1)),
    "mutton": (("150000", 4), ("650000", 2)),
    "chicken": (("440000", 5), ("450000", 2)),
    "chicken_egg": (("440000", 4), ("420000", 2), ("410000", 2)),
    "grass_carp": (("440000", 6), ("360000", 1)),
    "penaeid_prawn": (("440000", 5), ("460000", 2)),
    "dried_daylily": (("430000", 3), ("610000", 2)),
    "dried_longan": (("440000", 3), ("350000", 2)),
}
"""Origins of the commodities added in issue 20; their suppliers are drawn after the others (own RNG),
so a seed's markets, stalls, devices and original suppliers stay as they were."""

# Market hours: relative weight per local hour (normalised to a daily mean of 1 below).
HOURLY_WEIGHTS: Final[tuple[float, ...]] = (
    0.15, 0.1, 0.1, 0.15, 0.4, 1.4, 2.6, 3.0, 2.8, 2.4, 1.9, 1.4,
    0.8, 0.6, 0.7, 0.8, 0.9, 0.9, 0.7, 0.5, 0.35, 0.25, 0.2, 0.15,
)  # fmt: skip

MARKET_WORDS: Final = (
    "东风", "新港", "龙口", "棠下", "石牌", "沙河", "江南", "环市", "南村", "大石", "市桥", "新塘",
    "荔城", "街口", "狮岭", "金沙", "黄阁", "横沥", "太和", "人和", "同和", "赤岗", "昌岗", "芳村",
    "西华", "宝岗", "员村", "车陂", "鱼珠", "大沙", "钟村", "洛浦", "新华", "秀全", "温泉", "石滩",
)  # fmt: skip
SUPERMARKET_BRANDS: Final = ("FreshWay", "Huimin Mart", "Everyday Supermarket", "GreenBasket")
WAREHOUSE_BRANDS: Final = ("QuickFresh", "DailyGreens", "FarmBox")

GARBAGE: Final = (
    b"\xff\xfe\x00\x01\x9c",
    b"ERR 503 sensor timeout",
    b"[]",
    b"null",
    b"42",
    b"result_id;value\r\n",
    b'{"result_id": "',
    b"\x00\x00\x00\x00\x00\x00\x00\x00",
)
NAN_MARK: Final = "__NaN__"

QUICK_PESTICIDE: Final = "quick_pesticide"
QUICK_XRF: Final = "quick_xrf"
