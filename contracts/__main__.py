"""`python -m contracts` rewrites the published JSON Schema from the record model."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.records import MessageRecord

SCHEMA_FILE = Path(__file__).parent / "schema" / "dialogue.messages.v1.json"


def schema_text() -> str:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "dialogue.messages.v1.json",
        **MessageRecord.model_json_schema(),
    }
    return json.dumps(schema, indent=2) + "\n"


if __name__ == "__main__":
    SCHEMA_FILE.write_text(schema_text())
    print(f"wrote {SCHEMA_FILE}")
