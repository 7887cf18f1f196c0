"""Wire format v1 of a test result, and its decoder.

One JSON object per message. ``parse_result`` turns bytes (or a mapping) into a frozen :class:`Result`
with the normalised values filled in, or raises :class:`InvalidResult` listing every reason, field
by field. Pure: the reference data and "now" are parameters. See ``schemas/README.md``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Self

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from schemas.codes import QUICK_METHODS, Method, Qualitative, SiteType, Unit, is_quick
from schemas.reference.model import CHINA_TZ, snake

if TYPE_CHECKING:
    from schemas.reference.model import Reference

__all__ = [
    "MAX_MESSAGE_BYTES",
    "QUICK_METHODS",
    "SCHEMA_VERSION",
    "UNIT_ALIASES",
    "FieldError",
    "InvalidResult",
    "Method",
    "Qualitative",
    "Result",
    "Site",
    "SiteType",
    "Unit",
    "is_quick",
    "parse_result",
    "result_key",
    "to_mg_kg",
]

SCHEMA_VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 65_536
MAX_ID: Final = 128
MAX_CODE: Final = 64
MAX_NAME: Final = 256
MAX_DISTRICT: Final = 64
MAX_ORIGIN: Final = 32
FUTURE_TOLERANCE: Final = timedelta(days=1)

# Accepted spellings (compared lower-cased, surrounding blanks ignored) -> canonical unit.
UNIT_ALIASES: Final[Mapping[str, Unit]] = {
    "mg/kg": Unit.mg_kg,
    "µg/kg": Unit.ug_kg,  # micro sign U+00B5
    "μg/kg": Unit.ug_kg,  # Greek mu U+03BC
    "ug/kg": Unit.ug_kg,
    "mg/l": Unit.mg_l,
    "%": Unit.percent,
}
# mg/kg per unit. mg/L is taken as mg/kg (density ~1 for the liquids tested); % is not a mass fraction.
_PER_MG_KG: Final[Mapping[Unit, float]] = {Unit.mg_kg: 1.0, Unit.ug_kg: 1000.0, Unit.mg_l: 1.0}
_SIGNIFICANT = "{:.12g}"  # drops float noise from unit conversion (20 µg/kg -> exactly 0.02 mg/kg)
_NORMALISED: Final = ("value_mg_kg", "lod_mg_kg", "loq_mg_kg", "percent")
_DEFER_CHECKS: Final = "defer_checks"


def to_mg_kg(value: float, unit: Unit) -> float | None:
    """``value`` in ``unit`` as mg/kg (None for %), rounded to 12 significant digits."""
    per = _PER_MG_KG.get(unit)
    if per is None:
        return None
    return float(_SIGNIFICANT.format(value / per))


def result_key(device_id: str, result_id: str) -> str:
    """The identity of a result as one string: ``"<n>:<device_id>:<result_id>"``, n the UTF-8 byte
    length of ``device_id`` (the same text as ``sinks.ddl.RESULT_KEY_SQL`` in ClickHouse).

    A result is identified by (device_id, result_id): each device has its own namespace of result
    ids. Ids may hold any character (only their length is checked), so joining them with a separator
    alone could make two pairs one key; the length prefix keeps the encoding one-to-one.
    """
    return f"{len(device_id.encode())}:{device_id}:{result_id}"


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
Code = Annotated[str, Field(min_length=1, max_length=MAX_CODE)]
Amount = Annotated[float, Strict(), Field(ge=0, allow_inf_nan=False)]
UnitIn = Annotated[
    Unit | None,
    WithJsonSchema(
        {
            "anyOf": [{"type": "string", "enum": sorted({*UNIT_ALIASES, *(u.value for u in Unit)})}, {"type": "null"}],
            "default": None,
            "description": "Unit of value, lod and loq (case-insensitive). µg/kg is converted to mg/kg; "
            "mg/L is taken as mg/kg (density ~1); % is enzyme inhibition percent.",
        }
    ),
]


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason a message was rejected. ``field`` is a dotted path (``site.type``); ``$`` = whole message."""

    field: str
    reason: str


class InvalidResult(Exception):
    """The message is not a valid v1 result; ``errors`` lists every reason."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.reason}" for e in errors) or "invalid result")


class Site(BaseModel):
    """Where the sample was tested."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: Id
    type: SiteType
    district: Annotated[str, Field(min_length=1, max_length=MAX_DISTRICT)]
    name: Annotated[str, Field(max_length=MAX_NAME)] | None = None


class Result(BaseModel):
    """One test result (wire format v1) plus its normalised values.

    ``value``/``unit``/``lod``/``loq`` are kept as sent. The normalised fields are computed on
    validation (any value sent for them is ignored): ``value_mg_kg``/``lod_mg_kg``/``loq_mg_kg`` for
    mg/kg, µg/kg and mg/L, ``percent`` for %. ``commodity``/``analyte`` are codes: a name or alias
    known to the reference data is mapped to its code, anything else is kept lower-cased snake_case.
    ``sampled_at``/``tested_at`` are aware UTC datetimes; a naive input time is Asia/Shanghai.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        title="Result",
        json_schema_extra={
            # what JSON Schema can say of the cross-field rules (the decoder checks them exactly)
            "anyOf": [{"required": ["value"]}, {"required": ["qualitative"]}],
            "dependentRequired": {"value": ["unit"], "lod": ["unit"], "loq": ["unit"]},
        },
    )

    schema_version: Literal[1] = 1
    result_id: Id = Field(
        description="Id of this result, unique per device: (device_id, result_id) is the idempotency key."
    )
    sample_id: Id
    device_id: Id = Field(description="Quick-test device or lab instrument.")
    site: Site
    vendor_id: Annotated[str, Field(max_length=MAX_ID)] | None = None
    supplier_id: Annotated[str, Field(max_length=MAX_ID)] | None = None
    origin: Annotated[str, Field(max_length=MAX_ORIGIN)] | None = Field(
        default=None, description="Region code of the place of origin (产地)."
    )
    commodity: Code
    analyte: Code
    method: Method
    value: Amount | None = None
    unit: UnitIn = None
    qualitative: Qualitative | None = None
    lod: Amount | None = None
    loq: Amount | None = None
    sampled_at: datetime = Field(description="ISO 8601; a time without offset is Asia/Shanghai.")
    tested_at: datetime = Field(description="ISO 8601; a time without offset is Asia/Shanghai.")
    confirms: Annotated[str, Field(max_length=MAX_ID)] | None = Field(
        default=None, description="result_id of the quick test this lab result follows up."
    )
    value_mg_kg: float | None = Field(default=None, description="Computed: value in mg/kg. Ignored on input.")
    lod_mg_kg: float | None = Field(default=None, description="Computed: lod in mg/kg. Ignored on input.")
    loq_mg_kg: float | None = Field(default=None, description="Computed: loq in mg/kg. Ignored on input.")
    percent: float | None = Field(default=None, description="Computed: value when unit is %. Ignored on input.")

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any, info: ValidationInfo) -> Any:
        if type(data) is not dict and not isinstance(data, Mapping):
            return data
        context = info.context
        reference = context.get("reference") if isinstance(context, dict) else None
        return prepare(data, reference)

    @field_validator("sampled_at", "tested_at")
    @classmethod
    def _as_utc(cls, value: datetime) -> datetime:
        return as_utc(value)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        context = info.context
        if isinstance(context, dict) and context.get(_DEFER_CHECKS):
            return self  # parse_result runs the checks itself, to report them field by field
        errors = cross_field_errors(self.__dict__, now=None)
        if errors:
            raise ValueError("; ".join(f"{e.field}: {e.reason}" for e in errors))
        return self

    @property
    def is_quick(self) -> bool:
        return self.method in QUICK_METHODS


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive time is taken as Asia/Shanghai."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=CHINA_TZ)
    return value.astimezone(UTC)


def _amount(value: Any) -> float | None:
    """``value`` as a float when it is a valid amount (finite JSON number >= 0), else None."""
    if type(value) is float:
        return value if value >= 0 and math.isfinite(value) else None
    if type(value) is int and 0 <= value < 10**300:
        return float(value)
    return None


_METHODS: Final[Mapping[str, Method]] = {m.value: m for m in Method}
_IN_MG_KG: Final = (("value", "value_mg_kg"), ("lod", "lod_mg_kg"), ("loq", "loq_mg_kg"))


def prepare(data: Mapping[str, Any], reference: Reference | None) -> dict[str, Any]:
    """The input with canonical unit and codes, and the normalised values computed (a new dict)."""
    d = dict(data)
    pop, get = d.pop, d.get
    for key in _NORMALISED:
        pop(key, None)
    unit = get("unit")
    if isinstance(unit, str):
        unit = UNIT_ALIASES.get(unit.strip().lower(), unit)
        d["unit"] = unit
    if reference is not None:
        normalise_food, normalise_analyte = reference.normalise_commodity, reference.normalise_analyte
    else:
        normalise_food = normalise_analyte = snake
    name = get("commodity")
    if isinstance(name, str) and len(name) <= MAX_NAME:
        d["commodity"] = normalise_food(name)
    name = get("analyte")
    if isinstance(name, str) and len(name) <= MAX_NAME:
        # A group screen is keyed on the method, whatever the device calls its analyte (农药残留,
        # 有机磷和氨基甲酸酯类, AChE ...): enzyme inhibition always reads ache_inhibition.
        method = get("method")
        screen_code = None
        if reference is not None and isinstance(method, str) and method in _METHODS:
            screen_code = reference.screen_analyte(_METHODS[method])
        d["analyte"] = screen_code if screen_code is not None else normalise_analyte(name)
    if isinstance(unit, Unit):
        if unit is Unit.percent:
            pct = _amount(get("value"))
            if pct is not None:
                d["percent"] = pct
        else:
            for raw, out in _IN_MG_KG:
                given = get(raw)
                if given is not None:  # most results send no lod / loq
                    amount = _amount(given)
                    if amount is not None:
                        d[out] = to_mg_kg(amount, unit)
    return d


# Plausibility bounds (docs/domain.md §7): a reading outside them is a device or keying fault, dead-
# lettered with its reason rather than judged. Inhibition is a share of enzyme activity (0-100 %);
# no residue, contaminant or additive level in the standards comes near 1 % of the sample's mass.
MAX_PERCENT: Final = 100.0
MAX_PLAUSIBLE_MG_KG: Final = 10_000.0


def _implausible(values: Mapping[str, Any], unit: Any) -> list[FieldError]:
    if not isinstance(unit, Unit):
        return []
    out: list[FieldError] = []
    for name in ("value", "lod", "loq"):
        amount = values.get(name)
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            continue
        if unit is Unit.percent:
            if amount > MAX_PERCENT:
                out.append(FieldError(name, f"{amount:g} % is not a possible inhibition (0-100 %): check the device"))
        else:
            mg_kg = to_mg_kg(amount, unit)
            if mg_kg is not None and mg_kg > MAX_PLAUSIBLE_MG_KG:
                out.append(
                    FieldError(
                        name,
                        f"{amount:g} {unit} is {mg_kg:g} mg/kg, over {MAX_PLAUSIBLE_MG_KG:g} mg/kg (1 % of the "
                        "sample): not a plausible residue; check the unit and the device",
                    )
                )
    return out


_INVALID: Final = object()  # a field that failed its own validation: present, but not comparable


def cross_field_errors(values: Mapping[str, Any], *, now: datetime | None) -> list[FieldError]:
    """Checks that span fields (or need ``now``); fields marked invalid are skipped."""
    errors: list[FieldError] = []
    value, qualitative, unit = values.get("value"), values.get("qualitative"), values.get("unit")
    lod, loq = values.get("lod"), values.get("loq")
    if value is None and qualitative is None:
        errors.append(FieldError("value", "value and qualitative are both missing: give one of them"))
    if unit is None and (value is not None or lod is not None or loq is not None):
        errors.append(FieldError("unit", "required with value, lod or loq"))
    if isinstance(lod, float) and isinstance(loq, float) and lod > loq:
        errors.append(FieldError("lod", f"lod {lod:g} is above loq {loq:g}"))
    errors.extend(_implausible(values, unit))
    sampled, tested = values.get("sampled_at"), values.get("tested_at")
    if isinstance(sampled, datetime) and isinstance(tested, datetime) and sampled > tested:
        errors.append(FieldError("sampled_at", "is after tested_at"))
    if now is not None:
        latest = now + FUTURE_TOLERANCE
        for name, when in (("sampled_at", sampled), ("tested_at", tested)):
            if isinstance(when, datetime) and when > latest:
                errors.append(FieldError(name, "is more than 1 day in the future"))
    return errors


_CROSS_ADAPTERS: Final[Mapping[str, TypeAdapter[Any]]] = {
    "value": TypeAdapter(Amount | None),
    "lod": TypeAdapter(Amount | None),
    "loq": TypeAdapter(Amount | None),
    "unit": TypeAdapter(Unit | None),
    "qualitative": TypeAdapter(Qualitative | None),
    "sampled_at": TypeAdapter(datetime),
    "tested_at": TypeAdapter(datetime),
}

_REASONS: Final[Mapping[tuple[str, str], str]] = {
    ("unit", "enum"): "unknown unit: use mg/kg, µg/kg (or ug/kg), mg/L or %",
    ("schema_version", "literal_error"): "unsupported schema_version: this decoder reads version 1",
}


def _field_errors(exc: ValidationError) -> tuple[list[FieldError], set[str]]:
    errors: list[FieldError] = []
    failed: set[str] = set()
    for err in exc.errors(include_url=False, include_input=False):
        loc = err["loc"]
        path = ".".join(str(p) for p in loc) or "$"
        failed.add(str(loc[0]) if loc else "$")
        kind = err["type"]
        reason = "required" if kind == "missing" else _REASONS.get((path, kind), err["msg"])
        errors.append(FieldError(path, reason))
    return errors, failed


def _decode(raw: bytes | bytearray | memoryview | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(raw, Mapping):
        return raw
    if isinstance(raw, bytes | bytearray | memoryview | str):
        size = len(raw)
        if isinstance(raw, str) and size > MAX_MESSAGE_BYTES // 4:  # up to 4 UTF-8 bytes a character
            size = len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_MESSAGE_BYTES:
            raise InvalidResult([FieldError("$", f"message is {size} bytes, over {MAX_MESSAGE_BYTES}")])
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            try:  # orjson refuses NaN, Infinity and out-of-range numbers: let them reach their field
                obj = json.loads(bytes(raw) if isinstance(raw, bytearray | memoryview) else raw)
            except (ValueError, RecursionError) as exc:
                raise InvalidResult([FieldError("$", f"malformed JSON: {exc}")]) from None
        if not isinstance(obj, dict):
            raise InvalidResult([FieldError("$", f"expected a JSON object, got {type(obj).__name__}")])
        return obj
    raise InvalidResult([FieldError("$", f"expected JSON text or a mapping, got {type(raw).__name__}")])


def parse_result(
    raw: bytes | bytearray | memoryview | str | Mapping[str, Any],
    *,
    reference: Reference,
    now: datetime,
) -> Result:
    """Decode and validate one v1 message; raise :class:`InvalidResult` with every reason.

    ``now`` (aware) bounds how far in the future sampled_at / tested_at may be (1 day).
    An unknown commodity or analyte is valid (it screens as ``no_limit``).
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    data = raw if type(raw) is dict else _decode(raw)
    try:
        result: Result = _validate_result(data, context={"reference": reference, _DEFER_CHECKS: True})
    except ValidationError as exc:
        errors, failed = _field_errors(exc)
        errors.extend(cross_field_errors(_salvage(data, failed, reference), now=now))
        raise InvalidResult(errors) from None
    errors = cross_field_errors(result.__dict__, now=now)
    if errors:
        raise InvalidResult(errors)
    return result


# ``Result.model_validate`` without its Python frame (the same core validator, the same result).
_validate_result: Final = Result.__pydantic_validator__.validate_python


def _salvage(data: Mapping[str, Any], failed: set[str], reference: Reference) -> dict[str, Any]:
    """The fields the cross-field checks use, validated one by one; a field that failed is marked."""
    prepared = prepare(data, reference)
    out: dict[str, Any] = {}
    for name, adapter in _CROSS_ADAPTERS.items():
        if name in failed:
            out[name] = _INVALID
            continue
        try:
            value = adapter.validate_python(prepared.get(name))
        except ValidationError:
            value = _INVALID
        out[name] = as_utc(value) if isinstance(value, datetime) else value
    return out
