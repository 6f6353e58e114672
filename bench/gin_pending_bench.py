"""Benchmark: what a GIN pending list costs a look-up, and writing through an insert.

    .venv/bin/python -m bench.gin_pending_bench [--base 1000000] [--lookups 1000]
                        [--pending 10000,50000,100000,200000] [--inserts 20000]

The GIN twins `infra/local/ferretdb_pg.sql` gives FerretDB's collections serve every read
the worker makes. With GIN's default `fastupdate = on` an insert only appends its entries
to the index's pending list, and every look-up reads that list whole until (auto)vacuum
or an insert that finds it past `gin_pending_list_limit` (4 MB) merges it. This measures
it on the local PostgreSQL, in a scratch schema of the `postgres` database that it drops
again: a table of `--base` documents shaped like FerretDB's (`_jsonb` with a string `_id`
and a 60-character text), a GIN jsonb_path_ops index on `(_jsonb -> '_id')`, then for each
`--pending` count: that many new documents left pending, the mean time of `--lookups`
look-ups of random existing keys (as FerretDB pushes them down: `@>`), the list merged
(`gin_clean_pending_list`), the same look-ups again. Then the mean time per document of
`--inserts` single-row inserts with the index written through and with a pending list.
Times are PostgreSQL's own (clock_timestamp in one PL/pgSQL call), without FerretDB.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench._common import counts, number
from infra.local import LocalSettings, Stack

SCHEMA = "gin_pending_bench"
DATABASE = "postgres"

SETUP = f"""
DROP SCHEMA IF EXISTS {SCHEMA} CASCADE;
CREATE SCHEMA {SCHEMA};
CREATE EXTENSION IF NOT EXISTS pgstattuple SCHEMA {SCHEMA};
CREATE TABLE {SCHEMA}.docs (_jsonb jsonb NOT NULL);
CREATE SEQUENCE {SCHEMA}.keys;
CREATE FUNCTION {SCHEMA}.doc(n bigint) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('_id', 'k' || n, 'text', repeat('x', 60))
$$;
-- Mean microseconds of n look-ups of random keys among those inserted so far.
CREATE FUNCTION {SCHEMA}.lookups(n integer) RETURNS double precision
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    top bigint := (SELECT last_value FROM {SCHEMA}.keys);
    started timestamptz := clock_timestamp();
    found bigint;
    key jsonb;
BEGIN
    FOR i IN 1 .. n LOOP
        key := to_jsonb('k' || (1 + floor(random() * top))::bigint);  -- once, not per row
        SELECT count(*) INTO found FROM {SCHEMA}.docs WHERE _jsonb -> '_id' @> key;
        IF found <> 1 THEN
            RAISE EXCEPTION 'a look-up found % documents', found;
        END IF;
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / n;
END
$$;
-- Mean microseconds per document of n single-row inserts.
CREATE FUNCTION {SCHEMA}.inserts(n integer) RETURNS double precision
LANGUAGE plpgsql AS $$
DECLARE
    started timestamptz := clock_timestamp();
BEGIN
    FOR i IN 1 .. n LOOP
        INSERT INTO {SCHEMA}.docs VALUES ({SCHEMA}.doc(nextval('{SCHEMA}.keys')));
    END LOOP;
    RETURN extract(epoch FROM clock_timestamp() - started) * 1e6 / n;
END
$$;
"""

INDEX = f"{SCHEMA}.docs_id"


def fill(count: int) -> str:
    return (
        f"INSERT INTO {SCHEMA}.docs SELECT {SCHEMA}.doc(nextval('{SCHEMA}.keys'))"
        f" FROM generate_series(1, {count})"
    )


def pending_pages() -> str:
    return f"SELECT ({SCHEMA}.pgstatginindex('{INDEX}')).pending_pages"


class Scratch:
    """SQL as PostgreSQL's superuser in the scratch schema; one psql call per step."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def run(self, sql: str) -> str:
        return self.stack.postgres.query(DATABASE, sql, timeout=None).strip()

    def number(self, sql: str) -> float:
        return float(self.run(sql))


def main(base: int, pending: list[int], lookups: int, inserts: int) -> None:
    db = Scratch(Stack(LocalSettings.from_env()))
    print(
        f"GIN pending list: {base:,} documents, GIN jsonb_path_ops on (_jsonb -> '_id'), "
        f"{lookups:,} look-ups per figure"
    )
    try:
        db.run(SETUP)
        db.run(fill(base))
        db.run(
            f"CREATE INDEX docs_id ON {SCHEMA}.docs USING gin ((_jsonb -> '_id') jsonb_path_ops)"
            f" WITH (fastupdate = off); VACUUM ANALYZE {SCHEMA}.docs"
        )
        alone = db.number(f"SELECT {SCHEMA}.lookups({lookups})")
        print(f"  merged, no pending list: {alone:8.1f} µs")
        for count in pending:
            # A limit no insert here reaches: the list is merged only when asked to.
            db.run(f"ALTER INDEX {INDEX} SET (fastupdate = on, gin_pending_list_limit = 2097151)")
            db.run(fill(count))
            pages = int(db.number(pending_pages()))
            with_list = db.number(f"SELECT {SCHEMA}.lookups({lookups})")
            db.run(f"SELECT gin_clean_pending_list('{INDEX}')")
            merged = db.number(f"SELECT {SCHEMA}.lookups({lookups})")
            print(
                f"  {count:>9,} pending ({pages:>4} pages): {with_list:8.1f} µs per look-up,"
                f" merged {merged:8.1f} µs"
            )
        db.run(f"ALTER INDEX {INDEX} SET (fastupdate = off)")
        through = db.number(f"SELECT {SCHEMA}.inserts({inserts})")
        db.run(f"ALTER INDEX {INDEX} RESET (gin_pending_list_limit)")
        db.run(f"ALTER INDEX {INDEX} SET (fastupdate = on)")
        listed = db.number(f"SELECT {SCHEMA}.inserts({inserts})")
        print(
            f"  inserts, {inserts:,} one at a time: written through {through:.1f} µs per document,"
            f" into a pending list (4 MB) {listed:.1f} µs"
        )
    finally:
        db.run(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=number(int, 1), default=1_000_000)
    parser.add_argument("--pending", type=counts, default=counts("10000,50000,100000,200000"))
    parser.add_argument("--lookups", type=number(int, 1), default=1000)
    parser.add_argument("--inserts", type=number(int, 1), default=20_000)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    main(args.base, args.pending, args.lookups, args.inserts)
