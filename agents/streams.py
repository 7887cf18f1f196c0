"""Typed helpers around Faust's manual-ack batching (the one place that knows its quirks)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from faust.streams import Stream
from faust.types import EventT, StreamT


def manual_ack(stream: StreamT[Any]) -> Stream[Any]:
    """The stream with automatic acks off: offsets move only through ``Stream.ack(event)``."""
    return cast(Stream[Any], cast(Stream[Any], stream).noack())


async def event_batches(s: Stream[Any], max_: int, within: float) -> AsyncIterator[list[EventT[Any]]]:
    """Batches of at most ``max_`` events, or fewer after ``within`` seconds.

    ``noack_take`` yields the buffered events themselves (its annotation says values), and it never
    acks them: the caller acks each event after every write it caused has returned.
    """
    async for items in s.noack_take(max_, within=within):
        yield cast(list[EventT[Any]], list(items))
