"""Alembic environment shared by every service: migrations run on the connection the runtime passes in.

Each service keeps only its revision files (``<package>/migrations/``); the version table lives in the
service's own schema, so services never touch each other's tables or migration history.
"""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import MetaData

config = context.config
connection = config.attributes["connection"]
metadata: MetaData = config.attributes["target_metadata"]


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:  # only this service's schema
    if type_ == "schema":
        return name == metadata.schema
    return True


context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table_schema=metadata.schema,
    include_schemas=True,
    include_name=include_name,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
