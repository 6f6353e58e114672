"""tests/check_waits.py: fixed sleeps and wall-clock assertions are refused, the rest passes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests import check_waits
from tests.check_waits import TESTS, check_paths, check_source


def lines(source: str) -> list[int]:
    """The lines the checker refuses in `source`."""
    return [f.line for f in check_source(textwrap.dedent(source))]


@pytest.mark.parametrize(
    "call",
    [
        "await asyncio.sleep(0.3)",
        "await asyncio.sleep(1)",
        "time.sleep(0.05)",
        "time.sleep(0)",
        "await asyncio.sleep(-1)",
        "await asyncio.sleep(PAUSE)",  # a named constant: fixed all the same
        "await asyncio.sleep(0.5 * 2)",
        "await asyncio.sleep(timing.SETTLE)",
        "time.sleep(PAUSE / 2)",
    ],
)
def test_a_fixed_sleep_is_refused(call: str) -> None:
    assert lines(f"import asyncio, time\nasync def f():\n    {call}\n") == [3]


def test_a_sleep_imported_by_name_is_refused_too() -> None:
    source = """
        from asyncio import sleep as nap
        from time import sleep
        async def f():
            await nap(0.5)
            sleep(1)
    """
    assert lines(source) == [5, 6]


@pytest.mark.parametrize(
    "call",
    [
        "await asyncio.sleep(0)",  # a yield to the loop
        "await asyncio.sleep(delay)",  # a computed pause: hold()'s own body, a backoff
        "await hold(0.1)",
        "await eventually(probe, within=5)",
        "await settle()",
    ],
)
def test_yields_computed_pauses_and_the_helpers_pass(call: str) -> None:
    assert lines(f"import asyncio\nasync def f(delay, probe):\n    {call}\n") == []


@pytest.mark.parametrize(
    "body",
    [
        "assert time.monotonic() - t0 < 5",
        "assert time.perf_counter() - t0 <= 1.5, 'too slow'",
        "assert 10 > time.time() - t0",
        "elapsed = time.monotonic() - t0\n    assert elapsed < 1.0",
        "t0 = time.monotonic()\n    appeared = seen[-1] - t0\n    assert appeared < 1.5",
        "assert max(time.monotonic() - s for s in starts) < 2",
        "assert ok and time.monotonic() - t0 < 5",
    ],
)
def test_an_assertion_that_something_was_fast_is_refused(body: str) -> None:
    source = f"import time\ndef f(t0, seen, starts, ok):\n    {body}\n"
    assert len(lines(source)) == 1


def test_a_clock_imported_by_name_counts() -> None:
    source = """
        from time import monotonic as now
        def f(t0):
            assert now() - t0 < 5
    """
    assert lines(source) == [4]


@pytest.mark.parametrize(
    "body",
    [
        "assert time.monotonic() < deadline",  # a bound on a wait, not a speed claim
        "assert time.monotonic() - t0 >= 1.0",  # at least: the clock can only help
        "assert killed < started < restarted",  # order of events
        "assert a.ended - a.started < 5",  # no clock in sight: not recognised
        "elapsed = time.monotonic() - t0\n    print(f'{elapsed:.2f}')",
        "assert time.time() + 3600 > expiry",
    ],
)
def test_bounds_orders_and_lower_limits_pass(body: str) -> None:
    params = "t0, deadline, killed, started, restarted, a, expiry"
    source = f"import time\ndef f({params}):\n    {body}\n"
    assert lines(source) == []


def test_findings_name_the_file_the_line_and_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "test_bad.py"
    bad.write_text("import asyncio\nasync def test_x():\n    await asyncio.sleep(0.5)\n")
    (tmp_path / "test_good.py").write_text("async def test_y():\n    pass\n")
    [finding] = check_paths([tmp_path])
    assert finding.path.endswith("test_bad.py") and finding.line == 3
    assert "eventually()" in finding.message and "hold()" in finding.message


def test_only_the_shared_helper_is_exempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_waits.ALLOWED == {TESTS / "support" / "waiting.py"}
    helper = tmp_path / "waiting.py"
    helper.write_text("import asyncio\nasync def hold():\n    await asyncio.sleep(1)\n")
    assert len(check_paths([helper])) == 1
    monkeypatch.setattr(check_waits, "ALLOWED", {helper.resolve()})
    assert check_paths([helper]) == []


@pytest.mark.parametrize(
    "decorator",
    [
        "@settings(deadline=200)",
        "@settings(max_examples=9, deadline=timedelta(seconds=1))",
        "@hypothesis.settings(deadline=500)",
    ],
)
def test_a_hypothesis_deadline_is_refused(decorator: str) -> None:
    source = f"{decorator}\ndef test_x():\n    pass\n"
    assert len(lines(source)) == 1


def test_a_hypothesis_deadline_of_none_passes() -> None:
    assert lines("@settings(max_examples=9, deadline=None)\ndef test_x():\n    pass\n") == []


@pytest.mark.parametrize(
    ("content", "said"),
    [(None, "no such file or folder"), (b"def (:\n", "invalid syntax"), (b"\xff\xfe", "utf-8")],
)
def test_a_path_it_cannot_check_is_a_usage_error(
    tmp_path: Path, content: bytes | None, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing path was a FileNotFoundError traceback."""
    path = tmp_path / "test_x.py"
    if content is not None:
        path.write_bytes(content)
    assert check_waits.main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"python -m tests.check_waits: cannot check {path}") and said in err
