"""Alembic revisions of the intake schema (`leadbridge-migrations revision intake -m ...`)."""
