"""Build Go programs from the Go module proxy into the cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from infra.local.downloads import run_fetching
from infra.local.service import ServiceError

#: Seconds one go command may take: the first build of Consul downloads and compiles
#: several hundred modules in about five minutes here.
GO_TIMEOUT = 1800.0


def go_env(cache_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    env["CGO_ENABLED"] = env.get("CGO_ENABLED", "0")
    return env


def run_go(args: list[str], cwd: Path, cache_dir: Path, what: str) -> str:
    if shutil.which("go") is None:
        raise ServiceError(f"{what} needs the go command on PATH")
    cwd.mkdir(parents=True, exist_ok=True)
    proc = run_fetching(
        ["go", *args], what=what, timeout=GO_TIMEOUT, env=go_env(cache_dir), cwd=cwd
    )
    return proc.stdout


def wrapper_module(module: str, version: str, package: str, cache_dir: Path) -> Path:
    """A tiny module that requires package@version, so it can be built as a dependency.

    `go install module@version` refuses modules with replace directives (Consul);
    building from a wrapper that requires it sidesteps that. Returns its folder. The
    folder is shared by the clones using the cache: the caller holds its lock
    (downloads.cache_lock).
    """
    name = module.rsplit("/", 1)[-1].lower()
    build = cache_dir / "build" / f"{name}-{version}"
    build.mkdir(parents=True, exist_ok=True)
    if not (build / "go.mod").exists():
        run_go(["mod", "init", f"{name}wrapper"], build, cache_dir, name)
    run_go(["get", f"{package}@v{version}"], build, cache_dir, name)
    return build


def go_build(build: Path, package: str, output: Path, cache_dir: Path, ldflags: str = "") -> None:
    """go build package in folder build, writing output atomically."""
    output.parent.mkdir(parents=True, exist_ok=True)
    # Named after the whole output: `with_suffix` made one `ferretdb-1.24.tmp` for every
    # build of 1.24.x, whatever lock each builder held (found in review).
    tmp = output.with_name(output.name + ".tmp")
    args = ["build", "-o", str(tmp)]
    if ldflags:
        args.append(f"-ldflags={ldflags}")
    run_go([*args, package], build, cache_dir, output.name)
    tmp.rename(output)


def build_module_copy(
    module: str,
    version: str,
    package_dir: str,
    output: Path,
    cache_dir: Path,
    extra_files: dict[str, str],
    replaced: dict[str, str] | None = None,
) -> None:
    """Build a main package of module@version as the main module, from a copy of its source.

    Used for FerretDB, whose version package wants generated files (version.txt)
    that its release process writes: extra_files supplies them. `replaced` gives new
    contents for files of the source, each of which must be there (a version without
    one is refused rather than built with an extra file). The copy is removed and made
    again: the caller holds the cache's lock on the output (downloads.cache_lock).
    """
    name = module.rsplit("/", 1)[-1].lower()
    info = json.loads(
        run_go(["mod", "download", "-json", f"{module}@v{version}"], cache_dir, cache_dir, name)
    )
    # One copy per output, which the caller's lock covers: a copy per version was rebuilt
    # under a build of the same version with other replacements (found in review).
    src = cache_dir / "build" / f"{output.name}-src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(info["Dir"], src)
    for folder, _, files in os.walk(src):
        os.chmod(folder, 0o755)
        for file in files:
            os.chmod(os.path.join(folder, file), 0o644)
    for rel, content in (replaced or {}).items():
        if not (src / rel).is_file():
            raise ServiceError(
                f"{module} v{version} has no {rel}, which the local build replaces: "
                "check that the replacement still fits this version"
            )
        (src / rel).write_text(content)
    for rel, content in extra_files.items():
        (src / rel).write_text(content)
    go_build(src, package_dir, output, cache_dir)


def module_licenses(build: Path, package: str, cache_dir: Path, prefix: str) -> dict[str, str]:
    """Map each module under prefix that package is built from to its LICENSE's licence."""
    out = run_go(
        ["list", "-deps", "-f", "{{with .Module}}{{.Path}}@{{.Version}} {{.Dir}}{{end}}", package],
        build,
        cache_dir,
        "licence check",
    )
    found: dict[str, str] = {}
    for line in out.splitlines():
        mod, _, mod_dir = line.partition(" ")
        if mod.startswith(prefix) and mod_dir and mod not in found:
            found[mod] = _licence_name(Path(mod_dir))
    return found


def _licence_name(mod_dir: Path) -> str:
    """The licence of a module folder, from its LICENSE (or its subfolders' when it has none)."""
    top = _licence_of(mod_dir)
    if top is not None:
        return top
    # Some forks (consul-net-rpc) only carry the licences of the code they vendor.
    nested = sorted(
        {lic for sub in mod_dir.iterdir() if sub.is_dir() if (lic := _licence_of(sub)) is not None}
    )
    return "+".join(nested) if nested else "no licence file"


def _licence_of(folder: Path) -> str | None:
    for name in ("LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING"):
        file = folder / name
        if not file.exists():
            continue
        text = file.read_text(errors="replace")
        if "Business Source License" in text:
            return "BUSL-1.1"
        if "Mozilla Public License" in text and "2.0" in text:
            return "MPL-2.0"
        if "Permission is hereby granted, free of charge" in text:
            return "MIT"
        if "Apache License" in text:
            return "Apache-2.0"
        if "Redistribution and use in source and binary forms" in text:
            return "BSD"
        return "unknown"
    return None
