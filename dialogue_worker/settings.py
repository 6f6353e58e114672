"""Every setting of a dialogue worker, read once from the environment at start-up."""

from __future__ import annotations

import re
import socket
import tempfile
from pathlib import Path
from typing import Literal, Self
from urllib.parse import unquote_plus

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict
from pymongo.errors import PyMongoError
from pymongo.uri_parser_shared import _validate_uri

from contracts.events import EVENTS_TOPIC
from contracts.records import TOPIC
from contracts.requests import MAX_USERS
from discovery.models import is_wildcard
from platform_common.addresses import ConsulToken, ConsulUrl, KafkaBootstrap
from platform_common.local import (
    LOCAL_ENTRYPOINT_TOKEN,
    header_token_problem,
    refuse_public_bind,
    secret_problem,
)
from platform_common.logs import LogLevel
from platform_common.settings_base import BoundedSettings


def _without_password(reason: str, url: str) -> str:
    """pymongo's `reason` for refusing `url`, unless it repeats any of the password."""
    userinfo = url.partition("://")[2].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    pieces = {password, unquote_plus(password)}
    pieces |= {piece for piece in re.split(r"[:/@?#]", password) if len(piece) >= 3}
    if any(piece and piece in reason for piece in pieces):
        return "pymongo's reason is not shown: it repeats part of the password"
    return reason


def mongo_url(url: str) -> str:
    """`url` if the MongoDB client takes it; ValueError naming the reason, never the
    password. The check the client itself makes when it is built (no DNS look-up for
    mongodb+srv, which parse_uri would make), options included: an unknown or misspelt
    one, which the client would only warn about and ignore, is refused."""
    try:
        _validate_uri(url, validate=True, warn=False, normalize=False)
    except (PyMongoError, ValueError, TypeError, OSError) as exc:  # OSError: a tlsCAFile
        raise ValueError(
            f"MONGO_URL is not a URL the MongoDB client takes: {_without_password(str(exc), url)}"
            " (e.g. mongodb://host:27017/ or mongodb+srv://host/)"
        ) from None
    return url


def _unbracketed(setting: str, host: str) -> str:
    """`host` unless it is written in brackets (the URLs made of it add them)."""
    if host.startswith("["):
        raise ValueError(
            f"{setting}={host!r}: write an IPv6 address without brackets ({host.strip('[]')!r})"
        )
    return host


#: A MongoDB database name: at most 63 bytes, none of these characters (pymongo's and the
#: server's rules).
DB_NAME_MAX = 63
_DB_NAME_FORBIDDEN = ' ./\\$"\x00'


class WorkerSettings(BoundedSettings):
    """Environment variables (upper-case field names) with their defaults."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    dialogue_env: Literal["local", "production"] = Field(
        default="production", description="'local' allows the built-in development token"
    )
    kafka_bootstrap: KafkaBootstrap = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, h:p,..."
    )
    mongo_url: str = Field(
        default="mongodb://127.0.0.1:27017/", description="MongoDB (or mongos) URL"
    )
    mongo_db: str = Field(default="dialogue", description="database holding chats and messages")
    mongo_timeout: float = Field(
        default=10.0,
        gt=0,
        le=3600,  # pymongo refuses a timeoutMS of a billion or more with a ValueError
        description="seconds one MongoDB operation may take (timeoutMS)",
    )
    api_publish_timeout: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="seconds the internal API waits for Kafka to take the event of a new "
        "chat, new members or a read marker before answering 5031",
    )
    max_chat_members: int = Field(
        default=1000,
        ge=MAX_USERS,  # a chat created with one request's users always fits
        le=10_000,  # chat.members_added lists them all: 220 KB at most, under MAX_RECORD
        description="members a chat may have: adding users past it answers 4091",
    )
    consul_url: ConsulUrl = Field(
        default="http://127.0.0.1:8500", description="Consul agent HTTP API"
    )
    consul_token: ConsulToken = Field(
        default=None,
        description="Consul ACL token (service:write on WORKER_SERVICE); unset: no token sent",
    )
    worker_app_id: str = Field(
        default="dialogue-worker",
        min_length=1,
        description="faust app id, which is also the Kafka consumer group",
    )
    worker_host: str = Field(
        default="127.0.0.1", description="address the internal HTTP API binds to"
    )
    worker_port: int = Field(
        default=8100, ge=1, le=65535, description="port of the internal HTTP API"
    )
    worker_advertise_host: str | None = Field(
        default=None, description="address registered in Consul (default: WORKER_HOST)"
    )
    worker_service: str = Field(
        default="dialogue",
        description="Consul service name the worker registers under (the gateway's WORKER_SERVICE)",
    )
    service_id: str | None = Field(
        default=None,
        description="Consul instance id (default: derived from advertised host and port)",
    )
    topic: str = Field(
        default=TOPIC, description="message topic; its dead-letter topic is <topic>.dlq"
    )
    events_topic: str = Field(
        default=EVENTS_TOPIC, description="topic the worker publishes chat events to"
    )
    topic_partitions: int = Field(default=12, ge=1, description="partitions created for the topics")
    topic_replication: int = Field(
        default=0,
        ge=0,
        le=2**15 - 1,  # an int16 in Kafka's CreateTopics request
        description="replication factor of created topics (0: min(3, brokers))",
    )
    topic_min_insync: int = Field(
        default=0,
        ge=0,
        description="min.insync.replicas of created topics (0: 2 with 3 or more replicas, else 1)",
    )
    entrypoint_token: SecretStr = Field(
        default=SecretStr(LOCAL_ENTRYPOINT_TOKEN),
        description="internal token expected in 'Authorization: Entrypoint <token>'",
    )
    batch_size: int = Field(default=500, ge=1, description="records written per bulk call at most")
    batch_within: float = Field(default=0.05, gt=0, description="seconds to wait to fill a batch")
    # Floors: below them the timers turn into busy loops that flood the group coordinator
    # or Consul (a TTL of 0.01 s heartbeats every 3 ms), or, for STALL_AFTER, a tail of
    # transaction markers counts as stuck before the watch timer's two ticks pass it.
    commit_interval: float = Field(
        default=1.0, ge=0.1, le=60, description="seconds between offset commits (0.1-60)"
    )
    heartbeat_ttl: float = Field(
        default=10.0,
        ge=2,  # below, one TTL update that times out (1 s at least) outlasts the check
        le=86_400,
        description="TTL of the Consul health check, seconds (2-86400)",
    )
    stall_after: float = Field(
        default=30.0,
        ge=3,
        description="seconds a partition with lag may keep its position before it is stuck (>= 3)",
    )
    chat_cache_ttl: float = Field(
        default=5.0, ge=0, description="seconds a chat's members are trusted for membership checks"
    )
    chat_lists_max: int = Field(
        default=500_000,
        ge=0,
        description="entries of the chat lists the worker keeps (a user, a user's chat and "
        "a kept chat's member one each, a kept chat 6 more; 130-200 bytes an entry); "
        "0 reads every list whole (and no events feed runs)",
    )
    chat_lists_ttl: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="seconds after which a kept chat list is read whole again",
    )
    retry_backoff_max: float = Field(
        default=5.0,
        ge=0.1,  # the first pause is 0.1 s: a smaller ceiling made every write step fail
        description="longest pause between two retries of a failed write (>= 0.1)",
    )
    shutdown_grace: float = Field(
        default=10.0, ge=0, description="seconds SIGTERM waits for the batch in hand to be written"
    )
    deregister_grace: float = Field(
        default=0.5, ge=0, description="seconds reads are still served after deregistering"
    )
    data_dir: Path = Field(
        default=Path(tempfile.gettempdir()) / "dialogue-worker",
        description="faust's scratch directory (one sub-folder per app id)",
    )
    log_level: LogLevel = Field(default="INFO", description="root log level (any case)")
    version: str = Field(
        default="0.1.0", description="version published in the Consul registration"
    )

    @field_validator("mongo_url")
    @classmethod
    def _mongo_url(cls, url: str) -> str:
        return mongo_url(url)

    @field_validator("mongo_db")
    @classmethod
    def _database_name(cls, name: str) -> str:
        # What MongoDB takes: the client raised InvalidName at start, a traceback.
        bad = sorted({c for c in name if c in _DB_NAME_FORBIDDEN})
        if not name or bad or len(name.encode()) > DB_NAME_MAX:
            shown = ", ".join(repr(c) for c in bad)
            raise ValueError(
                f"MONGO_DB={name!r} is not a MongoDB database name: 1-{DB_NAME_MAX} bytes, "
                f"none of {_DB_NAME_FORBIDDEN!r}" + (f" (it has {shown})" if bad else "")
            )
        return name

    @field_validator("worker_host")
    @classmethod
    def _bind_address(cls, host: str) -> str:
        return _unbracketed("WORKER_HOST", host)

    @field_validator("worker_advertise_host")
    @classmethod
    def _reachable_address(cls, host: str | None) -> str | None:
        if not host:
            return host  # unset: WORKER_HOST, else the host name
        if is_wildcard(host):
            raise ValueError(
                f"WORKER_ADVERTISE_HOST={host!r} is a wildcard address, which no gateway "
                "can reach: set the worker's IP or host name, or leave it unset (then "
                "WORKER_HOST, or the host name when WORKER_HOST is a wildcard)"
            )
        return _unbracketed("WORKER_ADVERTISE_HOST", host)

    @model_validator(mode="after")
    def _writes_can_be_acknowledged(self) -> Self:
        if self.topic_replication and self.topic_min_insync > self.topic_replication:
            raise ValueError(
                f"TOPIC_MIN_INSYNC={self.topic_min_insync} is more than "
                f"TOPIC_REPLICATION={self.topic_replication}: Kafka would refuse every "
                "acks=all write to the topics it creates (NotEnoughReplicas)"
            )
        return self

    @model_validator(mode="after")
    def _no_default_secret_outside_local(self) -> Self:
        token = self.entrypoint_token.get_secret_value()
        if self.dialogue_env != "local":
            problem = secret_problem("ENTRYPOINT_TOKEN", token)
            if problem:
                raise ValueError(
                    f"{problem}: refusing DIALOGUE_ENV={self.dialogue_env!r} (the default "
                    "token is for local runs only; use the gateway's own ENTRYPOINT_TOKEN)"
                )
        if not token:
            raise ValueError("ENTRYPOINT_TOKEN must not be empty")
        if problem := header_token_problem("ENTRYPOINT_TOKEN", token):
            raise ValueError(problem)
        # Any development secret is public, not just its own, and a weak one is as weak
        # beyond loopback as in production.
        if problem := secret_problem("ENTRYPOINT_TOKEN", token):
            refuse_public_bind("WORKER_HOST", self.worker_host, problem)
        return self

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"

    @property
    def advertise_host(self) -> str:
        """WORKER_ADVERTISE_HOST, else WORKER_HOST, else (wildcard bind) the host name."""
        if self.worker_advertise_host:
            return self.worker_advertise_host
        if is_wildcard(self.worker_host):  # any spelling: "0.0.0.0", "0", "::0"
            return socket.gethostname()
        return self.worker_host
