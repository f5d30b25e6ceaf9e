"""Alembic revisions of the scoring schema (`leadbridge-migrations revision scoring -m ...`)."""
