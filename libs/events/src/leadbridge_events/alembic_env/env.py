"""Alembic environment shared by every service: migrations run on the connection the runtime passes in.

Each service keeps only its revision files (``<package>/migrations/``); the version table lives in the
service's own schema, so services never touch each other's tables or migration history.
"""

from __future__ import annotations

from alembic import context

config = context.config
connection = config.attributes["connection"]
metadata = config.attributes["target_metadata"]


def include_name(name, type_, parent_names):  # only this service's schema
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
