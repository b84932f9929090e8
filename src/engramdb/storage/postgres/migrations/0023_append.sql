-- EngramDB postgres schema, version 23: one-call appends and the configuration epoch.
-- Append-only: never edit a released migration.
--
-- chain_head.config_tx: the transaction of the last change to a configuration
-- table (principals, grants, predicate schemas, namespace settings, lifecycle
-- policies, legal holds; storage/schema.py CONFIG_TABLES), set in the same
-- commit by every write that changes one. Writers keep those rows in memory
-- while it has not moved.
ALTER TABLE chain_head ADD COLUMN config_tx BIGINT NOT NULL DEFAULT 0;

-- engram_append: a whole write prepared by the client before the chain lock,
-- applied by one CALL (storage/postgres/prepared.py), which takes the chain-head
-- lock, writes, and COMMITs: the lock is held only while the server runs it,
-- never across a round trip to the client. Called outside a transaction block
-- (autocommit), so it may commit; after COMMIT it runs p_barrier, the durability
-- barrier of early lock release (storage/postgres/durability.py), when given.
--
-- The client built every row, payload and envelope with placeholders for what
-- only the lock decides, each the decimal digits of a random 18-digit number:
-- p_hole stands for this transaction's number `tx` and p_time_hole for its
-- `recorded_at` wherever they occur (state rows, payloads, envelopes);
-- p_seq_holes[i] for the i-th event's `seq`; p_commit_hole (a random hex string
-- inside the envelope's "commitment" string) for its commitment. recorded_at
-- is the client's clock reading p_recorded_at, or the head's if that is later:
-- transaction time never goes backwards. The texts are the canonical JSON the
-- engine hashes (codec.canonical), so replacing a number's digits by other
-- digits keeps them canonical, and the hashes computed here are the ones
-- `verify` recomputes:
--   commitment = sha256(salt || payload), hash = sha256(prev_hash || envelope).
--
-- It refuses (nothing written, retryable by the client) when the configuration
-- the client read has changed since (SQLSTATE EG001, detail: the current
-- config_tx).
CREATE PROCEDURE engram_append(
    p_config_tx bigint, p_recorded_at bigint, p_hole text, p_time_hole text,
    p_tables text[], p_rows text[],
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
    cols text;
BEGIN
    IF p_barrier <> '' THEN
        -- Early lock release: the COMMIT below returns (and lets the lock go) once its
        -- record is in the WAL buffers; the barrier after it waits for the flush.
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    SELECT * INTO h FROM chain_head WHERE id = 1 FOR UPDATE;
    IF h.config_tx <> p_config_tx THEN
        RAISE EXCEPTION 'engramdb: the configuration changed since this write was prepared'
            USING ERRCODE = 'EG001', DETAIL = h.config_tx::text;
    END IF;
    t := h.tx + 1;
    r := greatest(p_recorded_at, h.recorded_at);
    s := h.seq;
    prev := h.hash;
    FOR i IN 1 .. coalesce(array_length(p_tables, 1), 0) LOOP
        -- Column names come from the first row's keys, quoted; values are typed by
        -- the table's own columns (json_populate_recordset).
        SELECT string_agg(quote_ident(k), ', ') INTO cols
        FROM json_object_keys((p_rows[i])::json -> 0) AS k;
        EXECUTE 'INSERT INTO ' || quote_ident(p_tables[i]) || ' (' || cols || ') SELECT '
                || cols || ' FROM json_populate_recordset(NULL::' || quote_ident(p_tables[i])
                || ', $1)'
            USING replace(replace(p_rows[i], p_hole, t::text), p_time_hole, r::text)::json;
    END LOOP;
    -- The vectors of the versions written, end to end in one vector (binary on the
    -- wire), inserted under the lock so that vseq follows commit order (ann.py).
    INSERT INTO memory_vectors (id, version, vec)
    SELECT p_vec_ids[i], p_vec_versions[i], subvector(p_vecs, (i - 1) * p_dim + 1, p_dim)
    FROM generate_subscripts(p_vec_ids, 1) AS i ORDER BY i;
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
    PERFORM pg_notify(p_channel, s::text);
    o_seq := s;
    o_hash := prev;
    o_tx := t;
    o_recorded_at := r;
    o_config_tx := h.config_tx;
    COMMIT;
    IF p_barrier <> '' THEN
        EXECUTE p_barrier;
    END IF;
END
$$;
