"""The browser every browser test module drives: Debian's chromium through Playwright."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from infra.local.apt import apt_install
from infra.local.stack import PrintProgress


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium (installed when missing): Playwright cannot download browsers here."""
    if shutil.which("chromium") is None:
        apt_install("browser tests", "chromium", PrintProgress())
    path = shutil.which("chromium")
    assert path is not None
    # Debian's build is not pinned, Playwright is: its version is the first thing to
    # compare when the browser tests break on a fresh machine.
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    print(f"browser tests drive {version.stdout.strip() or path}")
    return path


@pytest.fixture(scope="module")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        yield launched
        await launched.close()
