"""The thin adapter over py-consul's asyncio client: opening it and reading its answers."""

from __future__ import annotations

import logging
import reprlib
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

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

#: How `brief` shortens: strings and scalars to 120 characters, containers to a few items.
_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 120


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


class UnreadableAnswer(ValueError):
    """Consul's answer does not have the shape of the endpoint's answer (no I/O failed)."""


def health_entries(answer: object) -> list[dict[str, Any]]:
    """`answer` when it has the shape of a /v1/health/service answer: a list of objects.

    Anything else raises UnreadableAnswer: None (py-consul reads any 404 so, with or
    without an index header), an object, a number, a list holding something other than
    objects. Such an answer is not about the service's instances at all (another API,
    a proxy's page, a truncated body), so it says nothing about which are serving: the
    watch keeps its last set, as it does while Consul is unreachable.
    """
    if isinstance(answer, list) and all(isinstance(entry, dict) for entry in answer):
        return answer
    raise UnreadableAnswer(f"answered {brief(answer)}, not a list of health entries")


def instances_from_health(nodes: Iterable[Mapping[str, Any]]) -> tuple[Instance, ...]:
    """Instances from the entries of a /v1/health/service answer, sorted by id.

    An entry that does not read as an instance is skipped with a warning. **Decision**:
    skip the entry, not refuse the whole answer. An entry without a usable address
    and port cannot take a request anyway, while refusing the answer would let one odd
    registration freeze the set of every other instance (crashed ones kept, new ones
    never seen) for as long as it stays registered. The answer's own shape is checked
    first (`health_entries`); one that is not a list of entries is refused whole.
    """
    found: dict[str, Instance] = {}
    for node in nodes:
        try:
            instance = _instance(node)
        except ValueError as exc:
            log.warning("skipping malformed health entry from consul: %s (%s)", brief(node), exc)
            continue
        found[instance.id] = instance
    return tuple(found[i] for i in sorted(found))


def brief(value: object) -> str:
    """A repr of (part of) an answer for a log line, short however large or deep it is."""
    return _BRIEF.repr(value)


def _instance(node: Mapping[str, Any]) -> Instance:
    """The instance one entry registers; ValueError says what does not read.

    Each field must have the type Consul writes (a port of 8100.0 or "8100" is
    refused, not converted): Consul never writes another, so whatever does is not a
    registration to route requests to.
    """
    service = node.get("Service")
    if not isinstance(service, dict):
        raise ValueError("no Service object")
    node_info = node.get("Node")
    address = service.get("Address") or (
        node_info.get("Address") if isinstance(node_info, dict) else None
    )
    port = service.get("Port")
    meta = {} if service.get("Meta") is None else service["Meta"]
    tags = [] if service.get("Tags") is None else service["Tags"]
    if not _text(service.get("ID")):
        raise ValueError("ID is not a non-empty string")
    if not _text(address):
        raise ValueError("no address: Service.Address and Node.Address are not strings")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError("Port is not an integer within 1-65535")
    if not isinstance(meta, dict) or not all(isinstance(s, str) for s in (*meta, *meta.values())):
        raise ValueError("Meta is not an object of strings")
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise ValueError("Tags is not a list of strings")
    return Instance(id=service["ID"], address=address, port=port, meta=dict(meta), tags=tuple(tags))


def _text(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and bool(value)
