"""``python -m leadbridge_sla_watcher``: the SLA watcher (/healthz, /readyz, /metrics on SLA_WATCHER_PORT, 8004)."""

import sys

from .app import SERVICE

if __name__ == "__main__":
    sys.exit(SERVICE.main())
