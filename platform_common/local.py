"""Defaults only local mode (DIALOGUE_ENV=local) may use; both services refuse them otherwise."""

from __future__ import annotations

#: The internal token the gateway sends and the workers check (`Authorization: Entrypoint`).
LOCAL_ENTRYPOINT_TOKEN = "local-only-entrypoint-token"
