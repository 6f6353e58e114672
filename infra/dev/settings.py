"""Settings of `python -m infra.dev`, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from contracts.events import EVENTS_TOPIC
from contracts.records import TOPIC
from contracts.requests import visible_ascii
from dialogue_worker.settings import WorkerSettings
from gateway.settings import GatewaySettings
from infra.local.settings import LocalSettings, env_int, env_port
from platform_common.addresses import consul_address

DEFAULT_WORKERS = 2
#: The most workers `make dev`/`make scale` starts: each is a process of ~100 MB, and
#: more than the topic's partitions consume nothing.
MAX_WORKERS = 64
#: Partitions `make dev` creates its topics with, at most (one local broker; past it, a typo).
MAX_PARTITIONS = 1000

#: Every environment variable the gateway or a worker reads: their settings' field
#: names, which both match case-insensitively (no prefix, no aliases).
SERVICE_SETTINGS = frozenset(
    name.upper() for model in (GatewaySettings, WorkerSettings) for name in model.model_fields
)


def service_environment(inherited: Mapping[str, str], own: Mapping[str, str]) -> dict[str, str]:
    """`inherited` without any gateway or worker setting, plus make dev's `own` settings.

    An ADMIN_TOKEN, TOPIC or RATE_* exported in the caller's shell (a sourced compose
    `.env`, say) would otherwise reach the processes and override make dev's choices.
    """
    kept = {k: v for k, v in inherited.items() if k.upper() not in SERVICE_SETTINGS}
    return {**kept, **own}


def dev_consul_url(url: str) -> str:
    """DEV_CONSUL_URL, checked: http(s)://host[:port], which make dev calls itself too."""
    try:
        consul_address(url)
    except ValueError as exc:
        raise SystemExit(f"DEV_CONSUL_URL: {exc}") from None
    if "://" not in url:
        raise SystemExit("DEV_CONSUL_URL must start with http:// or https://")
    return url


def dev_consul_token(token: str | None) -> str | None:
    """DEV_CONSUL_TOKEN, checked: sent in a header, so visible ASCII (found in review: a
    non-ASCII one ended `make dev` in an encoding traceback). Never quoted."""
    if token is not None and not visible_ascii(token):
        raise SystemExit("DEV_CONSUL_TOKEN must be visible ASCII (it is sent in a header)")
    return token


def events_topic_for(topic: str) -> str:
    """The chat events topic that goes with a message topic.

    The platform's own for its own message topic, else `<topic>.events` (as the workers
    of infra.processes name theirs), so a copy with its own DEV_TOPIC has its own too.
    """
    return EVENTS_TOPIC if topic == TOPIC else f"{topic}.events"


@dataclass(frozen=True)
class DevSettings:
    """Where the gateway and the workers of `make dev` run and what they use.

    Every field has an environment variable (in brackets) and a default; the
    infrastructure itself is configured by infra.local's LOCAL_* variables.
    Overriding the ports and names runs a second copy next to the first (tests do), with
    its own processes, run folder, topics (DEV_TOPIC moves the events topic too),
    consumer group, MongoDB database and Consul ids; its gateway routes only to workers
    of its own DEV_APP_ID. Not its own: the infrastructure, hence the MySQL database of
    users (LOCAL_MYSQL_DATABASE), and the Consul agent unless DEV_CONSUL_URL says so.
    """

    local: LocalSettings  # the infrastructure (LOCAL_*)
    run_dir: Path  # [DEV_RUN_DIR] pid files, logs and state; default <LOCAL_RUN_DIR>/dev
    gateway_port: int  # [DEV_GATEWAY_PORT] the public API
    worker_base_port: int  # [DEV_WORKER_BASE_PORT] worker n listens on base + n - 1
    consul_url: str  # [DEV_CONSUL_URL] Consul agent; default the local stack's
    consul_token: str | None  # [DEV_CONSUL_TOKEN] its ACL token; none for the local stack's
    topic: str  # [DEV_TOPIC] message topic
    events_topic: str  # [DEV_EVENTS_TOPIC] chat events; default events_topic_for(topic)
    partitions: int  # [DEV_TOPIC_PARTITIONS] its partitions (the most workers that consume)
    app_id: str  # [DEV_APP_ID] faust app id = Kafka consumer group of the workers
    mongo_db: str  # [DEV_MONGO_DB] database of chats and messages
    id_prefix: str  # [DEV_ID_PREFIX] worker n registers in Consul as <prefix>-<n>
    log_level: str  # [DEV_LOG_LEVEL] LOG_LEVEL of the gateway and the workers
    ready_timeout: float  # [DEV_READY_TIMEOUT] seconds to wait for readiness

    def __post_init__(self) -> None:
        for name, port in (
            ("DEV_GATEWAY_PORT", self.gateway_port),
            ("DEV_WORKER_BASE_PORT", self.worker_base_port),
        ):
            if not 1 <= port <= 65535:
                raise SystemExit(f"{name} must be a TCP port, 1 .. 65535; got {port}")

    def worker_count_problem(self, workers: int, minimum: int = 1) -> str | None:
        """Why `make dev` cannot run `workers` workers here, or None."""
        if not minimum <= workers <= MAX_WORKERS:
            return f"the worker count must be {minimum} .. {MAX_WORKERS}; got {workers}"
        return self.worker_port_problem(workers)

    def worker_port_problem(self, index: int) -> str | None:
        """Why worker `index` cannot listen here (its port past 65535), or None."""
        port = self.worker_port(index)
        if port > 65535:
            return f"worker {index} would listen on port {port}: lower DEV_WORKER_BASE_PORT"
        return None

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> DevSettings:
        e = dict(os.environ if env is None else env)
        local = LocalSettings.from_env(e)
        topic = e.get("DEV_TOPIC") or TOPIC
        return cls(
            local=local,
            run_dir=Path(e.get("DEV_RUN_DIR") or local.run_dir / "dev").resolve(),
            gateway_port=env_port(e, "DEV_GATEWAY_PORT", 8007),
            worker_base_port=env_port(e, "DEV_WORKER_BASE_PORT", 8100),
            consul_url=dev_consul_url((e.get("DEV_CONSUL_URL") or local.consul_url).rstrip("/")),
            consul_token=dev_consul_token(e.get("DEV_CONSUL_TOKEN") or None),
            topic=topic,
            events_topic=e.get("DEV_EVENTS_TOPIC") or events_topic_for(topic),
            partitions=env_int(e, "DEV_TOPIC_PARTITIONS", 12, 1, MAX_PARTITIONS),
            app_id=e.get("DEV_APP_ID") or "dialogue-worker",
            mongo_db=e.get("DEV_MONGO_DB") or "dialogue",
            id_prefix=e.get("DEV_ID_PREFIX") or "dev-worker",
            log_level=e.get("DEV_LOG_LEVEL") or "INFO",
            ready_timeout=float(env_int(e, "DEV_READY_TIMEOUT", 120, 1, 86_400)),
        )

    @property
    def host(self) -> str:
        return self.local.host

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    def worker_port(self, index: int) -> int:
        return self.worker_base_port + index - 1

    def service_id(self, index: int) -> str:
        return f"{self.id_prefix}-{index}"

    def gateway_env(self) -> dict[str, str]:
        """The gateway's settings (gateway/settings.py), local mode: built-in dev secrets."""
        s = self.local
        return {
            "DIALOGUE_ENV": "local",
            "LOG_LEVEL": self.log_level,
            "GATEWAY_HOST": self.host,
            "GATEWAY_PORT": str(self.gateway_port),
            "MYSQL_HOST": s.host,
            "MYSQL_PORT": str(s.mysql_port),
            "MYSQL_USER": s.mysql_user,
            "MYSQL_PASSWORD": s.mysql_password,
            "MYSQL_DATABASE": s.mysql_database,
            "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "TOPIC": self.topic,
            "EVENTS_TOPIC": self.events_topic,
            "CONSUL_URL": self.consul_url,
            "WORKER_SERVICE": "dialogue",
            "WORKER_APP_ID": self.app_id,
        } | self._consul_token_env()

    def worker_env(self, index: int) -> dict[str, str]:
        """Worker n's settings (dialogue_worker/settings.py): own port, id and scratch dir."""
        s = self.local
        return {
            "DIALOGUE_ENV": "local",
            "LOG_LEVEL": self.log_level,
            "KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "MONGO_URL": s.mongo_url,
            "MONGO_DB": self.mongo_db,
            "CONSUL_URL": self.consul_url,
            "WORKER_SERVICE": "dialogue",
            "WORKER_APP_ID": self.app_id,
            "WORKER_HOST": self.host,
            "WORKER_PORT": str(self.worker_port(index)),
            "SERVICE_ID": self.service_id(index),
            "TOPIC": self.topic,
            "EVENTS_TOPIC": self.events_topic,
            "TOPIC_PARTITIONS": str(self.partitions),
            "DATA_DIR": str(self.run_dir / f"worker-{index}.data"),
        } | self._consul_token_env()

    def _consul_token_env(self) -> dict[str, str]:
        return {} if self.consul_token is None else {"CONSUL_TOKEN": self.consul_token}
