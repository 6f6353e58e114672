-- What FerretDB 1.x needs from PostgreSQL to serve O(page) reads and safe updates.
--
-- infra/local/postgres.py runs this file in every database FerretDB stores in, as the
-- superuser over the unix socket, in one transaction; running it again changes nothing.
-- Why these two triggers exist: docs/decisions.md, "FerretDB on PostgreSQL".
--
-- 1. GIN twins. FerretDB pushes an equality filter down as `_jsonb->'field' @> value`,
--    which its own btree indexes on ((_jsonb->'field')) cannot serve. For every such
--    btree (the `_id` index of each collection, every create_index of a client), the
--    event trigger `ferretdb_gin_twins` makes a GIN jsonb_path_ops index on the same
--    expression: one per key of a compound index, none when the table already has one.
--    Twins write through (fastupdate off): with GIN's default pending list every look-up
--    also scans the entries inserted since the list was last merged, up to 4 MB of them.
-- 2. Version guard. FerretDB updates a document by reading it without a lock and
--    writing it back whole. The event trigger `ferretdb_version_guard` gives every
--    collection table a row trigger that refuses (SQLSTATE 40001, "stale write") an
--    update of a document holding a numeric `v` unless it writes `v` + 1: an update that
--    does `$inc: {v: 1}` then either applies to the latest version or fails, and the
--    client retries it. Documents without `v` are not affected.
--
-- Everything lives in schema ferretdb_infra, owned by the superuser: FerretDB's role can
-- neither change it nor use it as a MongoDB database (it cannot create tables in it).

SELECT pg_advisory_xact_lock(hashtext('infra.local ferretdb_pg.sql'));

CREATE SCHEMA IF NOT EXISTS ferretdb_infra;
REVOKE ALL ON SCHEMA ferretdb_infra FROM PUBLIC;
GRANT USAGE ON SCHEMA ferretdb_infra TO PUBLIC;

-- s cut to at most n bytes without splitting a character.
CREATE OR REPLACE FUNCTION ferretdb_infra.left_bytes(s text, n integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    s := left(s, n);  -- n characters hold at least n bytes
    WHILE octet_length(s) > n LOOP
        s := left(s, -1);
    END LOOP;
    RETURN s;
END
$fn$;

-- The name of the GIN twin of btree index_name for key field: the original's name (cut
-- to 50 bytes), the first 8 hex digits of md5(field), "_gin"; at most 63 bytes.
-- infra/local/postgres.py:gin_twin_name computes the same.
CREATE OR REPLACE FUNCTION ferretdb_infra.gin_twin_name(index_name text, field text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT ferretdb_infra.left_bytes(index_name, 50) || '_' || left(md5(field), 8) || '_gin'
$fn$;

-- A table that holds a FerretDB collection: a jsonb column _jsonb, in a schema (a MongoDB
-- database) that has FerretDB's metadata table, and not that table itself.
CREATE OR REPLACE FUNCTION ferretdb_infra.is_collection(tbl oid) RETURNS boolean
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT EXISTS (
        SELECT 1
        FROM pg_class t
        JOIN pg_attribute a ON a.attrelid = t.oid AND a.attname = '_jsonb'
             AND a.atttypid = 'jsonb'::regtype AND NOT a.attisdropped
        WHERE t.oid = tbl AND t.relkind = 'r'
          AND t.relname <> '_ferretdb_database_metadata'
          AND EXISTS (SELECT 1 FROM pg_class m
                      WHERE m.relnamespace = t.relnamespace
                        AND m.relname = '_ferretdb_database_metadata' AND m.relkind = 'r'))
$fn$;

-- The field of an index key of the form (_jsonb -> 'field'), else NULL (a nested path).
CREATE OR REPLACE FUNCTION ferretdb_infra.key_field(expr text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT replace(substring(expr FROM '^\(_jsonb -> ''((?:[^'']|'''')*)''::text\)$'),
                   '''''', '''')
$fn$;

-- Whether table tbl has a GIN jsonb_path_ops index on the index key expression expr.
CREATE OR REPLACE FUNCTION ferretdb_infra.has_gin_twin(tbl oid, expr text) RETURNS boolean
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
    SELECT EXISTS (
        SELECT 1
        FROM pg_index g
        JOIN pg_class gc ON gc.oid = g.indexrelid
        JOIN pg_am gam ON gam.oid = gc.relam AND gam.amname = 'gin'
        JOIN pg_opclass oc ON oc.oid = g.indclass[0] AND oc.opcname = 'jsonb_path_ops'
        WHERE g.indrelid = tbl AND g.indnkeyatts = 1
          AND pg_get_indexdef(g.indexrelid, 1, true) = expr)
$fn$;

-- Make the GIN twins of one index; returns how many it made. Only btree indexes of
-- collection tables, only keys of the form (_jsonb -> 'field'): GIN indexes (the twins
-- themselves) and nested paths are skipped.
CREATE OR REPLACE FUNCTION ferretdb_infra.make_gin_twins(idx oid) RETURNS integer
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    i record;
    k integer;
    expr text;
    field text;
    made integer := 0;
BEGIN
    SELECT x.indrelid, x.indnkeyatts, ic.relname AS index_name,
           t.relname AS table_name, n.nspname AS schema_name, am.amname
      INTO i
      FROM pg_index x
      JOIN pg_class ic ON ic.oid = x.indexrelid
      JOIN pg_am am ON am.oid = ic.relam
      JOIN pg_class t ON t.oid = x.indrelid
      JOIN pg_namespace n ON n.oid = t.relnamespace
     WHERE x.indexrelid = idx;
    IF NOT FOUND OR i.amname <> 'btree' OR NOT ferretdb_infra.is_collection(i.indrelid) THEN
        RETURN 0;
    END IF;
    FOR k IN 1 .. i.indnkeyatts LOOP
        expr := pg_get_indexdef(idx, k, true);  -- e.g. (_jsonb -> 'cid'::text)
        field := ferretdb_infra.key_field(expr);
        CONTINUE WHEN field IS NULL;
        -- One GIN index per expression is enough (a compound index shares keys with others).
        CONTINUE WHEN ferretdb_infra.has_gin_twin(i.indrelid, expr);
        BEGIN
            EXECUTE format(
                'CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin ((_jsonb -> %L) jsonb_path_ops)'
                ' WITH (fastupdate = off)',
                ferretdb_infra.gin_twin_name(i.index_name, field),
                i.schema_name, i.table_name, field);
            made := made + 1;
        EXCEPTION WHEN duplicate_table OR unique_violation THEN
            NULL;  -- made at the same moment by another session
        END;
    END LOOP;
    RETURN made;
END
$fn$;

-- Make a GIN twin write through; true when it did not. With fastupdate on (GIN's default)
-- an insert only appends its entries to the index's pending list, which is merged into
-- the index when it passes gin_pending_list_limit (4 MB) or by (auto)vacuum; until then
-- every look-up reads the whole list as well. In a large, busy table autovacuum comes
-- seldom, so a look-up by _id read up to 4 MB of pending entries and cost what the last
-- ~100,000 inserts cost, not what its answer does. Off, an insert puts its entries in
-- place; what was pending is merged now.
CREATE OR REPLACE FUNCTION ferretdb_infra.write_through(idx oid) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_index g
        JOIN pg_class gc ON gc.oid = g.indexrelid
        JOIN pg_am gam ON gam.oid = gc.relam AND gam.amname = 'gin'
        JOIN pg_opclass oc ON oc.oid = g.indclass[0] AND oc.opcname = 'jsonb_path_ops'
        WHERE g.indexrelid = idx AND ferretdb_infra.is_collection(g.indrelid)
          AND NOT coalesce(gc.reloptions @> ARRAY['fastupdate=off'], false)) THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER INDEX %s SET (fastupdate = off)', idx::regclass);
    PERFORM gin_clean_pending_list(idx::regclass);
    RETURN true;
END
$fn$;

-- Empty a btree index FerretDB's queries cannot use; true when it was emptied now. Only
-- non-unique, not yet partial btree indexes of collection tables whose every key is a
-- (_jsonb -> 'field') with a GIN twin. FerretDB 1.x pushes equality down as @>, which no
-- btree serves, yet the btree holds each document's whole value of the field, and
-- PostgreSQL refuses a row whose entry passes 2,704 bytes (an array of ~400 user ids: a
-- chat of that many members could not be stored). The index is made again under its
-- name with WHERE false: it holds nothing and costs no write, and FerretDB, which keeps
-- the name in its metadata, still lists and drops it. Unique indexes are kept: they
-- enforce uniqueness.
CREATE OR REPLACE FUNCTION ferretdb_infra.empty_unused_btree(idx oid) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    i record;
    k integer;
    expr text;
    definition text;
BEGIN
    SELECT x.indrelid, x.indnkeyatts, x.indisunique, x.indpred IS NOT NULL AS partial, am.amname
      INTO i
      FROM pg_index x
      JOIN pg_class ic ON ic.oid = x.indexrelid
      JOIN pg_am am ON am.oid = ic.relam
     WHERE x.indexrelid = idx;
    IF NOT FOUND OR i.amname <> 'btree' OR i.indisunique OR i.partial
       OR NOT ferretdb_infra.is_collection(i.indrelid) THEN
        RETURN false;
    END IF;
    FOR k IN 1 .. i.indnkeyatts LOOP
        expr := pg_get_indexdef(idx, k, true);
        IF ferretdb_infra.key_field(expr) IS NULL
           OR NOT ferretdb_infra.has_gin_twin(i.indrelid, expr) THEN
            RETURN false;
        END IF;
    END LOOP;
    definition := pg_get_indexdef(idx);  -- CREATE INDEX <name> ON <schema>.<table> USING btree ...
    EXECUTE format('DROP INDEX %s', idx::regclass);
    EXECUTE definition || ' WHERE false';
    RETURN true;
END
$fn$;

-- The row trigger: an update of a versioned document must write the stored v + 1.
CREATE OR REPLACE FUNCTION ferretdb_infra.version_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    stale boolean := false;
BEGIN
    IF jsonb_typeof(OLD._jsonb -> 'v') = 'number' THEN
        IF jsonb_typeof(NEW._jsonb -> 'v') IS DISTINCT FROM 'number' THEN
            stale := true;  -- the update dropped v or made it something else
        ELSE
            stale := (NEW._jsonb -> 'v')::numeric <> (OLD._jsonb -> 'v')::numeric + 1;
        END IF;
    END IF;
    IF stale THEN
        RAISE EXCEPTION 'stale write on _id %', OLD._jsonb -> '_id'
            USING ERRCODE = 'serialization_failure',
                  DETAIL = format('stored v is %s, the update writes v %s',
                                  OLD._jsonb -> 'v', coalesce(NEW._jsonb -> 'v', 'null')),
                  HINT = 'every update of this document must $inc v by 1; read it again and retry';
    END IF;
    RETURN NEW;
END
$fn$;

-- Attach the version guard to one collection table; true when it was attached now.
CREATE OR REPLACE FUNCTION ferretdb_infra.attach_version_guard(tbl oid) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF NOT ferretdb_infra.is_collection(tbl)
       OR EXISTS (SELECT 1 FROM pg_trigger
                  WHERE tgrelid = tbl AND tgname = 'ferretdb_version_guard') THEN
        RETURN false;
    END IF;
    -- The WHEN clause keeps the function from even being called for unversioned documents.
    EXECUTE format(
        'CREATE TRIGGER ferretdb_version_guard BEFORE UPDATE ON %s FOR EACH ROW'
        ' WHEN (jsonb_typeof(OLD._jsonb -> ''v'') = ''number'')'
        ' EXECUTE FUNCTION ferretdb_infra.version_guard()',
        tbl::regclass);
    RETURN true;
EXCEPTION WHEN duplicate_object THEN
    RETURN false;  -- attached at the same moment by another session
END
$fn$;

CREATE OR REPLACE FUNCTION ferretdb_infra.on_create_index() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    cmd record;
BEGIN
    FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands()
               WHERE command_tag = 'CREATE INDEX' AND object_type = 'index'
    LOOP
        PERFORM ferretdb_infra.make_gin_twins(cmd.objid);
        -- Its re-creation comes back here, partial: left as it is.
        PERFORM ferretdb_infra.empty_unused_btree(cmd.objid);
    END LOOP;
END
$fn$;

CREATE OR REPLACE FUNCTION ferretdb_infra.on_create_table() RETURNS event_trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    cmd record;
BEGIN
    FOR cmd IN SELECT objid FROM pg_event_trigger_ddl_commands()
               WHERE command_tag = 'CREATE TABLE' AND object_type = 'table'
    LOOP
        PERFORM ferretdb_infra.attach_version_guard(cmd.objid);
    END LOOP;
END
$fn$;

-- The two event triggers, (re)made only when missing or not as written here.
DO $do$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('ferretdb_gin_twins', 'CREATE INDEX', 'ferretdb_infra.on_create_index()'),
        ('ferretdb_version_guard', 'CREATE TABLE', 'ferretdb_infra.on_create_table()')
    ) AS v(name, tag, fn)
    LOOP
        CONTINUE WHEN EXISTS (
            SELECT 1 FROM pg_event_trigger
            WHERE evtname = t.name AND evtevent = 'ddl_command_end' AND evtenabled = 'O'
              AND evtfoid = to_regprocedure(t.fn) AND evttags = ARRAY[t.tag]);
        EXECUTE format('DROP EVENT TRIGGER IF EXISTS %I', t.name);
        EXECUTE format('CREATE EVENT TRIGGER %I ON ddl_command_end WHEN TAG IN (%L)'
                       ' EXECUTE FUNCTION %s', t.name, t.tag, t.fn);
    END LOOP;
END
$do$;

-- Backfill: tables and indexes made before the triggers existed (or while they were
-- missing) get what the triggers would have given them. Takes no table lock when there
-- is nothing to do.
DO $do$
DECLARE
    r record;
    twins integer := 0;
    emptied integer := 0;
    guards integer := 0;
    through integer := 0;
BEGIN
    FOR r IN SELECT x.indexrelid FROM pg_index x
             WHERE x.indrelid >= 16384 AND ferretdb_infra.is_collection(x.indrelid)
    LOOP
        -- As the event trigger does: the twins first, then the btree they make unused.
        twins := twins + ferretdb_infra.make_gin_twins(r.indexrelid);
        IF ferretdb_infra.empty_unused_btree(r.indexrelid) THEN
            emptied := emptied + 1;
        END IF;
        IF ferretdb_infra.write_through(r.indexrelid) THEN
            through := through + 1;
        END IF;
    END LOOP;
    FOR r IN SELECT c.oid FROM pg_class c
             WHERE c.oid >= 16384 AND c.relkind = 'r' AND ferretdb_infra.is_collection(c.oid)
    LOOP
        IF ferretdb_infra.attach_version_guard(r.oid) THEN
            guards := guards + 1;
        END IF;
    END LOOP;
    IF twins > 0 OR emptied > 0 OR guards > 0 OR through > 0 THEN
        RAISE NOTICE 'backfill: % GIN twin(s), % unused btree(s) emptied, % version guard(s) added, % twin(s) made to write through',
            twins, emptied, guards, through;
    END IF;
END
$do$;
