"""`make dev`: the whole platform as local processes on 127.0.0.1, without Docker.

The local infrastructure (infra.local), then the gateway and N dialogue workers,
each with its pid file and log under .run/dev/; `scale` adds or removes workers
while the system runs, `demo` puts demo data in through the public API.
"""

from infra.dev.platform import DevError, DevPlatform
from infra.dev.settings import DevSettings

__all__ = ["DevError", "DevPlatform", "DevSettings"]
