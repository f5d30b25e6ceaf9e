"""Local, Docker-free infrastructure for LeadBridge: a real Kafka broker (or a KRaft cluster of several, see
``KafkaCluster``: ``KafkaCluster.throwaway(brokers=3)``, ``.kill(i)``, ``.restart(i)``, ``.bootstrap_servers``)
and a real PostgreSQL."""

from .cluster import KafkaCluster
from .kafka import KafkaBroker, MissingJavaError, fetch_jars
from .postgres import MissingPostgresError, PostgresCluster

__all__ = ["KafkaBroker", "KafkaCluster", "MissingJavaError", "MissingPostgresError", "PostgresCluster",
           "fetch_jars"]
