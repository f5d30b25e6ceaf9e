"""Alembic revisions of the sla-watcher schema (`leadbridge-migrations revision sla-watcher -m ...`)."""
