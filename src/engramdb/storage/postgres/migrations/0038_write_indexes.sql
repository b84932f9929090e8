-- EngramDB postgres schema, version 38: two b-tree entries fewer per memory version written
-- (11 -> 9 for a current sessionless memory without an assertion or expiry, 12 -> 10 with a
-- session), none that a read needs; and a single remember in one statement (below).
-- Append-only: never edit a released migration.
-- The same change SQLite made in its versions 25 and 26 (issue 13, 16 writers):
-- * `memories_author (author)` (version 10) is the leading column of
--   `memories_author_layer_time (author, layer, valid_from)` (version 11): every lookup by
--   author (`author IN (...)`, storage/sql_where.py) is served by the wider index.
-- * `memories_session (session) WHERE session IS NOT NULL` (version 1) is the leading
--   column of `memories_session_time (session, valid_from)`: every lookup by session
--   (`session = $1`) is served by the wider one.
-- * `memories_session_time` held an entry for every memory without a session, which no
--   query reads: a session is looked up by equality, which PostgreSQL proves implies
--   `session IS NOT NULL`, so the partial index still serves it.
DROP INDEX IF EXISTS memories_author;
DROP INDEX IF EXISTS memories_session;
DROP INDEX IF EXISTS memories_session_time;
CREATE INDEX memories_session_time ON memories (session, valid_from) WHERE session IS NOT NULL;

-- And engram_append once more (version 36's, replaced in place: same arguments, results,
-- rows and hashes): a single remember (one memories row of the static shape, at most
-- one vector, one event: what every prepared single write sends) writes its memory row,
-- vector, event and payload and moves the chain head in one statement of data-modifying
-- CTEs, instead of five statements each with its own snapshot and executor start, under
-- the chain lock. Anything else takes version 36's path unchanged.
CREATE OR REPLACE PROCEDURE engram_append(
    p_config_tx bigint, p_recorded_at bigint, p_hole text, p_time_hole text,
    p_tables text[], p_rows text[], p_cols text[],
    p_kinds text[], p_namespaces text[], p_actors text[], p_subjects text[],
    p_envelopes text[], p_seq_holes text[], p_commit_hole text,
    p_salts bytea[], p_bodies text[],
    p_vec_ids text[], p_vec_versions bigint[], p_vecs vector, p_dim integer,
    p_barrier text, p_channel text,
    INOUT o_seq bigint, INOUT o_hash text, INOUT o_tx bigint, INOUT o_recorded_at bigint,
    INOUT o_config_tx bigint)
LANGUAGE plpgsql AS $$
DECLARE
    h record;
    t bigint;
    r bigint;
    s bigint;
    prev text;
    body text;
    commitment text;
    envelope text;
    digest text;
    stmt text;
    cols text;
    rows_json text;
BEGIN
    IF p_barrier <> '' THEN
        -- Early lock release: the COMMIT below returns (and lets the lock go) once its
        -- record is in the WAL buffers; the barrier after it waits for the flush.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    -- Queue here (see above): the key is int8 of b'engramq1', unlike the indexer's.
    PERFORM pg_advisory_xact_lock(7308892986227388721);
    SELECT * INTO h FROM chain_head WHERE id = 1 FOR UPDATE;
    IF h.config_tx <> p_config_tx THEN
        RAISE EXCEPTION 'engramdb: the configuration changed since this write was prepared'
            USING ERRCODE = 'EG001', DETAIL = h.config_tx::text;
    END IF;
    t := h.tx + 1;
    r := greatest(p_recorded_at, h.recorded_at);
    s := h.seq;
    prev := h.hash;
    IF array_length(p_tables, 1) = 1 AND array_length(p_kinds, 1) = 1
            AND coalesce(cardinality(p_vec_ids), 0) <= 1
            AND p_tables[1] = 'memories' AND p_cols[1] = 'id,version,namespace,layer,text,subject,'
                'predicate,value,metadata,importance,confidence,author,source,session,valid_from,'
                'valid_to,tx_from,tx_to,recorded_at,status,expires_at,row_tx,words' THEN
        -- A single remember (version 38): its rows, event, payload and the head's move
        -- in one statement (one snapshot, one executor start), hashed as below.
        s := s + 1;
        body := replace(replace(p_bodies[1], p_hole, t::text), p_time_hole, r::text);
        commitment := encode(sha256(p_salts[1] || convert_to(body, 'UTF8')), 'hex');
        envelope := replace(replace(replace(replace(p_envelopes[1], p_seq_holes[1], s::text),
                                            p_hole, t::text), p_time_hole, r::text),
                            p_commit_hole, commitment);
        digest := encode(sha256(decode(prev, 'hex') || convert_to(envelope, 'UTF8')), 'hex');
        WITH mem AS (
            INSERT INTO memories (id, version, namespace, layer, text, subject, predicate, value,
                                  metadata, importance, confidence, author, source, session,
                                  valid_from, valid_to, tx_from, tx_to, recorded_at, status,
                                  expires_at, row_tx, words)
            SELECT id, version, namespace, layer, text, subject, predicate, value, metadata,
                   importance, confidence, author, source, session, valid_from, valid_to,
                   tx_from, tx_to, recorded_at, status, expires_at, row_tx, words
            FROM json_populate_recordset(NULL::memories,
                replace(replace(p_rows[1], p_hole, t::text), p_time_hole, r::text)::json)
        ), vec AS (
            INSERT INTO memory_vectors (id, version, vec)
            SELECT p_vec_ids[1], p_vec_versions[1], p_vecs WHERE cardinality(p_vec_ids) = 1
        ), ev AS (
            INSERT INTO events (seq, tx, kind, namespace, actor, recorded_at, subject_ref,
                                commitment, prev_hash, hash)
            VALUES (s, t, p_kinds[1], p_namespaces[1], p_actors[1], r, p_subjects[1],
                    commitment, prev, digest)
        ), pay AS (
            INSERT INTO event_payloads (seq, salt, payload) VALUES (s, p_salts[1], body)
        )
        UPDATE chain_head SET seq = s, hash = digest, tx = t, recorded_at = r WHERE id = 1;
        prev := digest;
    ELSE
    FOR i IN 1 .. coalesce(array_length(p_tables, 1), 0) LOOP
        -- A prepared statement's arguments are part of the EXECUTE text (a utility
        -- statement takes no parameters): the rows travel as one quoted literal.
        IF p_tables[i] = 'memories' AND p_cols[i] = 'id,version,namespace,layer,text,subject,'
                'predicate,value,metadata,importance,confidence,author,source,session,valid_from,'
                'valid_to,tx_from,tx_to,recorded_at,status,expires_at,row_tx,words' THEN
            INSERT INTO memories (id, version, namespace, layer, text, subject, predicate, value,
                                  metadata, importance, confidence, author, source, session,
                                  valid_from, valid_to, tx_from, tx_to, recorded_at, status,
                                  expires_at, row_tx, words)
            SELECT id, version, namespace, layer, text, subject, predicate, value, metadata,
                   importance, confidence, author, source, session, valid_from, valid_to,
                   tx_from, tx_to, recorded_at, status, expires_at, row_tx, words
            FROM json_populate_recordset(NULL::memories,
                replace(replace(p_rows[i], p_hole, t::text), p_time_hole, r::text)::json);
            CONTINUE;
        END IF;
        rows_json := quote_literal(replace(replace(p_rows[i], p_hole, t::text), p_time_hole,
                                           r::text));
        -- Named after the table and its columns: one plan per shape and connection.
        stmt := 'engram_ins_' || md5(p_tables[i] || '(' || p_cols[i] || ')');
        BEGIN
            EXECUTE 'EXECUTE ' || stmt || '(' || rows_json || ')';
        EXCEPTION WHEN invalid_sql_statement_name THEN
            -- Not prepared on this connection (yet, or any more): prepare it, run it.
            -- Column names are quoted here; values are typed by the table's own
            -- columns (json_populate_recordset).
            SELECT string_agg(quote_ident(c), ', ') INTO cols
            FROM unnest(string_to_array(p_cols[i], ',')) AS c;
            EXECUTE 'PREPARE ' || stmt || '(json) AS INSERT INTO ' || quote_ident(p_tables[i])
                    || ' (' || cols || ') SELECT ' || cols
                    || ' FROM json_populate_recordset(NULL::' || quote_ident(p_tables[i])
                    || ', $1)';
            EXECUTE 'EXECUTE ' || stmt || '(' || rows_json || ')';
        END;
    END LOOP;
    -- The vectors of the versions written, end to end in one vector (binary on the
    -- wire), inserted under the lock so that vseq follows commit order (ann.py).
    IF cardinality(p_vec_ids) = 1 THEN
        INSERT INTO memory_vectors (id, version, vec)
        VALUES (p_vec_ids[1], p_vec_versions[1], p_vecs);
    ELSE
        INSERT INTO memory_vectors (id, version, vec)
        SELECT p_vec_ids[i], p_vec_versions[i], subvector(p_vecs, (i - 1) * p_dim + 1, p_dim)
        FROM generate_subscripts(p_vec_ids, 1) AS i ORDER BY i;
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
        s := s + 1;
        body := replace(replace(p_bodies[i], p_hole, t::text), p_time_hole, r::text);
        commitment := encode(sha256(p_salts[i] || convert_to(body, 'UTF8')), 'hex');
        envelope := replace(replace(replace(replace(p_envelopes[i], p_seq_holes[i], s::text),
                                            p_hole, t::text), p_time_hole, r::text),
                            p_commit_hole, commitment);
        digest := encode(sha256(decode(prev, 'hex') || convert_to(envelope, 'UTF8')), 'hex');
        INSERT INTO events (seq, tx, kind, namespace, actor, recorded_at, subject_ref,
                            commitment, prev_hash, hash)
        VALUES (s, t, p_kinds[i], p_namespaces[i], p_actors[i], r, p_subjects[i],
                commitment, prev, digest);
        INSERT INTO event_payloads (seq, salt, payload) VALUES (s, p_salts[i], body);
        prev := digest;
    END LOOP;
    UPDATE chain_head SET seq = s, hash = prev, tx = t, recorded_at = r
    WHERE id = 1;
    END IF;
    PERFORM pg_notify(p_channel, s::text);
    o_seq := s;
    o_hash := prev;
    o_tx := t;
    o_recorded_at := r;
    o_config_tx := h.config_tx;
    COMMIT;
    -- The two barriers of storage/postgres/durability.py, as static statements.
    IF p_barrier = 'SELECT CASE WHEN pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() '
                   'THEN pg_logical_emit_message(false, ''engramdb'', '''', true) END' THEN
        IF pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() THEN
            PERFORM pg_logical_emit_message(false, 'engramdb', '', true);
        END IF;
    ELSIF p_barrier = 'SELECT CASE WHEN pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() '
                      'THEN pg_logical_emit_message(true, ''engramdb'', '''') END' THEN
        IF pg_current_wal_insert_lsn() > pg_current_wal_flush_lsn() THEN
            PERFORM pg_logical_emit_message(true, 'engramdb', '');
        END IF;
    ELSIF p_barrier <> '' THEN
        EXECUTE p_barrier;
    END IF;
END
$$;
