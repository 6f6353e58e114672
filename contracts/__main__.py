"""`python -m contracts` rewrites the published JSON Schemas from the models."""

from __future__ import annotations

import json
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
    return _text(EVENTS_SCHEMA_FILE.name, schema)


if __name__ == "__main__":
    for path, text in ((SCHEMA_FILE, schema_text()), (EVENTS_SCHEMA_FILE, events_schema_text())):
        path.write_text(text)
        print(f"wrote {path}")
