"""Static checks of docker-compose.yml (no Docker engine here): the compose-spec schema,
then the properties the topology must have (ports, networks, pins, health, scaling, MongoDB
init) and agreement with the services' settings modules."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Mapping
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from dialogue_worker.adapters import registration
from dialogue_worker.adapters.sharding import SHARD_KEYS
from dialogue_worker.settings import WorkerSettings
from gateway.__main__ import shutdown_grace
from gateway.settings import GatewaySettings
from infra.docker import dotenv
from infra.local.kafka import CLUSTER_TUNING

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
MONGO_INIT = REPO / "infra" / "docker" / "mongo-init.js"
CONSUL_DIR = REPO / "infra" / "docker" / "consul"
PUBLISHED = {"gateway": 8007, "consul": 8500}
ONE_SHOT = {"mongo-init", "consul-acl-init"}
WORKER, GATEWAY = "dialogue_worker", "gateway"
MONGO_SERVERS = ["cfg1", *(f"shard{n}{m}" for n in (1, 2, 3) for m in "ab")]
KAFKA_NODES = {"kafka-1", "kafka-2", "kafka-3"}
DATA = {*KAFKA_NODES, "consul", "consul-acl-init", "mysql", "mongos", "mongo-init", *MONGO_SERVERS}
CONSUL_TOKENS = ("MANAGEMENT", "AGENT", "WORKER", "GATEWAY")
RUNNING_DOC = REPO / "docs" / "running.md"
#: Settings of the apps an operator may need to change in .env: the bounds per client
#: address (every client through Docker's port proxy shares one address) and the timeouts
#: the stops are sized for. Every RATE_*_PER_ADDRESS of the gateway is one of them.
TUNED_IN_DOT_ENV = {
    GATEWAY: (
        "MAX_CONNECTIONS_PER_ADDRESS",
        "STREAM_MAX_PER_ADDRESS",
        "SIGNIN_ADDRESS_MAX_FAILURES",
        *(
            name.upper()
            for name in GatewaySettings.model_fields
            if name.startswith("rate_") and name.endswith("_per_address")
        ),
        "UPSTREAM_DEADLINE",
        "KAFKA_SEND_TIMEOUT",
    ),
    WORKER: ("SHUTDOWN_GRACE",),
}

_VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, applied to every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        if op in (":?", "?") and not current:
            raise KeyError(f"{name}: {arg}")
        if op in (":-", "-") and not current:
            return str(arg)
        return current or ""

    return _VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


@pytest.fixture(scope="module")
def dot_env() -> dict[str, str]:
    """The .env `make up` would write (example + random secrets)."""
    return dotenv.parse(dotenv.render((REPO / ".env.example").read_text()))


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any], dot_env: dict[str, str]) -> dict[str, Any]:
    """The file as compose resolves it with that .env."""
    resolved: dict[str, Any] = interpolate(raw, dot_env)
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_matches_the_compose_spec_schema(raw: dict[str, Any]) -> None:
    dist = distribution("check-jsonschema")
    vendor = "check_jsonschema/builtin_schemas/vendor"
    schema_file = Path(str(dist.locate_file(f"{vendor}/compose-spec.json")))
    digest = Path(str(dist.locate_file(f"{vendor}/sha256/compose-spec.sha256"))).read_text()
    assert hashlib.sha256(schema_file.read_bytes()).hexdigest() == digest.strip()
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(raw)
    ]
    assert errors == []


def test_the_topology_is_complete(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == DATA | {WORKER, GATEWAY}
    for node in KAFKA_NODES:
        assert services[node]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "-ui" in services["consul"]["command"]
    assert services["mysql"]["image"].startswith("mysql:8.")


def test_only_the_gateway_and_the_consul_ui_are_published(
    services: dict[str, dict[str, Any]],
) -> None:
    published = {name: s["ports"] for name, s in services.items() if s.get("ports")}
    assert set(published) == set(PUBLISHED)
    for name, port in PUBLISHED.items():
        assert published[name] == [f"127.0.0.1:{port}:{port}"]
    assert not any(s.get("expose") for s in services.values())


def test_consul_is_published_on_its_own_address_never_on_publish_addr(
    raw: dict[str, Any], dot_env: dict[str, str]
) -> None:
    """PUBLISH_ADDR=0.0.0.0 exposes the gateway; Consul's API used to follow it."""
    without = {k: v for k, v in dot_env.items() if not k.endswith("PUBLISH_ADDR")}
    cases = [
        (without, "127.0.0.1", "127.0.0.1"),  # both unset: loopback
        ({**dot_env, "PUBLISH_ADDR": "0.0.0.0"}, "0.0.0.0", "127.0.0.1"),
        ({**without, "PUBLISH_ADDR": "0.0.0.0"}, "0.0.0.0", "127.0.0.1"),
        ({**dot_env, "CONSUL_PUBLISH_ADDR": "192.0.2.7"}, "127.0.0.1", "192.0.2.7"),
    ]
    for env, gateway_addr, consul_addr in cases:
        services = interpolate(raw, env)["services"]
        assert services[GATEWAY]["ports"] == [f"{gateway_addr}:8007:8007"], env
        assert services["consul"]["ports"] == [f"{consul_addr}:8500:8500"], env
    assert dot_env["PUBLISH_ADDR"] == dot_env["CONSUL_PUBLISH_ADDR"] == "127.0.0.1"


def test_the_edge_network_has_a_fixed_subnet_the_docs_name(
    raw: dict[str, Any], compose: dict[str, Any], dot_env: dict[str, str]
) -> None:
    """Clients on the host come through Docker's port proxy from the edge network's
    gateway address: without a pinned subnet no TRUSTED_PROXIES value could name it."""
    for networks in (compose["networks"], interpolate(raw["networks"], {})):  # .env, unset
        (pool,) = networks["edge"]["ipam"]["config"]
        assert (pool["subnet"], pool["gateway"]) == ("172.31.250.0/24", "172.31.250.1")
    assert (dot_env["EDGE_SUBNET"], dot_env["EDGE_GATEWAY"]) == (pool["subnet"], pool["gateway"])
    subnet, gateway = ipaddress.ip_network(pool["subnet"]), ipaddress.ip_address(pool["gateway"])
    assert subnet.is_private and gateway in subnet
    assert gateway not in (subnet.network_address, subnet.broadcast_address)
    assert not subnet.overlaps(ipaddress.ip_network("172.17.0.0/16"))  # Docker's own bridge
    # The recipes for a proxy on the host name that address.
    assert f"TRUSTED_PROXIES={gateway}" in (REPO / ".env.example").read_text()
    assert f"TRUSTED_PROXIES={gateway}" in RUNNING_DOC.read_text()
    for name in ("backend", "producers"):  # internal: nothing is published through them
        assert "ipam" not in (compose["networks"][name] or {}), name


def test_networks_keep_workers_and_data_internal(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    networks = compose["networks"]
    internal = {name for name, net in networks.items() if (net or {}).get("internal")}
    assert internal == {"backend", "producers"}
    for name, service in services.items():
        attached = set(service["networks"])
        assert "backend" in attached, name
        assert ("edge" in attached) == (name in PUBLISHED), name
        # Outside producers reach Kafka and nothing else (MongoDB has no authentication).
        assert ("producers" in attached) == (name in KAFKA_NODES), name


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_long_running_services_have_health_checks_and_restart(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no"
            assert "healthcheck" not in service
            continue
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service["restart"] == "unless-stopped", name


def test_dependencies_have_conditions_that_can_be_met(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs the long form"
        for target, spec in depends.items():
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[target], f"{name} -> {target}"
            elif condition == "service_completed_successfully":
                assert target in ONE_SHOT, f"{name} -> {target}"
            else:
                assert condition == "service_started", f"{name} -> {target}"
    assert services[WORKER]["depends_on"]["mongo-init"]["condition"] == (
        "service_completed_successfully"
    )
    # The job initiates the config replica set the router needs: waiting for a healthy
    # router before running it could deadlock.
    assert services["mongo-init"]["depends_on"]["mongos"]["condition"] == "service_started"
    for name in MONGO_SERVERS:
        assert services["mongo-init"]["depends_on"][name]["condition"] == "service_healthy"


def test_no_dependency_cycles(services: dict[str, dict[str, Any]]) -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for target in services[name].get("depends_on", {}):
                visit(target, (*path, name))
            done.add(name)

    for name in services:
        visit(name, ())


def test_workers_scale_without_clashes(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not any("container_name" in s for s in services.values())
    worker = services[WORKER]
    assert "ports" not in worker and "hostname" not in worker
    env = environment(worker)
    assert "SERVICE_ID" not in env and "WORKER_ADVERTISE_HOST" not in env
    assert env["WORKER_HOST"] == "0.0.0.0"
    settings = WorkerSettings.model_validate({k.lower(): v for k, v in env.items()})
    ids = set()
    for hostname in ("3f2a9c1b7d10", "8e41d0c2aa57"):  # two replicas' container hostnames
        monkeypatch.setattr("socket.gethostname", lambda h=hostname: h)
        assert settings.advertise_host == hostname
        ids.add(registration.instance_id(settings))
    assert ids == {"3f2a9c1b7d10-8100", "8e41d0c2aa57-8100"}


def test_app_settings_are_known_fields_and_valid_in_production(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, model in ((WORKER, WorkerSettings), (GATEWAY, GatewaySettings)):
        env = environment(services[name])
        unknown = {k for k in env if k.lower() not in model.model_fields}
        assert not unknown, f"{name}: {unknown} are not settings of {model.__name__}"
        assert env["DIALOGUE_ENV"] == "production"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        model()  # the production checks (no default secrets) pass with the generated .env
        for key in env:
            monkeypatch.delenv(key)
    gateway, worker = environment(services[GATEWAY]), environment(services[WORKER])
    for key in ("ENTRYPOINT_TOKEN", "TOPIC", "KAFKA_BOOTSTRAP", "CONSUL_URL"):
        assert gateway[key] == worker[key], key
    assert gateway["WORKER_SERVICE"] == worker.get(
        "WORKER_SERVICE", WorkerSettings.model_fields["worker_service"].default
    )
    assert gateway["GATEWAY_PORT"] == "8007" and gateway["GATEWAY_HOST"] == "0.0.0.0"
    mysql = environment(services["mysql"])
    assert gateway["MYSQL_HOST"] == "mysql"
    for key in ("MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"):
        assert gateway[key] == mysql[key], key


def _app_value(model: type[WorkerSettings | GatewaySettings], key: str, text: str) -> Any:
    """What the app makes of `text` as the value of setting `key`."""
    return getattr(model.model_validate({"dialogue_env": "local", key.lower(): text}), key.lower())


def test_the_settings_tuned_in_dot_env_reach_the_apps_with_their_defaults(
    raw: dict[str, Any], dot_env: dict[str, str]
) -> None:
    """Every client through Docker's port proxy shares one address, so the bounds per
    address must be raisable in .env; so must the timeouts the stops are sized for. An
    edit in .env used to have no effect on most of them (compose did not pass them on)."""
    assert len(TUNED_IN_DOT_ENV[GATEWAY]) >= 12  # the RATE_*_PER_ADDRESS were found
    for service, keys in TUNED_IN_DOT_ENV.items():
        model = GatewaySettings if service == GATEWAY else WorkerSettings
        env = raw["services"][service]["environment"]
        for key in keys:
            match = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", str(env.get(key)))
            assert match and match[1] == key, f"{service}: {key} is not ${{{key}:-...}}"
            default = model.model_fields[key.lower()].default
            assert _app_value(model, key, match[2]) == default, f"{key}: not the app's default"
            assert dot_env[key] == match[2], f".env.example's {key} differs from compose's"


def test_every_dot_env_variable_is_used_and_agrees_with_compose(raw: dict[str, Any]) -> None:
    """A variable in .env.example that compose never reads is a setting that silently does
    nothing; one whose example value differs from compose's default changes the platform
    just by writing .env."""
    text = COMPOSE_FILE.read_text()
    example = dotenv.parse((REPO / ".env.example").read_text())
    defaults: dict[str, set[str]] = {}
    for match in _VAR.finditer(text):
        if match["op"] == ":-":
            defaults.setdefault(match["name"], set()).add(match["arg"])
    referenced = {m["name"] for m in _VAR.finditer(text)}
    assert set(example) == referenced, f"never read by compose: {set(example) - referenced}"
    for name, values in defaults.items():
        assert values == {example[name]}, f"{name}: compose {values}, example {example[name]!r}"
    # And every app setting compose takes from .env defaults to the app's own default.
    for service, model in ((GATEWAY, GatewaySettings), (WORKER, WorkerSettings)):
        for key, value in raw["services"][service]["environment"].items():
            found = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", str(value))
            field = model.model_fields.get(key.lower())
            if not found or field is None or "SecretStr" in str(field.annotation):
                continue
            assert found[1] == key, f"{service}: {key} reads {found[1]}"
            default = field.get_default(call_default_factory=True)
            assert _app_value(model, key, found[2]) == default, f"{service}: {key}"


def test_secrets_come_from_dot_env(raw: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text()
    example = dotenv.parse((REPO / ".env.example").read_text())
    referenced = {m["name"] for m in _VAR.finditer(text)}
    assert referenced <= set(example), f"undocumented in .env.example: {referenced - set(example)}"
    for secret in ("JWT_SECRET", "ENTRYPOINT_TOKEN", "MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"):
        assert example[secret] == "", f"{secret} must not have a usable example value"
        uses = re.findall(r"\$\{" + secret + r"(:\?|:-|\})", text)
        assert uses and set(uses) == {":?"}, f"{secret} must be required (${{{secret}:?...}})"
    assert ".env" in (REPO / ".gitignore").read_text().split()
    with pytest.raises(KeyError, match=r"set \w+ in \.env"):
        interpolate(raw, {})


def test_dot_env_is_written_once_with_random_secrets(tmp_path: Path) -> None:
    target = tmp_path / ".env"
    assert dotenv.main([str(target)]) == 0
    first = dotenv.parse(target.read_text())
    assert all(len(first[name]) >= 40 for name in dotenv.SECRETS)
    assert all(uuid.UUID(first[name]).version == 4 for name in dotenv.UUID_SECRETS)
    every = (*dotenv.SECRETS, *dotenv.UUID_SECRETS)
    assert len({first[name] for name in every}) == len(every)
    assert first["MONGO_DB"] == "dialogue"
    assert target.stat().st_mode & 0o777 == 0o600
    assert dotenv.main([str(target)]) == 0
    assert dotenv.parse(target.read_text()) == first  # kept, never regenerated


def _replica_sets(services: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    members: dict[str, list[str]] = {}
    for name, service in services.items():
        command = service.get("command", [])
        if command and command[0] == "mongod":
            rs = command[command.index("--replSet") + 1]
            members.setdefault(rs, []).append(f"{name}:{command[command.index('--port') + 1]}")
    return members


def _parse_rs(spec: str) -> tuple[str, list[str]]:
    name, hosts = spec.split("/")
    return name, hosts.split(",")


def test_mongo_cluster_is_config_rs_three_shards_and_mongos(
    services: dict[str, dict[str, Any]],
) -> None:
    rs = _replica_sets(services)
    config = [n for n, s in services.items() if "--configsvr" in s.get("command", [])]
    shards = {n for n, s in services.items() if "--shardsvr" in s.get("command", [])}
    assert config == ["cfg1"] and len(shards) == 6
    assert {name: len(hosts) for name, hosts in rs.items()} == {
        "cfgrs": 1,
        "shard1": 2,
        "shard2": 2,
        "shard3": 2,
    }
    init = environment(services["mongo-init"])
    assert _parse_rs(init["CONFIG_RS"]) == ("cfgrs", rs["cfgrs"])
    assert dict(map(_parse_rs, init["SHARD_RS"].split(";"))) == {
        k: v for k, v in rs.items() if k != "cfgrs"
    }
    mongos = services["mongos"]["command"]
    assert mongos[0] == "mongos"
    assert mongos[mongos.index("--configdb") + 1] == init["CONFIG_RS"]
    assert init["MONGOS"] == "mongos:27017"
    assert environment(services[WORKER])["MONGO_URL"] == "mongodb://mongos:27017/"


def test_mongo_init_shards_the_application_database(
    raw: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    # Same expression in both services, so a MONGO_DB override moves both together.
    assert (
        raw["services"]["mongo-init"]["environment"]["MONGO_DB"]
        == (raw["services"][WORKER]["environment"]["MONGO_DB"])
    )
    job = services["mongo-init"]
    mount = next(v for v in job["volumes"] if v.startswith("./infra/docker/mongo-init.js:"))
    assert job["command"][-1] == mount.split(":")[1]
    script = MONGO_INIT.read_text()
    assert 'const database = required("MONGO_DB");' in script
    assert "{ enableSharding: database }" in script
    assert "const namespace = `${database}.${collection}`;" in script
    assert "getSiblingDB" not in script and '"test"' not in script
    block = re.search(r"const SHARD_KEYS = (\{.*?\n\});", script, re.S)
    assert block, "SHARD_KEYS not found in mongo-init.js"
    keys = json.loads(re.sub(r"(\w+):", r'"\1":', block[1]).replace(",\n}", "\n}"))
    assert keys == SHARD_KEYS  # the worker's own shard keys


def test_mongo_init_script_is_valid_javascript() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: syntax not checked")
    subprocess.run([node, "--check", str(MONGO_INIT)], check=True, capture_output=True)


def _walk(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    elif isinstance(value, str):
        yield value


def test_nothing_binds_to_fixed_host_paths_outside_the_repo(raw: dict[str, Any]) -> None:
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert not source.startswith("/"), f"{name}: host path {source}"
    assert not any("docker.sock" in s for s in _walk(raw))


def test_the_jobs_mount_project_files_read_only_with_a_shared_selinux_label(
    raw: dict[str, Any],
) -> None:
    """On a host with SELinux enforcing, a container reads a bind-mounted file only if it
    carries a container label: `z` relabels it (shared between containers). Only the
    project's own files under infra/docker are mounted so, never with the private `Z`."""
    mounted = {}
    for name, service in raw["services"].items():
        for volume in service.get("volumes", []):
            source, _target, *mode = volume.split(":")
            if source.startswith("."):
                assert sorted(mode[0].split(",") if mode else []) == ["ro", "z"], volume
                path = (REPO / source).resolve()
                assert path.is_relative_to(REPO / "infra" / "docker") and path.exists(), volume
                mounted[name] = path
    assert mounted == {"consul-acl-init": CONSUL_DIR, "mongo-init": MONGO_INIT}


# A fake cluster for mongo-init.js: mongosh's globals (Mongo, sleep, print, tojson) over
# in-memory replica sets, shards and sharded namespaces. The script runs twice.
# Arguments: the script, its environment, and the namespaces sharded before it runs
# ({namespace: key}). shardCollection on a sharded namespace answers as older servers do,
# code 23 "already" whatever the key.
_FAKE_MONGOSH = r"""
const vm = require("vm");
const fs = require("fs");
const env = JSON.parse(process.argv[3]);
const shardedBefore = JSON.parse(process.argv[4] || "{}");
const rsOf = {};
const membersOf = {};
for (const spec of [env.CONFIG_RS, ...env.SHARD_RS.split(";")]) {
  const [name, hosts] = spec.split("/");
  membersOf[name] = hosts.split(",");
  for (const h of membersOf[name]) rsOf[h] = name;
}
const state = { initiated: {}, shards: [], sharding: [], collections: { ...shardedBefore } };
const calls = [];
function fail(code, message) { const e = new Error(message); e.code = code; throw e; }
class Mongo {
  constructor(url) { this.host = url.replace("mongodb://", "").split("/")[0]; }
  getDB(name) {
    const host = this.host;
    return { runCommand(cmd) {
      const op = Object.keys(cmd)[0];
      calls.push({ host, op, cmd });
      const rs = rsOf[host];
      if (op === "ping") return { ok: 1 };
      if (op === "replSetGetStatus") {
        if (!state.initiated[rs]) fail(94, "no replset config has been received");
        return { ok: 1 };
      }
      if (op === "replSetInitiate") {
        if (state.initiated[rs]) fail(23, "already initialized");
        state.initiated[cmd.replSetInitiate._id] = cmd.replSetInitiate;
        return { ok: 1 };
      }
      if (op === "hello") {
        const ok = !!state.initiated[rs];
        const primary = membersOf[rs][0];
        return { ok: 1, isWritablePrimary: ok && primary === host, primary };
      }
      if (host !== env.MONGOS) fail(13, `${op} sent to ${host}, not to the router`);
      if (op === "listShards") return { ok: 1, shards: state.shards.map((id) => ({ _id: id })) };
      if (op === "addShard") { state.shards.push(cmd.name); return { ok: 1 }; }
      if (op === "enableSharding") { state.sharding.push(cmd.enableSharding); return { ok: 1 }; }
      if (op === "shardCollection") {
        const ns = cmd.shardCollection;
        if (ns in state.collections) fail(23, `sharding already enabled for collection ${ns}`);
        state.collections[ns] = cmd.key;
        return { ok: 1 };
      }
      if (op === "find" && name === "config" && cmd.find === "collections") {
        const ns = cmd.filter._id;
        const found = ns in state.collections ? [{ _id: ns, key: state.collections[ns] }] : [];
        return { ok: 1, cursor: { firstBatch: found } };
      }
      fail(59, `unexpected command ${op}`);
    } };
  }
}
const script = fs.readFileSync(process.argv[2], "utf8");
const out = [];
const runs = [];
for (let i = 0; i < 2; i++) {
  const start = calls.length;
  vm.runInNewContext(script, {
    process: { env }, Mongo, sleep() {}, print: (s) => out.push(s),
    tojson: (v) => JSON.stringify(v), Date, Error, Set, Object, JSON, String,
  });
  runs.push(calls.slice(start).map((c) => c.op));
}
console.log(JSON.stringify({ state, runs, out }));
"""


def _fake_mongosh(
    services: dict[str, dict[str, Any]],
    tmp_path: Path,
    sharded: dict[str, dict[str, str]] | None = None,
) -> subprocess.CompletedProcess[str]:
    """mongo-init.js run twice against the fake cluster, with MONGO_DB=appdb."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the init script's logic not exercised")
    env = {**environment(services["mongo-init"]), "MONGO_DB": "appdb"}
    harness = tmp_path / "fake_mongosh.js"
    harness.write_text(_FAKE_MONGOSH)
    return subprocess.run(
        [node, str(harness), str(MONGO_INIT), json.dumps(env), json.dumps(sharded or {})],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_mongo_init_script_builds_the_cluster_and_shards_the_app_database(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    result = _fake_mongosh(services, tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    state = report["state"]
    rs = _replica_sets(services)
    assert {
        name: [m["host"] for m in cfg["members"]] for name, cfg in state["initiated"].items()
    } == rs
    assert state["initiated"]["cfgrs"]["configsvr"] is True
    assert not any(state["initiated"][f"shard{n}"].get("configsvr") for n in (1, 2, 3))
    assert state["shards"] == ["shard1", "shard2", "shard3"]
    assert state["sharding"] == ["appdb"]  # the application database, no "test" db
    assert state["collections"] == {f"appdb.{c}": key for c, key in SHARD_KEYS.items()}
    first, second = report["runs"]
    assert first.count("replSetInitiate") == 4 and first.count("addShard") == 3
    # compose re-runs the job on every `up`: once done it only asks the router, and does
    # not wait for each replica set's first member to be primary again
    assert second == ["listShards"] + ["find"] * len(SHARD_KEYS)
    assert report["out"][-1].startswith("mongo-init: already done")
    assert 'collection appdb.history: sharded on {"page":"hashed"}' in report["out"]


def test_mongo_init_takes_collections_sharded_before_on_their_own_keys(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """A job cut short after sharding some collections: the router answers "already" for
    those, and the job goes on."""
    before = {"appdb.history": SHARD_KEYS["history"], "appdb.reads": SHARD_KEYS["reads"]}
    result = _fake_mongosh(services, tmp_path, before)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"]["collections"] == {f"appdb.{c}": key for c, key in SHARD_KEYS.items()}
    assert 'collection appdb.reads: sharded on {"u":"hashed"}' in report["out"]


def test_mongo_init_fails_on_a_collection_sharded_on_another_key(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """MongoDB answers "already sharded" also for another key, which passed as done: the
    worker would then run on a collection sharded on a key it does not expect."""
    result = _fake_mongosh(services, tmp_path, {"appdb.history": {"cid": "hashed"}})
    assert result.returncode != 0
    assert 'appdb.history is sharded on {"cid":"hashed"}, not {"page":"hashed"}' in result.stderr


# --- Consul with ACLs ----------------------------------------------------------------------


def _acl_config(services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(environment(services["consul"])["CONSUL_LOCAL_CONFIG"])
    return config


def _rules(policy: str) -> dict[tuple[str, str], str]:
    """{(resource, name): policy} of an ACL policy file (the HCL subset these files use)."""
    text = (CONSUL_DIR / policy).read_text()
    blocks = re.findall(r'(\w+)\s+"([^"]*)"\s*\{\s*policy\s*=\s*"(\w+)"\s*\}', text)
    body = re.sub(r"#.*", "", text)
    assert len(blocks) == body.count("{"), f"{policy}: unparsed rules"
    return {(kind, name): level for kind, name, level in blocks}


def test_consul_runs_with_acls_on_and_deny_by_default(
    services: dict[str, dict[str, Any]], dot_env: dict[str, str]
) -> None:
    acl = _acl_config(services)["acl"]
    assert acl["enabled"] is True and acl["default_policy"] == "deny"
    assert acl["tokens"]["initial_management"] == dot_env["CONSUL_MANAGEMENT_TOKEN"]
    assert "agent" not in acl["tokens"]  # the agent gets its own, weaker token from the job
    assert _acl_config(services)["ports"] == {"dns": -1}  # nothing uses Consul's DNS


def test_every_app_has_its_own_consul_token(
    services: dict[str, dict[str, Any]], dot_env: dict[str, str]
) -> None:
    worker, gateway = environment(services[WORKER]), environment(services[GATEWAY])
    assert worker["CONSUL_TOKEN"] == dot_env["CONSUL_WORKER_TOKEN"]
    assert gateway["CONSUL_TOKEN"] == dot_env["CONSUL_GATEWAY_TOKEN"]
    tokens = {dot_env[f"CONSUL_{role}_TOKEN"] for role in CONSUL_TOKENS}
    assert len(tokens) == len(CONSUL_TOKENS)
    for value in tokens:
        uuid.UUID(value)  # Consul takes only UUIDs as SecretIDs


def test_acl_policies_are_least_privilege(services: dict[str, dict[str, Any]]) -> None:
    service = environment(services[WORKER])["WORKER_SERVICE"]
    assert environment(services[GATEWAY])["WORKER_SERVICE"] == service
    # The gateway sends its internal token only to instances of the workers' app id.
    app_id = environment(services[WORKER])["WORKER_APP_ID"]
    assert environment(services[GATEWAY])["WORKER_APP_ID"] == app_id
    assert _rules("worker-policy.hcl") == {
        ("service", service): "write",
        ("node_prefix", ""): "read",
    }
    assert _rules("gateway-policy.hcl") == {
        ("service", service): "read",
        ("node_prefix", ""): "read",
    }
    agent = _rules("agent-policy.hcl")
    assert agent[("node_prefix", "")] == "write"
    assert all(level == "read" for key, level in agent.items() if key[0] != "node_prefix")


def test_the_acl_job_creates_every_token_before_the_apps_start(
    raw: dict[str, Any], services: dict[str, dict[str, Any]], dot_env: dict[str, str]
) -> None:
    job = services["consul-acl-init"]
    assert job["image"] == services["consul"]["image"]
    assert job["depends_on"] == {"consul": {"condition": "service_healthy"}}
    mount = next(v for v in job["volumes"] if v.startswith("./infra/docker/consul:"))
    target = mount.split(":")[1]
    assert job["entrypoint"][-1] == f"{target}/acl-init.sh"
    env = environment(job)
    assert env["CONSUL_HTTP_TOKEN"] == dot_env["CONSUL_MANAGEMENT_TOKEN"]
    for role in ("AGENT", "WORKER", "GATEWAY"):
        assert env[f"CONSUL_{role}_TOKEN"] == dot_env[f"CONSUL_{role}_TOKEN"]
    script = (CONSUL_DIR / "acl-init.sh").read_text()
    for policy in ("agent-policy.hcl", "worker-policy.hcl", "gateway-policy.hcl"):
        assert policy in script
    assert "set-agent-token agent" in script
    for app in (WORKER, GATEWAY):
        assert services[app]["depends_on"]["consul-acl-init"]["condition"] == (
            "service_completed_successfully"
        )
        assert "consul" not in services[app]["depends_on"]
    sh = shutil.which("sh")
    assert sh is not None
    subprocess.run([sh, "-n", str(CONSUL_DIR / "acl-init.sh")], check=True)
    for secret in ("CONSUL_MANAGEMENT_TOKEN", *(f"CONSUL_{r}_TOKEN" for r in CONSUL_TOKENS)):
        uses = re.findall(r"\$\{" + secret + r"(:\?|:-|\})", COMPOSE_FILE.read_text())
        assert uses and set(uses) == {":?"}, secret


def test_kafka_is_three_nodes_with_the_local_clusters_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    """Same replication and failover settings as `make dev KAFKA_NODES=3` (infra/local)."""
    envs = {name: services[name]["environment"] for name in sorted(KAFKA_NODES)}
    assert sorted(env["KAFKA_NODE_ID"] for env in envs.values()) == ["1", "2", "3"]
    for name, env in envs.items():
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
            "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"
        )
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        for setting in CLUSTER_TUNING:
            key, value = setting.split("=")
            assert env["KAFKA_" + key.upper().replace(".", "_")] == value, setting
    for app in (WORKER, GATEWAY):
        env = services[app]["environment"]
        assert env["KAFKA_BOOTSTRAP"] == "kafka-1:9092,kafka-2:9092,kafka-3:9092"
        assert {f"kafka-{n}" for n in (1, 2, 3)} <= set(services[app]["depends_on"])
    worker = services[WORKER]["environment"]
    assert (worker["TOPIC_REPLICATION"], worker["TOPIC_MIN_INSYNC"]) == ("3", "2")


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"a duration in seconds, not {duration!r}"
    return float(match[1])


def test_memory_logs_and_stops_are_bounded(services: dict[str, dict[str, Any]]) -> None:
    """Seven mongods on one host each take half its RAM unless capped; json-file logs
    grow forever unless rotated; a stop shorter than the service's own shutdown ends in
    SIGKILL (a broker's log recovery, a worker that never leaves its group)."""
    for name in MONGO_SERVERS:
        command = services[name]["command"]
        assert float(command[command.index("--wiredTigerCacheSizeGB") + 1]) <= 1, name
    for name, service in services.items():
        assert service["logging"]["options"]["max-size"], name
    grace = {name: _seconds(s.get("stop_grace_period", "10s")) for name, s in services.items()}
    assert all(grace[name] >= 60 for name in KAFKA_NODES)
    assert all(grace[name] >= 30 for name in [*MONGO_SERVERS, "mongos"])
    worker = WorkerSettings.model_validate(
        {k.lower(): v for k, v in environment(services[WORKER]).items()}
    )
    # deregister (5.5 s) + drain + final commit (SHUTDOWN_GRACE each) + producer flush
    assert grace[WORKER] >= 5.5 + 2 * worker.shutdown_grace + 10
    gateway = GatewaySettings.model_validate(
        {k.lower(): v for k, v in environment(services[GATEWAY]).items()}
    )
    # posts in flight (UPSTREAM_DEADLINE + KAFKA_SEND_TIMEOUT + 5 s), then the producer's
    # flush (up to KAFKA_SEND_TIMEOUT), then the closes of the feed, watch and pool (found
    # in review: the grace was exactly the first two, none left for the closes)
    assert grace[GATEWAY] >= shutdown_grace(gateway) + gateway.kafka_send_timeout + 10
    assert int(services[WORKER]["deploy"]["replicas"]) >= 2  # a crash leaves one serving


def test_the_apps_run_under_an_init_that_passes_signals_on(
    services: dict[str, dict[str, Any]],
) -> None:
    """As a container's PID 1, python ignores a signal it has no handler for yet: a
    `docker compose stop` during start-up waited out the grace period, then SIGKILL.
    Docker's init (tini) is PID 1 instead, forwards SIGTERM and reaps orphans."""
    apps = {name for name, service in services.items() if "build" in service}
    assert apps == {WORKER, GATEWAY}
    for name in apps:
        assert services[name].get("init") is True, name


def test_dot_env_takes_one_path_and_says_what_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as shown:
        dotenv.main(["--help"])  # used to write a file of secrets named "--help"
    assert shown.value.code == 0 and not (Path.cwd() / "--help").exists()
    with pytest.raises(SystemExit) as refused:
        dotenv.main(["a", "b"])
    assert refused.value.code == 2
    assert dotenv.main([str(tmp_path / "no-such-folder" / ".env")]) == 1
    assert "cannot write" in capsys.readouterr().err
