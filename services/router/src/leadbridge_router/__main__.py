"""``python -m leadbridge_router``: the router service (roster API on ROUTER_PORT, default 8003)."""

import sys

from .app import SERVICE

if __name__ == "__main__":
    sys.exit(SERVICE.main())
