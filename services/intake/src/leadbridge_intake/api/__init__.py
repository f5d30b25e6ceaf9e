"""HTTP adapters of the intake service (FastAPI routers)."""
