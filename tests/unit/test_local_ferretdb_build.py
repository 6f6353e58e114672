"""How infra/local builds and runs FerretDB: the file its build replaces, its GC target.

The go commands are replaced by hand-written stand-ins (what they are asked to do is
the logic under test); `make infra-up` builds the real binary with the same code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.local import LocalSettings, ferretdb, gobuild
from infra.local.ferretdb import FerretDB
from infra.local.service import Progress, ServiceError

RESOURCE = "internal/util/resource/resource.go"


def _settings(tmp_path: Path) -> LocalSettings:
    return LocalSettings.from_env(
        {"LOCAL_RUN_DIR": str(tmp_path / "run"), "LOCAL_CACHE_DIR": str(tmp_path / "cache")}
    )


@pytest.fixture
def module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A module source with FerretDB's resource.go, which go mod download names; go build
    records what it would compile (the resource and version files) in the returned dict,
    beside the source's folder."""
    source = tmp_path / "mod"
    (source / "internal/util/resource").mkdir(parents=True)
    (source / "build/version").mkdir(parents=True)
    (source / RESOURCE).write_text("package resource // upstream\n")
    seen: dict[str, object] = {}

    def run_go(args: list[str], cwd: Path, cache_dir: Path, what: str) -> str:
        assert args[:3] == ["mod", "download", "-json"]
        return json.dumps({"Dir": str(source)})

    def go_build(build: Path, package: str, output: Path, cache_dir: Path) -> None:
        seen["resource"] = (build / RESOURCE).read_text()
        seen["version"] = (build / "build/version/version.txt").read_text()
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text("binary")

    monkeypatch.setattr(gobuild, "run_go", run_go)
    monkeypatch.setattr(gobuild, "go_build", go_build)
    seen["source"] = source
    return seen


def test_the_build_compiles_our_resource_go_in_place_of_upstreams(
    tmp_path: Path, module: dict[str, object]
) -> None:
    service = FerretDB(_settings(tmp_path))
    service._build(service.settings.ferretdb_version, progress=_Quiet())
    assert module["resource"] == ferretdb.RESOURCE_GO.read_text()
    assert "func Track(obj any, token *Token) {}" in str(module["resource"])
    assert module["version"] == f"v{service.settings.ferretdb_version}\n"
    assert service.binary.read_text() == "binary"
    # The module cache's copy is left as it was.
    source = module["source"]
    assert isinstance(source, Path)
    assert (source / RESOURCE).read_text() == "package resource // upstream\n"


def test_a_version_without_the_replaced_file_is_refused_not_built(
    tmp_path: Path, module: dict[str, object]
) -> None:
    source = module["source"]
    assert isinstance(source, Path)
    (source / RESOURCE).unlink()
    service = FerretDB(_settings(tmp_path))
    with pytest.raises(ServiceError, match=f"has no {RESOURCE}, which the local build replaces"):
        service._build("1.24.2", progress=_Quiet())
    assert "resource" not in module  # go build never ran
    assert not service.binary.exists()


def test_the_binary_is_named_by_the_replacement_so_a_change_builds_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    before = FerretDB(settings).binary
    assert before.parent == settings.cache_dir / "bin"
    assert before.name.startswith(f"ferretdb-{settings.ferretdb_version}-")
    changed = tmp_path / "resource.go"
    changed.write_text(ferretdb.RESOURCE_GO.read_text() + "// changed\n")
    monkeypatch.setattr(ferretdb, "RESOURCE_GO", changed)
    after = FerretDB(settings).binary
    assert after != before and after.name.startswith(f"ferretdb-{settings.ferretdb_version}-")


def test_ferretdb_runs_with_a_larger_gc_target_unless_the_environment_sets_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = FerretDB(_settings(tmp_path))
    monkeypatch.delenv("GOGC", raising=False)
    assert service.env()["GOGC"] == ferretdb.GOGC == "400"
    monkeypatch.setenv("GOGC", "150")
    assert service.env()["GOGC"] == "150"


class _Quiet(Progress):
    def step(self, service: str, message: str) -> None:
        pass
