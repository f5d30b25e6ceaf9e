"""``python -m leadbridge_insights``: run the insights service (timeline, funnel, web page)."""

from __future__ import annotations

import sys

from leadbridge_events.logs import configure_logging

from .settings import InsightsSettings


def main() -> int:
    import uvicorn

    from .app import create_app

    configure_logging("insights")
    settings = InsightsSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
