"""Scoring's composition root: settings -> model -> the service (Kafka, Postgres, handlers, HTTP)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from leadbridge_events.bootstrap import Service, Wiring
from leadbridge_events.runtime import ServiceRuntime

from . import store
from .handlers import batch_handlers_for, handlers_for
from .model import ScoringModel
from .model_file import ModelError, load_model
from .settings import ScoringSettings


def model_routes(wiring: Wiring) -> APIRouter:
    from leadbridge_events.auth import require_scopes

    router = APIRouter()

    @router.get("/model", dependencies=[Depends(require_scopes("scoring:read"))])
    async def current_model() -> dict[str, Any]:
        """The scoring model in force: the rules both teams agreed on."""
        return wiring.deps.model_dump(mode="json")

    return router


SERVICE = Service(
    name="scoring", settings=ScoringSettings, metadata=store.metadata, migrations=store.MIGRATIONS,
    handlers=handlers_for,  # the model is the handlers' dependency
    runtime_options=lambda model: {"batch_handlers": batch_handlers_for(model)},
    deps=lambda settings: load_model(settings.model_path),  # a bad model file: ModelError, nothing starts
    routers=(model_routes,), startup_errors=(ModelError,),
)


def create_app(settings: ScoringSettings | None = None, model: ScoringModel | None = None) -> FastAPI:
    """The service. A bad model file raises ModelError here, before anything starts."""
    return SERVICE.create_app(settings, deps=model)


def build_runtime(settings: ScoringSettings, model: ScoringModel, **runner_options: Any) -> ServiceRuntime:
    return SERVICE.build_runtime(settings, model, **runner_options)
