"""infra/local's PostgreSQL pieces that need no server: names, settings, command lines."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.local import LocalSettings, Stack
from infra.local import postgres as pg
from infra.local import settings as local_settings
from infra.local.ferretdb import FerretDB
from infra.local.postgres import Postgres, conninfo, gin_twin_name, hba_conf, sql_literal
from infra.local.service import Progress, ServiceError
from infra.local.settings import searchable


def _settings(**env: str) -> LocalSettings:
    return LocalSettings.from_env({"LOCAL_RUN_DIR": "/tmp/run-x", **env})


def test_a_twin_is_named_after_its_original_and_its_field() -> None:
    name = gin_twin_name("pages_1a2b3c4d_page_1_12156ece_idx", "page")
    assert name == "pages_1a2b3c4d_page_1_12156ece_idx_71860c77_gin"  # md5("page")[:8]
    assert gin_twin_name("i", "cid") != gin_twin_name("i", "seq")  # one per key of a compound


@pytest.mark.parametrize("original", ["x" * 63, "é" * 40, "x" * 49 + "ü" * 5, "ab" + "日本語" * 20])
def test_a_twin_name_fits_63_bytes_and_never_splits_a_character(original: str) -> None:
    name = gin_twin_name(original, "field")
    assert len(name.encode()) <= 63
    prefix = name.removesuffix(f"_{name.split('_')[-2]}_gin")
    assert original.startswith(prefix)
    assert len(prefix.encode()) > 50 - 4  # cut only as far as a whole character needs


def test_postgres_settings_have_defaults_and_can_point_elsewhere() -> None:
    s = _settings()
    assert (s.postgres_port, s.postgres_password, s.ferretdb_database) == (
        5433,
        "ferretdb-local",
        "ferretdb",
    )
    assert s.postgres_run_dir == Path("/tmp/run-x")
    assert s.postgres_socket_dir == Path("/tmp/run-x/postgres")
    assert s.ferretdb_postgres_url == (
        "postgres://ferretdb@127.0.0.1:5433/ferretdb?sslmode=disable"
    )
    other = _settings(
        LOCAL_POSTGRES_PORT="6000",
        LOCAL_POSTGRES_RUN_DIR="/tmp/shared",
        LOCAL_FERRETDB_DATABASE="ferretdb_abc",
    )
    assert other.postgres_socket_dir == Path("/tmp/shared/postgres")
    assert other.ferretdb_postgres_url.endswith(":6000/ferretdb_abc?sslmode=disable")


@pytest.mark.parametrize("name", ["Ferret", "drop table", "postgres", "template1", "x" * 64])
def test_a_database_name_that_would_need_quoting_or_is_reserved_is_refused(name: str) -> None:
    with pytest.raises(SystemExit, match="LOCAL_FERRETDB_DATABASE"):
        _settings(LOCAL_FERRETDB_DATABASE=name)


def test_ferretdb_requires_postgres_and_starts_after_it() -> None:
    stack = Stack(_settings())
    assert stack.with_requirements(["ferretdb"]) == ["postgres", "ferretdb"]
    assert stack.with_requirements(["kafka"]) == ["kafka"]
    order = list(stack.services)
    assert order.index("postgres") < order.index("ferretdb")


def test_ferretdb_runs_on_postgresql_and_keeps_the_password_off_its_command_line() -> None:
    s = _settings(LOCAL_POSTGRES_PASSWORD="s3cret")
    ferret = FerretDB(s)
    argv = " ".join(ferret.argv())
    assert "--handler=postgresql" in argv and "sqlite" not in argv
    assert f"--postgresql-url={s.ferretdb_postgres_url}" in argv
    assert "--telemetry=disable" in argv and "--debug-addr=-" in argv and "--state-dir=" in argv
    assert "s3cret" not in argv
    assert ferret.env()["PGPASSWORD"] == "s3cret"


def test_postgres_is_durable_small_and_loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "bin_dir", lambda major=None: Path("/usr/lib/postgresql/15/bin"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    service = Postgres(_settings(LOCAL_POSTGRES_PORT="6543"))
    argv = service.argv()
    assert argv[:3] == ["/usr/lib/postgresql/15/bin/postgres", "-D", "/tmp/run-x/postgres/data"]
    options = dict(a.split("=", 1) for a in argv[3:] if a != "-c")
    assert options["fsync"] == options["synchronous_commit"] == options["full_page_writes"] == "on"
    assert options["shared_buffers"] == "128MB" and options["max_connections"] == "200"
    assert options["listen_addresses"] == "127.0.0.1" and options["port"] == "6543"
    assert options["unix_socket_directories"] == "/tmp/run-x/postgres"
    assert options["plan_cache_mode"] == "auto"  # a generic plan cannot use the GIN twins
    assert service.stop_signal == signal.SIGINT  # fast shutdown, pooled clients or not


def test_as_root_initdb_and_the_server_run_as_the_postgres_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg, "bin_dir", lambda major=None: Path("/usr/lib/postgresql/15/bin"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        pg,
        "_server_user",
        lambda: pg._OsUser("postgres", 101, 104),
    )
    argv = Postgres(_settings()).argv()
    assert argv[:4] == ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    assert argv[4].endswith("/bin/postgres")


def test_only_the_socket_reaches_the_superuser() -> None:
    rules = [line.split() for line in hba_conf().splitlines() if not line.startswith("#")]
    assert ["local", "all", "postgres", "peer", "map=superuser"] in rules
    assert all(rule[2] == "ferretdb" for rule in rules if rule[0] == "host")
    assert not any("trust" in rule for rule in rules)


def test_values_are_quoted_for_sql_and_libpq() -> None:
    assert sql_literal("it's") == "'it''s'"
    assert conninfo(host="/tmp/a b", password="x'y\\z") == "host='/tmp/a b' password='x\\'y\\\\z'"
    with pytest.raises(ValueError):
        sql_literal("a\0b")


def test_a_missing_postgresql_is_installed_with_apt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    installed: list[str] = []
    found = iter([None, Path("/usr/lib/postgresql/15/bin")])
    monkeypatch.setattr(pg, "bin_dir", lambda major=None: next(found))
    monkeypatch.setattr(
        pg, "apt_install", lambda service, package, progress: installed.append(package)
    )

    class Quiet(Progress):
        def step(self, service: str, message: str) -> None:
            pass

    Postgres(_settings()).provision(Quiet())
    assert installed == ["postgresql"]


# --- as root, PostgreSQL's folder must be within the postgres user's reach ------------


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Root, with a `postgres` OS user (uid/gid 54321) and /var/tmp in a folder of our own.

    Yields a folder every user can pass through (pytest's own are mode 700)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(
        pwd,
        "getpwnam",
        lambda name: pwd.struct_passwd((name, "x", 54321, 54321, "", "/", "/bin/sh")),
    )
    monkeypatch.setattr(os, "getgrouplist", lambda name, gid: [gid])
    open_dir = Path(tempfile.mkdtemp(prefix="pg-reach-"))
    open_dir.chmod(0o755)
    monkeypatch.setattr(local_settings, "SHARED_TMP", open_dir / "var-tmp")
    yield open_dir
    shutil.rmtree(open_dir)


def test_as_root_a_run_folder_the_postgres_user_cannot_reach_moves_postgresql(
    as_root: Path,
) -> None:
    home = as_root / "root"
    run = home / "clone" / ".run"
    run.mkdir(parents=True)
    home.chmod(0o700)
    s = _settings(LOCAL_RUN_DIR=str(run))
    digest = hashlib.sha1(str(run).encode()).hexdigest()[:8]
    assert s.postgres_run_dir == as_root / "var-tmp" / f"dialogue-platform-{digest}"
    assert s.postgres_socket_dir == s.postgres_run_dir / "postgres"
    assert s.run_dir == run  # everything else stays in the clone
    assert _settings(LOCAL_RUN_DIR=str(run), LOCAL_POSTGRES_RUN_DIR="/srv/pg").postgres_run_dir == (
        Path("/srv/pg")
    )
    home.chmod(0o755)
    assert _settings(LOCAL_RUN_DIR=str(run)).postgres_run_dir == run


def test_a_cluster_already_moved_stays_where_it_is(as_root: Path) -> None:
    run = as_root / "clone" / ".run"
    run.mkdir(parents=True)
    fallback = local_settings.postgres_fallback_dir(run)
    (fallback / "postgres").mkdir(parents=True)
    assert _settings(LOCAL_RUN_DIR=str(run)).postgres_run_dir == fallback


def test_not_root_postgresql_stays_in_the_run_folder(
    as_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    run = as_root / "home" / ".run"
    run.mkdir(parents=True)
    (as_root / "home").chmod(0o700)
    assert _settings(LOCAL_RUN_DIR=str(run)).postgres_run_dir == run


@pytest.mark.parametrize("spoiled", ["group-writable", "a link"])
def test_a_moved_folder_someone_else_could_have_made_is_refused(
    as_root: Path, spoiled: str
) -> None:
    home = as_root / "root"
    run = home / ".run"
    run.mkdir(parents=True)
    home.chmod(0o700)
    service = Postgres(_settings(LOCAL_RUN_DIR=str(run)))
    service.make_run_dir()  # made here: ours, mode 755
    assert service.run_dir.stat().st_mode & 0o777 == 0o755
    service.run_dir.rmdir()
    if spoiled == "a link":
        service.run_dir.parent.mkdir(parents=True, exist_ok=True)
        service.run_dir.symlink_to(as_root)
    else:
        service.run_dir.mkdir(parents=True)
        service.run_dir.chmod(0o777)
    with pytest.raises(ServiceError, match="is not a folder that only"):
        service.make_run_dir()


def test_a_path_is_searchable_only_through_folders_the_user_may_pass(tmp_path: Path) -> None:
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "a").chmod(0o750)
    owner = (tmp_path / "a").stat()
    assert searchable(inner, owner.st_uid, set())  # every folder up there is root's
    assert not searchable(inner, 54321, {54321})
    assert searchable(inner / "not-yet" / "made", owner.st_uid, set())


@pytest.mark.parametrize(("umask", "reachable"), [(0o022, True), (0o027, False), (0o077, False)])
def test_a_folder_not_made_yet_is_searchable_as_the_umask_will_make_it(
    umask: int, reachable: bool
) -> None:
    """Found in review: a missing run folder counted as reachable for the postgres user,
    "made later with the usual umask"; under umask 027 or 077 root made it 750 or 700,
    and `infra-up` stopped. The folder is now judged by the mode it will get."""
    previous = os.umask(umask)
    try:
        missing = Path("/dialogue-platform-no-such-folder") / "run"  # below "/" only
        assert searchable(missing, 54321, {54321}) is reachable
        assert searchable(missing, os.geteuid(), set())  # its own maker passes
    finally:
        os.umask(previous)


def test_before_postgresql_is_installed_the_choice_is_made_for_a_system_user(
    as_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a fresh machine the `postgres` user comes with the package, installed after
    this choice: it used to keep the unreachable run folder, and the first start failed."""

    def no_user(name: str) -> pwd.struct_passwd:
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", no_user)
    home = as_root / "root"
    run = home / "clone" / ".run"
    run.mkdir(parents=True)
    home.chmod(0o700)
    assert _settings(LOCAL_RUN_DIR=str(run)).postgres_run_dir == (
        local_settings.postgres_fallback_dir(run)
    )
    home.chmod(0o755)
    assert _settings(LOCAL_RUN_DIR=str(run)).postgres_run_dir == run


def test_the_moved_folder_is_reachable_whatever_the_umask(as_root: Path) -> None:
    home = as_root / "root"
    run = home / ".run"
    run.mkdir(parents=True)
    home.chmod(0o700)
    service = Postgres(_settings(LOCAL_RUN_DIR=str(run)))
    old = os.umask(0o027)
    try:
        service.make_run_dir()
    finally:
        os.umask(old)
    assert service.run_dir.stat().st_mode & 0o777 == 0o755
