"""infra.local's MariaDB refuses to start beside a server it did not start on its port
(Debian's package starts one on 127.0.0.1:3306 on a machine run by systemd)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infra.local.mariadb import MariaDB
from infra.local.service import ServiceError
from infra.local.settings import LocalSettings
from tests.support.local_infra import Recorder


def _mariadb(folder: Path, port: int) -> MariaDB:
    settings = LocalSettings.from_env(
        {
            "LOCAL_RUN_DIR": str(folder / "run"),
            "LOCAL_CACHE_DIR": str(folder / "cache"),
            "LOCAL_MYSQL_PORT": str(port),
        }
    )
    return MariaDB(settings)


def test_a_server_already_on_the_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        service = _mariadb(tmp_path, port)
        with pytest.raises(ServiceError, match=f"127.0.0.1:{port}.*LOCAL_MYSQL_PORT"):
            service.prepare(Recorder())
    assert not (service.data_dir / "data").exists()  # nothing initialised


def test_a_free_port_goes_on_to_the_datadir(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # bound, not listening: nothing answers there
        service = _mariadb(tmp_path, port)
        (service.data_dir / "data" / "mysql").mkdir(parents=True)  # as if initialised
        service.prepare(Recorder())  # no error; an initialised datadir is kept
