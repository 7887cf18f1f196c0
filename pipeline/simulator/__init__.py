"""The simulated fleet of quick-test devices and lab instruments in Guangzhou (`foodrisk simulate`,
`foodrisk run`). Pure generation, no Kafka and no clock, except ``publish.py``, the shell part.

    model.py      the public types (FleetConfig, SimMessage, SiteInfo, DeviceInfo, IncidentInfo), tags, CST
    catalogue.py  what the city looks like and what it tests: districts, commodities, panels, mixes, rates
    limits.py     the limits and bans values are shaped against, read from the screening reference
    world.py      sites, stalls, suppliers and devices drawn from the seed
    readings.py   single readings: concentrations, enzyme inhibition, drift, malformed messages
    fleet.py      Fleet: arrivals in market hours, quick tests, lab samples, confirmations (the overview)
    incidents.py  the injected incidents
    publish.py    the shell: real time -> event time, batches published to the results topic
"""

from pipeline.simulator.catalogue import DISTRICTS, VEGETABLES
from pipeline.simulator.fleet import Fleet
from pipeline.simulator.limits import BANNED_ON_VEGETABLES, sim_limit_mg_kg
from pipeline.simulator.model import (
    CST,
    DEFAULT_RATE_PER_SIM_HOUR,
    TAG_CLENBUTEROL_PORK,
    TAG_CONFIRMATION,
    TAG_COWPEA_CARBOFURAN,
    TAG_FAULTY_DEVICE,
    TAG_INVALID,
    TAG_REPEAT_OFFENDER,
    DeviceInfo,
    FleetConfig,
    IncidentInfo,
    SimMessage,
    SiteInfo,
)

__all__ = [
    "BANNED_ON_VEGETABLES",
    "CST",
    "DEFAULT_RATE_PER_SIM_HOUR",
    "DISTRICTS",
    "TAG_CLENBUTEROL_PORK",
    "TAG_CONFIRMATION",
    "TAG_COWPEA_CARBOFURAN",
    "TAG_FAULTY_DEVICE",
    "TAG_INVALID",
    "TAG_REPEAT_OFFENDER",
    "VEGETABLES",
    "DeviceInfo",
    "Fleet",
    "FleetConfig",
    "IncidentInfo",
    "SimMessage",
    "SiteInfo",
    "sim_limit_mg_kg",
]
