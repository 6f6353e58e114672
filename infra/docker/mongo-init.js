// One-shot init of the sharded MongoDB cluster of docker-compose.yml (mongosh --nodb).
// Idempotent: every step checks before it acts, so re-running the job is harmless.
// Compose re-runs it on every `up`: when the router already lists every shard and every
// collection is sharded with its key, it ends at once, without waiting up to 180 s for
// each replica set's first member to be primary (after a failover it may never be).
//
//  1. initiate the config-server replica set and the three shard replica sets
//     (a primary and a secondary each) and wait for their primaries;
//  2. wait for the mongos router, add the three shards;
//  3. enable sharding on the APPLICATION database (env MONGO_DB, the worker's
//     database) and shard its collections with the keys the worker expects.
//
// Topology (replica set -> members) comes from the environment, e.g.
//   CONFIG_RS=cfgrs/cfg1:27017
//   SHARD_RS=shard1/shard1a:27017,shard1b:27017;shard2/shard2a:27017,shard2b:27017;...
//   MONGOS=mongos:27017  MONGO_DB=dialogue

const env = process.env;
const WAIT_MS = 180 * 1000;

function required(name) {
  const value = (env[name] || "").trim();
  if (!value) {
    throw new Error(`mongo-init: environment variable ${name} is required`);
  }
  return value;
}

function parseReplicaSet(spec) {
  const [name, members] = spec.split("/");
  return { name: name, hosts: members.split(",") };
}

function waitFor(what, probe) {
  const deadline = Date.now() + WAIT_MS;
  let lastError = null;
  while (Date.now() < deadline) {
    try {
      const result = probe();
      if (result) {
        return result;
      }
    } catch (err) {
      lastError = err;
    }
    sleep(1000);
  }
  throw new Error(`mongo-init: ${what} not ready after ${WAIT_MS / 1000}s: ${lastError}`);
}

// mongosh throws on {ok: 0}; the legacy shell returned it. Always return the answer.
function run(db, command) {
  try {
    return db.runCommand(command);
  } catch (err) {
    return { ok: 0, code: err.code, codeName: err.codeName, errmsg: String(err.message) };
  }
}

function connectTo(host) {
  // A connection is only proven by an answer: ping until the server responds.
  return waitFor(`${host}`, () => {
    const conn = new Mongo(`mongodb://${host}/?directConnection=true`);
    return run(conn.getDB("admin"), { ping: 1 }).ok === 1 ? conn : null;
  });
}

function initiateReplicaSet(rs, configsvr) {
  const admin = connectTo(rs.hosts[0]).getDB("admin");
  const status = run(admin, { replSetGetStatus: 1 });
  if (status.ok === 1) {
    print(`replica set ${rs.name}: already initiated`);
  } else if (status.code === 94 /* NotYetInitialized */) {
    const members = rs.hosts.map((host, i) => ({
      _id: i,
      host: host,
      priority: i === 0 ? 2 : 1, // the first member is the preferred primary
    }));
    const config = { _id: rs.name, members: members };
    if (configsvr) {
      config.configsvr = true;
    }
    const result = run(admin, { replSetInitiate: config });
    if (result.ok !== 1 && result.code !== 23 /* AlreadyInitialized */) {
      throw new Error(`mongo-init: replSetInitiate ${rs.name} failed: ${tojson(result)}`);
    }
    print(`replica set ${rs.name}: initiated with ${rs.hosts.join(", ")}`);
  } else {
    throw new Error(`mongo-init: replSetGetStatus ${rs.name} failed: ${tojson(status)}`);
  }
  waitFor(`primary of ${rs.name}`, () => run(admin, { hello: 1 }).isWritablePrimary);
  print(`replica set ${rs.name}: primary is ${run(admin, { hello: 1 }).primary}`);
}

function addShards(admin, shards) {
  const known = new Set(run(admin, { listShards: 1 }).shards.map((s) => s._id));
  for (const rs of shards) {
    if (known.has(rs.name)) {
      print(`shard ${rs.name}: already added`);
      continue;
    }
    const result = run(admin, { addShard: `${rs.name}/${rs.hosts.join(",")}`, name: rs.name });
    if (result.ok !== 1) {
      throw new Error(`mongo-init: addShard ${rs.name} failed: ${tojson(result)}`);
    }
    print(`shard ${rs.name}: added`);
  }
}

// The worker's shard keys (dialogue_worker/adapters/sharding.py, docs/decisions.md).
const SHARD_KEYS = {
  history: { page: "hashed" },
  message_ids: { _id: "hashed" },
  chats: { _id: "hashed" },
  reads: { u: "hashed" },
};

function shardApplicationDatabase(admin, config, database) {
  const enabled = run(admin, { enableSharding: database });
  if (enabled.ok !== 1) {
    throw new Error(`mongo-init: enableSharding ${database} failed: ${tojson(enabled)}`);
  }
  print(`database ${database}: sharding enabled`);
  for (const [collection, key] of Object.entries(SHARD_KEYS)) {
    const namespace = `${database}.${collection}`;
    const result = run(admin, { shardCollection: namespace, key: key });
    // Re-running with the same key answers ok, or "already sharded" on older servers,
    // which is also the answer for a collection sharded on another key: look at it.
    if (result.ok !== 1 && !/already/.test(result.errmsg || "")) {
      throw new Error(`mongo-init: shardCollection ${namespace} failed: ${tojson(result)}`);
    }
    const found = shardKeyOf(config, namespace);
    if (!sameKey(found, key)) {
      throw new Error(
        `mongo-init: ${namespace} is sharded on ${tojson(found)}, not ${tojson(key)}; ` +
          "a collection cannot be sharded again on another key: reshard it or move the data",
      );
    }
    print(`collection ${namespace}: sharded on ${tojson(key)}`);
  }
}

function sameKey(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// The key `namespace` is sharded on, as the config servers hold it (null: not sharded).
function shardKeyOf(config, namespace) {
  const found = run(config, { find: "collections", filter: { _id: namespace } });
  const batch = found.ok === 1 ? found.cursor.firstBatch : [];
  return batch.length === 1 ? batch[0].key : null;
}

// One look at the router, no waiting: is everything this job does done already?
function alreadyDone(shards, database) {
  try {
    const uri = `mongodb://${required("MONGOS")}/?directConnection=true&serverSelectionTimeoutMS=5000`;
    const router = new Mongo(uri);
    // A router whose config servers are not initiated yet answers late or not at all.
    const listed = run(router.getDB("admin"), { listShards: 1, maxTimeMS: 5000 });
    if (listed.ok !== 1) {
      return false;
    }
    const known = new Set(listed.shards.map((s) => s._id));
    if (!shards.every((rs) => known.has(rs.name))) {
      return false;
    }
    const config = router.getDB("config");
    return Object.entries(SHARD_KEYS).every(([collection, key]) =>
      sameKey(shardKeyOf(config, `${database}.${collection}`), key),
    );
  } catch (err) {
    return false; // the router is not up yet: the full path waits for it
  }
}

function main() {
  const database = required("MONGO_DB");
  const configRs = parseReplicaSet(required("CONFIG_RS"));
  const shards = required("SHARD_RS").split(";").map(parseReplicaSet);

  if (alreadyDone(shards, database)) {
    print(`mongo-init: already done; ${database} is sharded over ${shards.length} shards`);
    return;
  }

  initiateReplicaSet(configRs, true);
  for (const rs of shards) {
    initiateReplicaSet(rs, false);
  }

  const mongos = connectTo(required("MONGOS"));
  const router = mongos.getDB("admin");
  waitFor("mongos and its config servers", () => run(router, { listShards: 1 }).ok === 1);
  addShards(router, shards);
  shardApplicationDatabase(router, mongos.getDB("config"), database);
  print(`mongo-init: done; application database ${database} is sharded over ${shards.length} shards`);
}

main();
