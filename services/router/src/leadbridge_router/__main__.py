"""``python -m leadbridge_router``: the router service (roster API on ROUTER_PORT, default 8003)."""

import uvicorn
from leadbridge_events.logs import configure_logging

from .app import create_app
from .settings import RouterSettings


def main() -> None:
    configure_logging("router")
    settings = RouterSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()
