"""The router's Prometheus metrics (no per-lead labels)."""

from prometheus_client import Counter

ROUTED = Counter("leadbridge_router_decisions_total", "Routing decisions by outcome", ["outcome"])
OVERFLOWS = Counter("leadbridge_router_overflows_total",
                    "Pools that could not take a lead, by pool and by where the lead went", ["pool", "outcome"])
ESCALATIONS = Counter("leadbridge_router_escalations_total", "SLA breaches that re-assigned a lead", ["policy"])
SKIPPED = Counter("leadbridge_router_events_skipped_total", "Events that needed no routing, by why", ["why"])
CLOSED = Counter("leadbridge_router_leads_closed_total", "Leads closed by a won/lost follow-up", ["outcome"])
WAITLIST_ROUTED = Counter("leadbridge_router_waitlist_routed_total",
                          "Leads returned to nurture for capacity, routed later when a slot freed up")
