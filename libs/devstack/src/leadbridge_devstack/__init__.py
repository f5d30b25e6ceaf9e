"""Local, Docker-free infrastructure for LeadBridge: a real Kafka broker and a real PostgreSQL."""

from .kafka import KafkaBroker, MissingJavaError, fetch_jars
from .postgres import MissingPostgresError, PostgresCluster

__all__ = ["KafkaBroker", "MissingJavaError", "MissingPostgresError", "PostgresCluster", "fetch_jars"]
