"""Addresses of services that are not there, for tests of what a client does without them."""

from __future__ import annotations

#: A MongoDB that is not there: a Unix socket that does not exist. Not a refused TCP port:
#: pymongo's async connect (4.20.1, `pool_shared._async_create_connection`) closes its
#: socket on a timeout or an OSError but not on a cancellation, so a client closed while
#: its monitor was connecting left a socket unclosed. Collected in a later test, its
#: ResourceWarning failed that test under `filterwarnings = error` (CI, 2026-12-07). A
#: missing Unix socket refuses the connect at once, with no await a close could cancel.
MONGO_NOT_THERE = "mongodb://%2Fnonexistent%2Fdialogue%2Fmongodb.sock/"
