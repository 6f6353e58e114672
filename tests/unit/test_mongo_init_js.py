"""infra/docker/mongo-init.js's sharding step, run in Node.js against a stand-in router.

The script is written for mongosh; its functions are plain JavaScript, so Node runs
them with `print`, `tojson` and the router's `runCommand` stood in for (no MongoDB
here: compose is never run on the machines this project is developed on). Its last
line, `main();`, is left out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "docker" / "mongo-init.js"

#: A router that answers shardCollection as MongoDB does: ok for a new collection, and
#: code 23 "already" for one sharded before, whatever key is asked for.
HARNESS = """
globalThis.print = (...parts) => console.log(parts.join(" "));
globalThis.tojson = (value) => JSON.stringify(value);
const sharded = JSON.parse(process.argv[1]);
const config = {
  runCommand(command) {
    const key = sharded[command.filter._id];
    return { ok: 1, cursor: { firstBatch: key ? [{ _id: command.filter._id, key }] : [] } };
  },
};
const admin = {
  runCommand(command) {
    if (command.enableSharding) return { ok: 1 };
    const namespace = command.shardCollection;
    if (namespace in sharded) {
      return { ok: 0, code: 23, errmsg: `sharding already enabled for collection ${namespace}` };
    }
    sharded[namespace] = command.key;
    return { ok: 1 };
  },
};
shardApplicationDatabase(admin, config, "dialogue");
"""


def _shard(sharded: dict[str, dict[str, str]]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed")
    script = SCRIPT.read_text().rstrip()
    assert script.endswith("main();")
    program = script.removesuffix("main();") + HARNESS
    return subprocess.run(
        [node, "-e", program, json.dumps(sharded)], capture_output=True, text=True, timeout=60
    )


def test_every_collection_is_sharded_on_its_key_and_again_is_harmless() -> None:
    done = _shard({})
    assert done.returncode == 0, done.stderr
    assert "collection dialogue.history: sharded on" in done.stdout
    again = _shard({"dialogue.history": {"page": "hashed"}, "dialogue.reads": {"u": "hashed"}})
    assert again.returncode == 0, again.stderr


def test_a_collection_sharded_on_another_key_fails_the_job() -> None:
    """MongoDB answers "already sharded" also for another key, which passed as done."""
    wrong = _shard({"dialogue.history": {"cid": "hashed"}})
    assert wrong.returncode != 0
    assert 'dialogue.history is sharded on {"cid":"hashed"}, not {"page":"hashed"}' in wrong.stderr
