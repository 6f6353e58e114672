"""A stand-in for ServiceWatch in unit tests of the balanced client: a fixed set of
instances, Consul never asked."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from discovery import Instance


class StaticWatch:
    """What BalancedClient uses of a ServiceWatch, over a set that never changes."""

    ready = True

    def __init__(self, instances: Iterable[Instance], service: str = "dialogue") -> None:
        self.instances = tuple(instances)
        self.service = service

    def subscribe(self, callback: Callable[[Iterable[Instance]], None]) -> None:
        callback(self.instances)

    def unsubscribe(self, callback: Callable[[Iterable[Instance]], None]) -> None:
        pass
