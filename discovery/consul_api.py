"""The thin adapter over py-consul's asyncio client: opening it and reading its answers."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import consul
import consul.aio

from discovery.models import Instance
from platform_common.addresses import consul_address

log = logging.getLogger(__name__)

#: What a call to an unreachable, restarting or overloaded Consul raises (ValueError:
#: an answer that cannot be read, such as a missing or malformed index).
CONSUL_ERRORS: tuple[type[Exception], ...] = (
    consul.ConsulException,
    aiohttp.ClientError,
    TimeoutError,
    ValueError,
)


def open_consul(url: str, token: str | None = None) -> consul.aio.Consul:
    """A client for the agent at `url` ("http://127.0.0.1:8500"); needs a running loop.

    `token` is the ACL token sent with every call (X-Consul-Token); None sends none.
    """
    scheme, host, port = consul_address(url)
    if scheme == "https":
        client = consul.aio.Consul(host=host, port=port, scheme=scheme, token=token)
    else:
        # Over plain HTTP, verify=False spares py-consul building an SSL context it never
        # uses (loading the CA bundle costs ~150 ms here); it then passes aiohttp the
        # deprecated verify_ssl=False, whose warning is not ours to fix.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "verify_ssl is deprecated", DeprecationWarning)
            client = consul.aio.Consul(
                host=host, port=port, scheme=scheme, verify=False, token=token
            )
    # py-consul prefers CONSUL_HTTP_TOKEN from the environment to the token it is given
    # (an empty one sends none): the token our settings name is the one that counts.
    client.token = token
    return client


def instances_from_health(nodes: Iterable[Mapping[str, Any]]) -> tuple[Instance, ...]:
    """Instances from a /v1/health/service answer, sorted by id; malformed entries are skipped."""
    found: dict[str, Instance] = {}
    for node in nodes:
        try:
            service = node["Service"]
            address = service.get("Address") or node["Node"]["Address"]
            instance = Instance(
                id=str(service["ID"]),
                address=str(address),
                port=int(service["Port"]),
                meta={str(k): str(v) for k, v in (service.get("Meta") or {}).items()},
                tags=tuple(str(t) for t in service.get("Tags") or ()),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("skipping malformed health entry from consul: %r (%s)", node, exc)
            continue
        found[instance.id] = instance
    return tuple(found[i] for i in sorted(found))
