"""``python -m leadbridge_crm_sync``: run crm-sync (a bad destinations file stops it with a clear message)."""

import sys

from .app import SERVICE

if __name__ == "__main__":
    sys.exit(SERVICE.main())
