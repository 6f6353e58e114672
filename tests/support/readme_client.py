"""The live client printed in the README, loaded as it is printed (its last line, which
runs it against a placeholder, left out), so tests can run it for real."""

from __future__ import annotations

from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "Live messages, in thirty lines"


def readme_client() -> dict[str, Any]:
    """The namespace of the README's client: `listen(url, token, since)` and `show`."""
    block = README.read_text().split(HEADING)[1].split("```python\n")[1].split("```")[0]
    namespace: dict[str, Any] = {}
    exec(block.replace("asyncio.run(", "# asyncio.run("), namespace)
    return namespace
