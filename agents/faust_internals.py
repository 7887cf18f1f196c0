"""Every place foodrisk reaches into Faust's internals, in one room.

Written against faust-streaming 0.15.x (``FAUST_PIN``, the same range as pyproject.toml; a test
holds the two together and checks the installed version). Each name below is private or
undocumented in Faust, so each can change in any release: before moving the pin, read
``faust/transport/consumer.py`` and ``faust/transport/drivers/aiokafka.py`` of the new version
against this file and run tests/unit/test_commit_rule.py and the two-workers drill.

What is touched, and why:

* the commit rule (``StrictConsumer``: ``Consumer._new_offset``, ``_add_gap``, ``perform_seek``,
  ``_acked``, ``_acked_index``, ``_committed_offset``). Faust commits a run of acked offsets that
  may start one past the committed offset, skips that check when the committed offset is 0 or
  unknown, and takes offsets it read past ("gaps") as processed. Around a rebalance it can drop a
  fetched message of the previous generation, which was then committed unprocessed: one result of
  1,500 lost in 1 of 10 runs of the two-workers drill under CPU load. Here the commit moves only
  over acked offsets that start exactly at the committed one (``next_commit``, pure).
* the idempotent producer (``Producer._settings_extra``): Faust turns aiokafka's idempotence on
  only inside transactions; foodrisk wants it always, so a resent batch is not written twice.
* releasing a batch without acking it (the set behind ``Consumer.unacked``): Faust waits at
  shutdown and at every rebalance until each message handed to an agent is acked; a delivery
  waiting out an outage would hold both for its whole give-up horizon. Dropping the messages from
  the set lets the worker go on; their offsets stay uncommitted, so they are read again.
* reading the consumer's state for the lag gauges and the stalled-partition re-read
  (``_committed_offset``, ``_unacked_messages``): Faust has no public accessor for either.
* the aiokafka producer behind Faust's (``Producer._ensure_producer``): the early-warning agent
  produces its tables' changelog records through it in batches (``agents/early_agent.py``).

Nothing else in the code base names a private Faust attribute (a unit test looks for them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import faust

_log = logging.getLogger(__name__)

FAUST_PIN = "faust-streaming>=0.15.3,<0.16"  # keep equal to pyproject.toml's dependency


# -- the commit rule ------------------------------------------------------------------------------


def next_commit(acked: list[int], committed: int) -> int | None:
    """The offset to commit (next to read) given the sorted acked offsets past ``committed``, or
    None: only a run of acked offsets that starts exactly at ``committed`` moves the commit. Pure."""
    if not acked or acked[0] != committed:
        return None
    end = committed
    for offset in acked:
        if offset != end:
            break
        end += 1
    return end


def strict_consumer_class() -> type:
    """Faust's aiokafka consumer with the commit rule above (imported late: faust's transport
    drivers pull in aiokafka)."""
    from faust.transport.drivers.aiokafka import Consumer

    class StrictConsumer(Consumer):
        """Faust's aiokafka consumer that commits only offsets whose messages were acknowledged.

        * the commit moves only over a run of acked offsets that starts at the committed offset
          (``next_commit``); a partition never committed starts at its earliest offset, looked up
          when it is assigned (the reset policy is earliest);
        * Faust's "gaps" (offsets it assumes absent because it read past them) are not taken as
          processed: foodrisk's topics are neither compacted nor transactional, so a gap means a
          message was skipped, and it is read again (pipeline/lag.py re-reads stalled partitions).
        """

        def _new_offset(self, tp: Any) -> int | None:
            acked = self._acked[tp]
            committed = self._committed_offset.get(tp)
            if not acked or committed is None:
                return None
            acked.sort()
            end = next_commit(acked, committed)
            if end is None:
                return None
            done = acked[: end - committed]
            del acked[: end - committed]
            self._acked_index[tp].difference_update(done)
            return end

        async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
            # Faust's range is inclusive: it holds the message that revealed the gap.
            _log.info("%s[%s]: read past offsets %d..%d; they are not committed until read", tp.topic,
                      tp.partition, offset_from, offset_to)

        async def perform_seek(self) -> None:
            await super().perform_seek()
            unknown = [tp for tp in self.assignment()
                       if self._committed_offset.get(tp) is None and self.app.topics.acks_enabled_for(tp.topic)]
            if unknown:
                earliest = await self.earliest_offsets(*unknown)
                for tp in unknown:
                    if self._committed_offset.get(tp) is None and tp in earliest:
                        self._committed_offset[tp] = max(0, int(earliest[tp]))

    return StrictConsumer


def idempotent_producer_class() -> type:
    from faust.transport.drivers.aiokafka import Producer

    class IdempotentProducer(Producer):
        """faust's aiokafka producer with the idempotent producer always on (faust enables it only
        inside transactions): a retried send after a lost acknowledgement is not written twice."""

        def _settings_extra(self) -> Mapping[str, Any]:
            return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    return IdempotentProducer


def configure_transport(app: faust.App) -> None:
    """Every producer of ``app`` is idempotent with acks=all, batching normally; the consumer
    commits only what was acknowledged (``StrictConsumer``)."""
    # Per app (this transport instance), not faust's class attribute for every app.
    app.transport.Producer = idempotent_producer_class()  # type: ignore[misc]  # faust types it as a ClassVar
    app.transport.Consumer = strict_consumer_class()  # type: ignore[misc]  # faust types it as a ClassVar


# -- the consumer's bookkeeping -------------------------------------------------------------------


def release_unacked(app: Any, messages: Iterable[Any]) -> None:
    """Take ``messages`` out of the consumer's unacked set without acking them: Faust stops waiting
    for them at shutdown or rebalance, and their offsets stay uncommitted (they are read again)."""
    unacked = app.consumer.unacked  # the consumer's own set, not a copy
    for message in messages:
        unacked.discard(message)


def committed_offsets(consumer: Any) -> Mapping[Any, int | None]:
    """The group's committed offset per assigned partition, as Faust keeps it (read at assignment,
    updated at each commit). A defaultdict: ``.get()`` does not insert."""
    committed: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
    return committed


def in_flight_partitions(consumer: Any) -> set[tuple[str, int]]:
    """(topic, partition) of every message fetched and handed on but not acked yet."""
    unacked = getattr(consumer, "_unacked_messages", ())  # a WeakSet of Message
    return {(m.tp.topic, int(m.tp.partition)) for m in list(unacked) if not m.acked}


def aiokafka_producer(app: Any) -> Any:
    """The aiokafka producer under Faust's producer (started if it was not)."""
    return app.producer._ensure_producer()
