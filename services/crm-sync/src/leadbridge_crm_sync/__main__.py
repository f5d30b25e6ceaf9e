"""``python -m leadbridge_crm_sync``: run crm-sync (a bad destinations file stops it with a clear message)."""

from __future__ import annotations

import sys

from leadbridge_events.logs import configure_logging
from pydantic import ValidationError

from .config import ConfigError


def main() -> int:
    import uvicorn

    from .app import create_app
    from .settings import CrmSyncSettings

    configure_logging("crm-sync")
    try:
        settings = CrmSyncSettings()
        app = create_app(settings)
    except (ConfigError, ValidationError) as exc:
        print(f"crm-sync cannot start: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
