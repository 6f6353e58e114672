"""Provision and run the platform's infrastructure as local processes (no Docker).

Kafka (KRaft, jars from Maven Central), Consul (built from its Go module),
FerretDB (MongoDB wire protocol, built from its Go module) on PostgreSQL, and MariaDB
(PostgreSQL and MariaDB from Debian packages), each bound to 127.0.0.1 with its data
and log under the run folder.
"""

from infra.local.settings import LocalSettings
from infra.local.stack import Stack

__all__ = ["LocalSettings", "Stack"]
