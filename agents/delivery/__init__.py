"""Alert delivery: the alerts topic -> Alertmanager (API v2) and a signed webhook.

Each target has its own agent on the alerts topic (manual acks, like the archive agent), so a
webhook outage does not hold Alertmanager deliveries back, and the reverse. Per batch:

1. post the batch's alerts, retrying with capped, jittered backoff (``sinks.retry``) while the
   target is unreachable or answers 5xx/401/403/404 (a fixable configuration), for at most the
   give-up horizon (``FOODRISK_ALERTMANAGER_GIVE_UP_S`` / ``FOODRISK_WEBHOOK_GIVE_UP_S``);
2. a batch refused as a whole (HTTP 400/413/422) is split and sent alert by alert, so only the
   alert that is itself refused is set aside;
3. alerts not taken by the horizon, and refused ones, are **parked**: a row in ClickHouse
   ``parked_alerts`` (through the ClickHouseWriter, which waits out a ClickHouse outage) plus
   ``foodrisk_parked_alerts_total{target,reason}`` and an error log line;
4. only then are the batch's events acked. Faust commits an offset once every agent on the
   topic acked it, so an alert is never committed before each target took it or it was parked;
5. a shutdown or a rebalance during the retries releases the batch unacked
   (:class:`DeliveryInterrupted`): it is delivered after the restart, not parked.

Firing alerts are kept current in Alertmanager by a re-post timer (``targets.py``), from a set
(``firing.py``) rebuilt from ClickHouse ``alerts`` after a start or a rebalance.

The rooms:

| module | its job |
|---|---|
| ``config.py`` | :class:`DeliveryConfig`, the targets' names and limits |
| ``policy.py`` | the decisions, pure: retry window, split a refused batch, park, keep firing; the parked row |
| ``deliverer.py`` | the loop both targets share: retry until the horizon, split, park |
| ``targets.py`` | Alertmanager (payloads, the firing set's rebuild and re-post timer) and the webhook |
| ``firing.py`` | the firing alerts one worker keeps current (pure bookkeeping) |
| ``agent.py`` | the Faust wiring: agents, acks, release on interruption, partition signals |

How an alert looks to people (labels, severity, annotations, links) is ``sinks/presentation.py``;
the HTTP sinks are ``sinks/alertmanager.py`` and ``sinks/webhook.py``; the rebuild query is
``sinks/alert_queries.py``.
"""

from agents.delivery.agent import register_delivery
from agents.delivery.config import DeliveryConfig
from agents.delivery.policy import DeliveryInterrupted, Item, Parked, parked_values
from agents.delivery.targets import AlertmanagerDelivery, WebhookDelivery

__all__ = [
    "AlertmanagerDelivery",
    "DeliveryConfig",
    "DeliveryInterrupted",
    "Item",
    "Parked",
    "WebhookDelivery",
    "parked_values",
    "register_delivery",
]
