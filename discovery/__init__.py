"""Service discovery through Consul, used by both sides of the platform.

Workers register with a TTL heartbeat (`Registrar`); the gateway follows the
serving instances (no check critical) with a blocking query (`ServiceWatch`) and
sends reads to one of them, round robin with ejection and retries (`BalancedClient`).
See docs/discovery.md.
"""

from discovery.balancer import Balancer
from discovery.client import BalancedClient
from discovery.errors import (
    ConsulUnavailable,
    DiscoveryError,
    DuplicateInstance,
    NoInstanceAvailable,
    OutcomeUnknown,
    WatchNotReady,
)
from discovery.models import (
    WORKER_META_APP_ID,
    WORKER_META_STARTED,
    WORKER_TAG,
    HealthReport,
    HealthStatus,
    Instance,
    InstanceStats,
    Registration,
    UpstreamResponse,
    instance_id_for,
)
from discovery.registry import Probe, Registrar
from discovery.watch import ServiceWatch

__all__ = [
    "WORKER_META_APP_ID",
    "WORKER_META_STARTED",
    "WORKER_TAG",
    "BalancedClient",
    "Balancer",
    "ConsulUnavailable",
    "DiscoveryError",
    "DuplicateInstance",
    "HealthReport",
    "HealthStatus",
    "Instance",
    "InstanceStats",
    "NoInstanceAvailable",
    "OutcomeUnknown",
    "Probe",
    "Registrar",
    "Registration",
    "ServiceWatch",
    "UpstreamResponse",
    "WatchNotReady",
    "instance_id_for",
]
