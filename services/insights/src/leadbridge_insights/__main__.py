"""``python -m leadbridge_insights``: run the insights service (timeline, funnel, web page)."""

import sys

from .app import SERVICE

if __name__ == "__main__":
    sys.exit(SERVICE.main())
