"""`python -m contracts` rewrites the published JSON Schemas from the models (`--check`:
exit 1 when one is stale, writing nothing)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from contracts.events import EVENT
from contracts.records import MessageRecord

SCHEMA_DIR = Path(__file__).parent / "schema"
SCHEMA_FILE = SCHEMA_DIR / "dialogue.messages.v1.json"
EVENTS_SCHEMA_FILE = SCHEMA_DIR / "dialogue.events.v1.json"


def _text(schema_id: str, schema: dict[str, Any]) -> str:
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id}
    return json.dumps(document | schema, indent=2) + "\n"


def schema_text() -> str:
    """The record schema of `dialogue.messages` (what producers write)."""
    return _text(SCHEMA_FILE.name, MessageRecord.model_json_schema())


def events_schema_text() -> str:
    """The event schema of `dialogue.events` (one of the four event types), as published:
    `v` and `type` are in every event, so the schema requires them (a consumer's code
    generated from it must not take them for optional)."""
    schema = EVENT.json_schema(mode="serialization")
    schema["title"] = "dialogue.events event v1"
    # pydantic adds OpenAPI's `discriminator` beside `oneOf`; it is no JSON Schema
    # keyword, and validators in strict mode (Ajv's default) refuse to compile a schema
    # holding one (found in review). `oneOf` with each type's `const` says the same.
    del schema["discriminator"]
    return _text(EVENTS_SCHEMA_FILE.name, schema)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts",
        description="Write contracts/schema/*.json, the topics' JSON Schemas, from the models.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    files = ((SCHEMA_FILE, schema_text()), (EVENTS_SCHEMA_FILE, events_schema_text()))
    if args.check:
        stale = [p for p, text in files if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"{path} is stale; run: python -m contracts")
        return int(bool(stale))
    for path, text in files:
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
