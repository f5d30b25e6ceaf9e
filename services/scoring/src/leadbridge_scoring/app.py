"""Scoring's composition root: settings -> model -> the service (Kafka, Postgres, handlers, HTTP)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from leadbridge_contracts.events import LeadCaptured
from leadbridge_events.auth import require_scopes
from leadbridge_events.bootstrap import Service, Wiring
from leadbridge_events.runtime import ServiceRuntime

from . import store
from .handlers import HANDLERS
from .model import ScoringModel
from .model_file import ModelError, load_model
from .rescoring import Rescorer
from .settings import ScoringSettings


def model_routes(wiring: Wiring) -> APIRouter:
    router = APIRouter()

    @router.get("/model", dependencies=[Depends(require_scopes("scoring:read"))])
    async def current_model() -> dict[str, Any]:
        """The scoring model in force: the rules both teams agreed on."""
        return wiring.deps.model.model_dump(mode="json")

    return router


SERVICE = Service(
    name="scoring", settings=ScoringSettings, metadata=store.metadata, migrations=store.MIGRATIONS,
    handlers=HANDLERS,
    # the handlers reach the model as ctx.deps (a Rescorer); a bad model file: ModelError, nothing starts
    deps=lambda settings: Rescorer(load_model(settings.model_path)),
    routers=(model_routes,), startup_errors=(ModelError,),
    express=(LeadCaptured,),  # a new lead's capture is scored at once, even behind a backlog (express lane)
)


def create_app(settings: ScoringSettings | None = None, model: ScoringModel | None = None) -> FastAPI:
    """The service. A bad model file raises ModelError here, before anything starts."""
    return SERVICE.create_app(settings, deps=Rescorer(model) if model is not None else None)


def build_runtime(settings: ScoringSettings, model: ScoringModel, **runner_options: Any) -> ServiceRuntime:
    return SERVICE.build_runtime(settings, Rescorer(model), **runner_options)
