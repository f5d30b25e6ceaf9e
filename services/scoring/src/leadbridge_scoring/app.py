"""Scoring's composition root: settings -> model -> runtime (Kafka, Postgres, handlers) -> HTTP app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from leadbridge_events.auth import protected_app, require_scopes
from leadbridge_events.http import add_operational_routes
from leadbridge_events.migrations import migrations_dir
from leadbridge_events.runtime import ServiceRuntime

from . import store
from .handlers import HANDLERS
from .model import ScoringModel
from .model_file import load_model
from .rescoring import Rescorer
from .settings import ScoringSettings


def build_runtime(settings: ScoringSettings, model: ScoringModel, *, group_id: str | None = None,
                  **runner_options: Any) -> ServiceRuntime:
    return ServiceRuntime(name="scoring", settings=settings, metadata=store.metadata, handlers=HANDLERS,
                          deps=Rescorer(model),
                          group_id=group_id or settings.group_id, migrations=migrations_dir("leadbridge_scoring"),
                          **runner_options)


def create_app(settings: ScoringSettings | None = None, model: ScoringModel | None = None) -> FastAPI:
    """The service. A bad model file raises ModelError here, before anything starts."""
    settings = settings or ScoringSettings()
    model = model or load_model(settings.model_path)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = build_runtime(settings, model)  # aiokafka needs the running loop
        app.state.runtime = runtime
        async with runtime.lifespan(app):
            yield

    app = protected_app(settings.auth, title="LeadBridge scoring", lifespan=lifespan)
    app.state.model = model

    add_operational_routes(app, lambda: app.state.runtime)

    @app.get("/model", dependencies=[Depends(require_scopes("scoring:read"))])
    async def current_model() -> dict[str, Any]:
        """The scoring model in force: the rules both teams agreed on."""
        return model.model_dump(mode="json")

    return app
