"""infra/docker/dotenv.py: the .env of secrets is created owner-only from its first byte,
and an existing one (or anything else by that name) is never touched."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from infra.docker import dotenv


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@given(mask=st.integers(min_value=0, max_value=0o777))
@example(mask=0o022)  # the usual umask: a plain create would make the file 0644
@example(mask=0o000)
@example(mask=0o777)
def test_the_file_is_0600_whatever_the_umask(mask: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / ".env"
        with umask(mask):
            assert dotenv.main([str(target)]) == 0
        assert mode(target) == 0o600
        assert dotenv.parse(target.read_text())["JWT_SECRET"]


def test_a_write_that_dies_leaves_no_file_others_can_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process failing in the middle of writing (here: a value that cannot be encoded)
    used to leave the file as created, 0644 with umask 022, its chmod never reached."""
    target = tmp_path / ".env"
    monkeypatch.setattr(dotenv, "render", lambda example: "JWT_SECRET=\udcff\n")
    with umask(0o022), pytest.raises(UnicodeEncodeError):
        dotenv.main([str(target)])
    # neither readable by others nor a partial file that the next run would keep
    assert not target.exists(), f"left behind with mode {mode(target):o}"
    monkeypatch.undo()
    assert dotenv.main([str(target)]) == 0
    assert dotenv.parse(target.read_text())["JWT_SECRET"]


def test_an_existing_file_keeps_its_content_and_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / ".env"
    target.write_text("JWT_SECRET=mine\n")
    target.chmod(0o640)
    assert dotenv.main([str(target)]) == 0
    assert target.read_text() == "JWT_SECRET=mine\n"
    assert mode(target) == 0o640
    assert "exists; left as it is" in capsys.readouterr().out


def test_a_symbolic_link_by_that_name_is_not_followed(tmp_path: Path) -> None:
    """A dangling link used to be written through: the secrets landed at its target."""
    elsewhere = tmp_path / "elsewhere"
    target = tmp_path / ".env"
    target.symlink_to(elsewhere)
    assert dotenv.main([str(target)]) == 0
    assert target.is_symlink() and not elsewhere.exists()
    elsewhere.write_text("JWT_SECRET=linked\n")
    assert dotenv.main([str(target)]) == 0
    assert elsewhere.read_text() == "JWT_SECRET=linked\n"


def test_a_directory_by_that_name_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    target.mkdir()
    assert dotenv.main([str(target)]) == 0
    assert target.is_dir() and not any(target.iterdir())


def test_an_existing_file_is_kept_even_without_the_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example is read only when a file is created, as before."""
    target = tmp_path / ".env"
    target.write_text("JWT_SECRET=mine\n")
    monkeypatch.setattr(dotenv, "EXAMPLE", tmp_path / "no-such-example")
    assert dotenv.main([str(target)]) == 0
    assert dotenv.main([str(tmp_path / "new.env")]) == 1
    assert not (tmp_path / "new.env").exists()  # nothing half-made left behind
