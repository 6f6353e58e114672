"""`python -m gateway`: read the settings, refuse bad ones clearly, serve until stopped."""

from __future__ import annotations

import sys

from aiohttp import web
from pydantic import ValidationError

from gateway.app import create_app
from gateway.logs import AccessLogger, configure
from gateway.settings import GatewaySettings


def main() -> None:
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        sys.exit("gateway: invalid configuration\n" + "\n".join(lines))
    configure(settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.gateway_host,
        port=settings.gateway_port,
        access_log_class=AccessLogger,
        print=None,
    )


if __name__ == "__main__":
    main()
