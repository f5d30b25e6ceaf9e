"""Settings every service shares; each service subclasses these in one typed settings object."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .express import ExpressSettings
from .tokens import AuthSettings


class BackboneSettings(BaseSettings):
    """Kafka and PostgreSQL connection settings, read from the environment; bad values fail at start."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    kafka_bootstrap_servers: str = Field(default="127.0.0.1:19092", validation_alias="KAFKA_BOOTSTRAP_SERVERS")
    database_url: str = Field(
        default="postgresql+asyncpg://leadbridge@127.0.0.1:15432/leadbridge", validation_alias="DATABASE_URL"
    )
    # None: fitted to the cluster, min(3, brokers) replicas and min.insync.replicas 2 from three (admin.py)
    kafka_replication_factor: int | None = Field(default=None, ge=1, validation_alias="KAFKA_REPLICATION_FACTOR")
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1, validation_alias="KAFKA_MIN_INSYNC_REPLICAS")
    handler_max_attempts: int = Field(default=5, ge=1, validation_alias="HANDLER_MAX_ATTEMPTS")
    handler_backoff_seconds: float = Field(default=0.2, gt=0, validation_alias="HANDLER_BACKOFF_SECONDS")
    # /metrics on a port (and address) of its own, e.g. only on the internal network; unset: on the API's port
    metrics_port: int | None = Field(default=None, ge=1, le=65535, validation_alias="METRICS_PORT")
    metrics_host: str = Field(default="0.0.0.0", validation_alias="METRICS_HOST")
    # who may call the service's API (AUTH_* variables, see leadbridge_events.auth)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    # batch consumption: a partition's fetched records handled in one transaction (1 = one per record)
    consumer_batch_size: int = Field(default=500, ge=1, le=10000, validation_alias="CONSUMER_BATCH_SIZE")
    consumer_batch_wait_ms: int = Field(default=200, ge=1, le=10000, validation_alias="CONSUMER_BATCH_WAIT_MS")
    # the consumer's linger: the broker holds a fetch until this long has passed or LINGER_BYTES have gathered,
    # so a read model's batch holds several events of each lead, written once (0: a fetch returns as soon as a
    # record is there; insights lingers by default) -- see docs/backbone.md
    consumer_linger_ms: int = Field(default=0, ge=0, le=10000, validation_alias="CONSUMER_LINGER_MS")
    # where services share a machine's cores, one that may fall behind (a read model) lowers its own scheduling
    # priority to this niceness, so a backlog is routed first (0: as started; insights 10) -- see priority.py
    cpu_niceness: int = Field(default=0, ge=0, le=19, validation_alias="CPU_NICENESS")
    # offsets are committed beside the next fetch's handling, at most once per this interval (0: after every
    # fetch); only offsets of committed transactions, so never sooner than durable -- see docs/backbone.md
    consumer_commit_interval_ms: int = Field(default=100, ge=0, le=60000,
                                             validation_alias="CONSUMER_COMMIT_INTERVAL_MS")
    # the outbox relay: batches handed to the producer while earlier ones await their acknowledgements, and the
    # producer's linger (0: a lone record goes out at once; records sent while a request is in flight are
    # batched anyway) -- see docs/backbone.md
    outbox_max_in_flight_batches: int = Field(default=4, ge=1, le=64, validation_alias="OUTBOX_MAX_IN_FLIGHT_BATCHES")
    kafka_producer_linger_ms: int = Field(default=0, ge=0, le=1000, validation_alias="KAFKA_PRODUCER_LINGER_MS")
    # published rows are deleted once the broker acknowledged them; true: kept, marked sent_at (an audit of what
    # was published, at the cost of a rewritten row each and a table that grows until you purge it)
    outbox_keep_sent: bool = Field(default=False, validation_alias="OUTBOX_KEEP_SENT")
    # the express lane: a new lead's first event ahead of a backlog (EXPRESS_* variables, see leadbridge_events.express)
    express: ExpressSettings = Field(default_factory=ExpressSettings)
    # every pooled connection: how long a statement may wait for a lock, and run, before it is cancelled (0: no limit)
    db_lock_timeout_ms: int = Field(default=10_000, ge=0, validation_alias="DB_LOCK_TIMEOUT_MS")
    db_statement_timeout_ms: int = Field(default=30_000, ge=0, validation_alias="DB_STATEMENT_TIMEOUT_MS")
    # how long an idle HTTP keep-alive connection stays open. Longer than what clients and load balancers keep
    # theirs (httpx and most clients 5 s, AWS ALB 60 s): with equal timeouts a client reuses a connection the
    # server is closing at that instant, and sees a reset (uvicorn's own default is 5 s)
    http_keep_alive_seconds: int = Field(default=75, ge=1, le=3600, validation_alias="HTTP_KEEP_ALIVE_SECONDS")

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        if value.startswith("postgresql://") or value.startswith("postgres://"):
            value = "postgresql+asyncpg://" + value.split("://", 1)[1]
        if not value.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return value


class ServiceSettings(BackboneSettings):
    """One service's settings, in the one style every service uses: subclass it with the service's prefix,

    ``model_config = SettingsConfigDict(env_prefix="SCORING_")``, and plain fields (``port: int = 8002``);
    ``SCORING_PORT`` then sets ``port``. The backbone's names above (``KAFKA_BOOTSTRAP_SERVERS``,
    ``DATABASE_URL``, ...) are shared by every service and take no prefix. Values can be passed by field name
    or by their environment variable's name (``ScoringSettings(SCORING_PORT=9000)``), as the backbone's can.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", populate_by_name=True)

    host: str = "0.0.0.0"
    port: int = Field(default=8000, ge=1, le=65535)
    group_id: str | None = Field(default=None, description="The consumer group; unset: the service's name.")

    @model_validator(mode="before")
    @classmethod
    def _environment_names(cls, data: Any) -> Any:
        """``SCORING_PORT=...`` passed as a keyword sets ``port`` (rather than being ignored as unknown)."""
        prefix = str(cls.model_config.get("env_prefix") or "")
        if not prefix or not isinstance(data, dict):
            return data
        named = {}
        for key, value in data.items():
            field = key[len(prefix):].lower() if isinstance(key, str) and key.upper().startswith(prefix) else None
            named[field if field in cls.model_fields else key] = value
        return named
