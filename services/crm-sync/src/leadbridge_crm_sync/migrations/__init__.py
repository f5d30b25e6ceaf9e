"""Alembic revisions of the crm_sync schema."""
