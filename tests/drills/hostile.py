"""A corpus of hostile messages, interleaved with valid results, generated from a seed."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta

import orjson

from tests.integration.factories import SAMPLED, encode, result

INJECTIONS = [
    "'); DROP TABLE foodrisk.results; --",
    "1' OR '1'='1",
    "\\'; SELECT * FROM system.users; --",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "%(x)s {x:String} ${jndi:ldap://x}",
    "Robert'); DROP TABLE Students;--",
]
UNICODE = [
    "\u202eevil\u202c",  # right-to-left override
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\U0001f96c\U0001f336",  # vegetables as emoji
    "\u0000nul",
    "\ud7ff\ue000\uffff",
    "天河区" * 20,
    "\u200b\u200d\ufeff",
]


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def hostile_corpus(prefix: str, n: int, *, seed: int = 11, huge_every: int = 0) -> list[bytes]:
    """``n`` messages: about a third valid results (some with hostile-looking strings), the rest
    broken in every way the drills list. ``huge_every`` > 0 adds a 10 MB message that often."""
    rng = random.Random(seed)
    out: list[bytes] = []

    def rid(i: int) -> str:
        return f"{prefix}-{i:06d}"

    makers: list[Callable[[int], bytes]] = [
        lambda i: encode(result(rid(i), value=float(rng.randint(0, 45)))),  # valid
        lambda i: encode(result(rid(i), site_id=rng.choice(INJECTIONS), district=rng.choice(INJECTIONS))),  # valid
        lambda i: encode(result(rid(i), commodity=rng.choice(UNICODE)[:60] or "x")),  # valid, odd names
        lambda i: rng.randbytes(rng.randint(0, 300)),  # random bytes
        lambda i: encode(result(rid(i)))[: rng.randint(1, 120)],  # truncated JSON
        lambda i: _nested(rng.choice([100, 1000, 5000])),  # deeply nested
        lambda i: encode({**result(rid(i)), "value": rng.choice(["12", [1], {"a": 1}, True])}),  # wrong types
        lambda i: encode({k: v for k, v in result(rid(i)).items() if k not in rng.sample(
            ["result_id", "site", "commodity", "analyte", "method", "sampled_at"], 2)}),  # missing fields
        lambda i: encode(result(rid(i), unit=rng.choice(["furlongs", "ppm?", "", "MG/KGG"]))),  # unknown unit
        lambda i: encode(result(rid(i))).replace(b'"value":', b'"value":' + rng.choice(
            [b"NaN", b"Infinity", b"-Infinity", b"-5", b"1e999"]) + b",\"x\":", 1),  # NaN/inf/negative
        lambda i: encode(result(rid(i), sampled_at=datetime.fromisoformat("2099-01-01T00:00:00+08:00"))),
        lambda i: encode(result(f"{prefix}-dup-{i % 7}", value=3.0)),  # duplicate result ids (valid)
        lambda i: encode(result(rid(i), sample_id="s" * 5000)),  # over-long string
        lambda i: encode(result(rid(i), sampled_at=SAMPLED + timedelta(hours=2))),  # sampled after tested
        lambda i: orjson.dumps(rng.choice([None, 42, "text", [], {}])),  # not an object
    ]
    for i in range(n):
        if huge_every and i % huge_every == huge_every - 1:
            out.append(b'{"result_id": "' + b"h" * 10_000_000 + b'"}')
            continue
        out.append(rng.choice(makers)(i))
    return out
