"""crm-sync's Prometheus metrics. Labels are destinations ('hubspot:main', 'webhook:<id>'), never leads."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

DELIVERIES = Counter("leadbridge_crm_deliveries_total", "Delivery attempts by destination and result "
                     "(delivered, failed = will retry, dead = dead-lettered, skipped)", ["destination", "result"])
DELIVERY_LAG = Histogram(
    "leadbridge_crm_delivery_lag_seconds", "From the event (e.g. the routing) to its delivery at the destination",
    ["destination"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)
OLDEST_PENDING = Gauge("leadbridge_crm_oldest_pending_age_seconds",
                       "Age of the oldest delivery not yet made, per destination", ["destination"])
PENDING = Gauge("leadbridge_crm_pending_deliveries", "Deliveries queued or waiting to be retried", ["destination"])
DEAD_LETTERS = Gauge("leadbridge_crm_dead_letters", "Deliveries given up on (replayable)", ["destination"])
FAILING_SECONDS = Gauge("leadbridge_crm_endpoint_failing_seconds",
                        "How long the destination has failed without a success (0: healthy)", ["destination"])
PAUSED = Gauge("leadbridge_crm_endpoint_paused", "1 while the destination is paused (failing for hours)",
               ["destination"])
INBOUND = Counter("leadbridge_crm_inbound_total", "Inbound CRM notifications by CRM and result "
                  "(accepted, duplicate, ignored, bad_signature, stale, wrong_org)", ["crm", "result"])
