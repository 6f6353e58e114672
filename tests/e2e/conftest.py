"""Fixtures of the end-to-end modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.local import LocalSettings
from infra.processes.private import private_consul


@pytest.fixture(scope="module")
def consul_url(infra: LocalSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private Consul agent per module: the workers register as service "dialogue", and
    other sessions' workers on the shared agent would never answer this module's reads."""
    with private_consul(tmp_path_factory.mktemp("consul"), infra.cache_dir) as stack:
        yield stack.settings.consul_url
