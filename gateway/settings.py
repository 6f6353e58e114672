"""The gateway's one settings object, read once from the environment at start-up."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict
from yarl import URL

from contracts.live import HELLO_WITHIN
from gateway.domain.addresses import IPNetwork
from gateway.domain.rate_limit import Rate
from gateway.domain.tokens import SESSION_MAX_AGE
from platform_common.addresses import ConsulToken, ConsulUrl, HostName, KafkaBootstrap
from platform_common.local import (
    LOCAL_ADMIN_TOKEN,
    LOCAL_ENTRYPOINT_TOKEN,
    LOCAL_JWT_SECRET,
    header_token_problem,
    refuse_public_bind,
    secret_problem,
)
from platform_common.logs import LogLevel
from platform_common.settings_base import BoundedSettings

LOCAL_MYSQL_PASSWORD = "dialogue-local"
#: argon2's largest time and memory cost (2**32 - 1) and number of lanes (2**24 - 1).
ARGON2_MAX_COST, ARGON2_MAX_LANES = 2**32 - 1, 2**24 - 1


def mysql_password_problem(password: SecretStr | None) -> str | None:
    """Why MYSQL_PASSWORD cannot be used outside local mode, or None."""
    given = password.get_secret_value() if password else ""
    if not given.strip():
        return "MYSQL_PASSWORD is not set (or only white space)"
    if given == LOCAL_MYSQL_PASSWORD:
        return "MYSQL_PASSWORD is the local development default"
    return None


#: Refreshes per user per JWT_TTL when RATE_REFRESHES_PER_USER is unset: a client renews a
#: token about once per lifetime (the web client at 80 % of it), so this leaves room for
#: a few dozen tabs and devices, and refuses a client that refreshes in a loop.
REFRESHES_PER_TOKEN = 30


class SettingsError(ValueError):
    """The environment does not describe a gateway that may start."""


def _rate(value: Any) -> Any:
    return Rate.parse(value) if isinstance(value, str) else value


def _networks(value: Any) -> Any:
    if isinstance(value, str):
        return [ipaddress.ip_network(part.strip()) for part in value.split(",") if part.strip()]
    return value


def _origins(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _origin(value: str) -> str:
    """An origin as a browser sends it (scheme://host[:port], the default port left out),
    or "null"."""
    if value == "null":
        return value
    url = URL(value)
    if (
        url.scheme not in ("http", "https")
        or not url.host
        or url.user is not None
        or url.path not in ("", "/")
        or url.query_string
        or url.fragment
    ):
        raise ValueError(f"not an origin (scheme://host[:port]): {value[:80]!r}")
    return str(url.origin())


#: Comma-separated origins in the environment ("https://chat.example, http://localhost:3000").
Origins = Annotated[
    list[Annotated[str, AfterValidator(_origin)]], NoDecode, BeforeValidator(_origins)
]


#: "N/SECONDS" in the environment (N requests per SECONDS, bursts of N), or "off".
RateSetting = Annotated[Rate, NoDecode, BeforeValidator(_rate)]
#: Comma-separated addresses or networks in the environment ("10.0.0.0/8, ::1").
Networks = Annotated[list[IPNetwork], NoDecode, BeforeValidator(_networks)]


def _limit(default: str, what: str) -> Any:
    return Field(default=Rate.parse(default), description=f"token bucket of {what}")


class GatewaySettings(BoundedSettings):
    """Every field is read from the environment variable of the same name, upper-cased."""

    model_config = SettingsConfigDict(
        case_sensitive=False, extra="ignore", frozen=True, allow_inf_nan=False
    )

    gateway_host: str = Field(default="127.0.0.1", description="address the HTTP server binds to")
    gateway_port: int = Field(default=8007, ge=0, le=65535, description="HTTP port")
    dialogue_env: Literal["local", "production"] = Field(
        default="production", description="local allows the built-in development secrets"
    )
    log_level: LogLevel = Field(default="INFO", description="root log level (any case)")

    jwt_secret: SecretStr | None = Field(default=None, description="HS256 key, >= 32 bytes")
    jwt_issuer: str = Field(default="dialogue-gateway", description="iss claim issued and required")
    jwt_ttl: int = Field(default=3600, ge=60, description="token lifetime in seconds")
    session_max_age: int = Field(
        default=SESSION_MAX_AGE,
        ge=60,
        description="seconds from sign-in to the end of a session: refreshes are refused "
        "from then on and none of its tokens lasts longer; at least JWT_TTL",
    )

    mysql_host: HostName = Field(default="127.0.0.1", description="MySQL/MariaDB host")
    mysql_port: int = Field(default=3306, ge=1, le=65535, description="MySQL/MariaDB port")
    mysql_user: str = Field(default="dialogue", description="MySQL user")
    mysql_password: SecretStr | None = Field(default=None, description="MySQL password")
    mysql_database: str = Field(default="dialogue", description="database holding `users`")
    mysql_pool_size: int = Field(default=10, ge=1, description="maximum pooled connections")
    mysql_timeout: float = Field(default=3.0, gt=0, description="seconds for one user-store call")
    mysql_connect_wait: float = Field(
        default=30.0, ge=0, description="seconds start-up keeps retrying MySQL before giving up"
    )

    kafka_bootstrap: KafkaBootstrap = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers, host:port,..."
    )
    topic: str = Field(default="dialogue.messages", description="topic message records go to")
    events_topic: str = Field(
        default="dialogue.events", description="topic the live stream reads chat events from"
    )
    kafka_send_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds a POST waits for the Kafka ack before answering 5031",
    )

    consul_url: ConsulUrl = Field(default="http://127.0.0.1:8500", description="Consul HTTP API")
    consul_token: ConsulToken = Field(
        default=None,
        description="Consul ACL token (service:read on WORKER_SERVICE); unset: no token sent",
    )
    worker_service: str = Field(
        default="dialogue", description="Consul service name of the workers"
    )
    worker_app_id: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "the workers' WORKER_APP_ID: an instance registered with another `app_id` meta "
            "is never sent the internal token; unset: any non-empty `app_id`"
        ),
    )
    entrypoint_token: SecretStr | None = Field(
        default=None,
        description="internal token sent to workers as `Authorization: Entrypoint ...`",
    )
    upstream_attempts: int = Field(default=3, ge=1, description="worker instances tried per read")
    upstream_deadline: float = Field(
        default=5.0, gt=0, description="seconds for a whole worker call"
    )
    upstream_request_timeout: float = Field(
        default=2.0, gt=0, description="seconds per worker attempt"
    )
    upstream_cooldown: float = Field(
        default=5.0, gt=0, le=60, description="seconds a failed worker is ejected"
    )
    upstream_faults_to_eject: int = Field(
        default=5,
        ge=1,
        description="5000 answers (its handler failed) in a row that eject a worker",
    )

    admin_token: SecretStr | None = Field(
        default=None,
        description="bearer token for /v1/admin/*; unset outside local mode disables it",
    )
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="largest accepted request body"
    )
    membership_cache_ttl: float = Field(
        default=5.0,
        ge=0,
        description="seconds a confirmed chat membership is reused by POST messages",
    )
    idempotency_ttl: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="seconds an Idempotency-Key is remembered (per process)",
    )
    idempotency_max_keys: int = Field(
        default=100_000, ge=1, description="keys kept before evicting"
    )
    signin_max_failures: int = Field(
        default=5, ge=1, description="failed sign-ins before a lockout"
    )
    signin_window: float = Field(
        default=300.0, gt=0, description="seconds failures are counted over"
    )
    signin_lockout: float = Field(
        default=60.0, gt=0, description="seconds a username (or address) is locked out"
    )
    signin_address_max_failures: int = Field(
        default=30,
        ge=0,
        description="failed sign-ins from one client address within SIGNIN_WINDOW before "
        "that address is locked out for SIGNIN_LOCKOUT; 0: no address limit",
    )
    signin_global_max_failures: int = Field(
        default=1000,
        ge=0,
        description="failed sign-ins of this process within SIGNIN_WINDOW after which every "
        "sign-in waits until the oldest failure leaves the window; 0: no budget",
    )
    rate_sign_up_per_address: RateSetting = _limit("10/60", "sign-ups per client address")
    rate_sign_in_per_address: RateSetting = _limit("30/60", "sign-ins per client address")
    rate_sign_in_per_user: RateSetting = _limit("10/60", "sign-ins per username and client address")
    rate_refreshes_per_user: RateSetting | None = Field(
        default=None,
        description="token bucket of token refreshes per user; unset, 30 per JWT_TTL",
    )
    rate_chats_per_address: RateSetting = _limit("120/60", "chat creations per client address")
    rate_chats_per_user: RateSetting = _limit("30/60", "chat creations per user")
    rate_messages_per_address: RateSetting = _limit("300/10", "message posts per client address")
    rate_messages_per_user: RateSetting = _limit("60/10", "message posts per user")
    rate_streams_per_address: RateSetting = _limit("60/60", "stream (WebSocket) opens per address")
    rate_user_lookups_per_user: RateSetting = _limit("60/60", "GET /v1/users look-ups per user")
    rate_members_per_address: RateSetting = _limit(
        "120/60", "PUT /v1/chats/{cid} (members added) per client address"
    )
    rate_members_per_user: RateSetting = _limit("30/60", "PUT /v1/chats/{cid} per user")
    rate_reads_per_address: RateSetting = _limit("600/10", "read-marker moves per client address")
    rate_reads_per_user: RateSetting = _limit("120/10", "read-marker moves per user")
    rate_limit_max_keys: int = Field(
        default=100_000, ge=1, description="buckets kept per limit (least recently used go)"
    )
    stream_origins: Origins = Field(
        default_factory=list,
        description="web pages of other origins allowed to open streams (comma-separated "
        "scheme://host[:port]); the gateway's own origin (the Host it is asked by) always is",
    )
    trusted_proxies: Networks = Field(
        default_factory=list,
        description="proxies whose X-Forwarded-For is believed (comma-separated networks); "
        "empty: the client address is the TCP peer",
    )
    header_timeout: float = Field(
        default=10.0,
        gt=0,
        description="seconds a connection may take to deliver a complete request head "
        "(from opening, or after the previous answer); also the idle keep-alive time",
    )
    body_timeout: float = Field(
        default=10.0, gt=0, description="seconds a request body may take to arrive (else 4080)"
    )
    max_connections: int = Field(
        default=10_000,
        ge=1,
        description="open client connections, stream sockets included; more are closed at once",
    )
    max_connections_per_address: int = Field(
        default=1_000,
        ge=1,
        description="open connections one client address (an IPv6 /64) may hold; trusted "
        "proxies and loopback are held to MAX_CONNECTIONS only",
    )
    stream_hello_timeout: float = Field(
        default=HELLO_WITHIN, gt=0, description="seconds a new stream has to send its hello"
    )
    stream_heartbeat: float = Field(
        default=25.0, gt=0, description="seconds between pings on a stream; no pong: dropped"
    )
    stream_send_timeout: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="seconds a stream's client has to take one frame; else it is cut off",
    )
    stream_queue_frames: int = Field(
        default=1000, ge=1, description="frames a stream may hold unsent before it is too slow"
    )
    stream_queue_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="bytes a stream may hold unsent, likewise"
    )
    stream_send_buffer: int = Field(
        default=64 * 1024,
        ge=0,
        description="kernel send buffer of a stream socket (SO_SNDBUF), bytes; 0: the OS's",
    )
    stream_catch_ups: int = Field(
        default=32, ge=1, description="streams that may list chats and catch up at once"
    )
    stream_max_per_user: int = Field(
        default=16, ge=1, description="streams one user may hold open on this gateway"
    )
    stream_max_per_address: int = Field(
        default=1000, ge=1, description="streams one client address may hold open here"
    )
    idempotency_max_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=2048,  # one entry of the longest key and its user's table: 1,375 bytes
        description="memory the Idempotency-Key entries may take, estimated in bytes",
    )
    idempotency_keys_per_user: int = Field(
        default=1000, ge=1, description="Idempotency-Keys remembered per user"
    )
    # argon2's own bounds (argon2.h): outside them every hash fails, so every sign-up and
    # every sign-in of an unknown name (which hashes a decoy) would answer 5000.
    argon2_time_cost: int = Field(
        default=3, ge=1, le=ARGON2_MAX_COST, description="argon2id iterations"
    )
    argon2_memory_kib: int = Field(
        default=65536,
        ge=8,
        le=ARGON2_MAX_COST,
        description="argon2id memory in KiB, at least 8 per lane",
    )
    argon2_parallelism: int = Field(
        default=4, ge=1, le=ARGON2_MAX_LANES, description="argon2id lanes"
    )

    @property
    def local(self) -> bool:
        return self.dialogue_env == "local"

    @model_validator(mode="after")
    def _session(self) -> GatewaySettings:
        if self.session_max_age < self.jwt_ttl:
            raise SettingsError(
                f"SESSION_MAX_AGE={self.session_max_age} is shorter than "
                f"JWT_TTL={self.jwt_ttl}: a session must last at least one token"
            )
        return self

    @model_validator(mode="after")
    def _idempotency_outlives_a_send(self) -> GatewaySettings:
        # A send still waiting for Kafka outlived its own entry: a retry queued behind it
        # found none after a 5031, and made a second message (found in review).
        if self.idempotency_ttl < self.kafka_send_timeout:
            raise SettingsError(
                f"IDEMPOTENCY_TTL={self.idempotency_ttl:g} is shorter than "
                f"KAFKA_SEND_TIMEOUT={self.kafka_send_timeout:g}: a key must outlive a send"
            )
        return self

    @property
    def refresh_rate(self) -> Rate:
        """RATE_REFRESHES_PER_USER, or 30 refreshes per JWT_TTL when it is unset."""
        given = self.rate_refreshes_per_user
        return Rate(REFRESHES_PER_TOKEN, float(self.jwt_ttl)) if given is None else given

    @model_validator(mode="after")
    def _refreshes(self) -> GatewaySettings:
        rate = self.refresh_rate
        # A client renews each token before it expires: a bucket that refills less than
        # one refresh per token lifetime runs dry for a single client, and its session ends.
        if not rate.unlimited and rate.period / rate.capacity > self.jwt_ttl:
            raise SettingsError(
                f"RATE_REFRESHES_PER_USER={rate} gives back one refresh every "
                f"{rate.period / rate.capacity:g} s, less often than a token of "
                f"JWT_TTL={self.jwt_ttl} expires: a client renewing its token would run out "
                f"and be signed out. Allow at least one per JWT_TTL (unset, it is "
                f"{REFRESHES_PER_TOKEN}/{self.jwt_ttl}), or set it to off"
            )
        return self

    @model_validator(mode="after")
    def _argon2(self) -> GatewaySettings:
        needed = 8 * self.argon2_parallelism
        if self.argon2_memory_kib < needed:
            raise SettingsError(
                f"ARGON2_MEMORY_KIB={self.argon2_memory_kib} is too small for "
                f"ARGON2_PARALLELISM={self.argon2_parallelism}: argon2 needs 8 KiB per "
                f"lane, at least {needed}"
            )
        return self

    @model_validator(mode="after")
    def _secrets(self) -> GatewaySettings:
        for name in ("entrypoint_token", "admin_token"):  # sent in headers, in any mode
            token: SecretStr | None = getattr(self, name)
            if token and (problem := header_token_problem(name.upper(), token.get_secret_value())):
                raise SettingsError(problem)
        if self.local:
            # Beyond loopback every secret must be one production would take (a 1-byte
            # signing key passed there while it was not a development default).
            for name in ("jwt_secret", "entrypoint_token", "admin_token"):
                value: SecretStr | None = getattr(self, name)
                raw = "" if value is None else value.get_secret_value()
                if problem := secret_problem(name.upper(), raw):
                    refuse_public_bind("GATEWAY_HOST", self.gateway_host, problem)
            return self
        problems = []
        # ADMIN_TOKEN is optional (unset, the admin view is off); set, it is held to the
        # same rules as the others.
        for name, required in (
            ("jwt_secret", True),
            ("entrypoint_token", True),
            ("admin_token", False),
        ):
            secret: SecretStr | None = getattr(self, name)
            raw = secret.get_secret_value() if secret else ""
            if (raw or required) and (problem := secret_problem(name.upper(), raw)):
                problems.append(problem)
        if problem := mysql_password_problem(self.mysql_password):
            problems.append(problem)
        if problems:
            raise SettingsError(
                f"refusing to start with DIALOGUE_ENV={self.dialogue_env}: "
                + "; ".join(problems)
                + " (set DIALOGUE_ENV=local only for development)"
            )
        return self

    def secret(self, name: Literal["jwt_secret", "entrypoint_token", "mysql_password"]) -> str:
        """The secret's value, or its local default (only reachable in local mode)."""
        value: SecretStr | None = getattr(self, name)
        if value is not None and value.get_secret_value():
            return value.get_secret_value()
        defaults = {
            "jwt_secret": LOCAL_JWT_SECRET,
            "entrypoint_token": LOCAL_ENTRYPOINT_TOKEN,
            "mysql_password": LOCAL_MYSQL_PASSWORD,
        }
        return defaults[name]

    def admin_secret(self) -> str | None:
        """The admin bearer token, the local default in local mode, else None (view off)."""
        if self.admin_token is not None and self.admin_token.get_secret_value():
            return self.admin_token.get_secret_value()
        return LOCAL_ADMIN_TOKEN if self.local else None
