"""Alembic revisions of the insights schema (`leadbridge-migrations revision insights -m ...`)."""
