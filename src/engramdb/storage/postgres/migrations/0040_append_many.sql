-- EngramDB postgres schema, version 40: engram_append_many, K prepared writes in one call.
-- Append-only: never edit a released migration.
--
-- The write combiner (storage/postgres/combiner.py) gathers the prepared writes of
-- several writer processes and sends them in one call of this procedure: one lock
-- hand-off, one COMMIT and one WAL flush for K writes. Each write is still its own
-- transaction number, events, placeholders and configuration check (exactly what
-- engram_append of version 36 does for one), applied in order, each in its own
-- subtransaction: one that fails is rolled back alone and answered with its error
-- (SQLSTATE, message, detail); the others commit.
--
-- Each write carries a token, '<16-digit client clock in microseconds>-<32 hex>',
-- recorded in append_tokens with the write's results in the same transaction. The
-- token is the rule for a lost answer: a write whose answer did not come back (its
-- leader died or was slow) is sent again with the same token, and since the check
-- runs under the chain lock, exactly one of the two applies it and the other is
-- answered with the original results ('replayed'). A token is applied only while it
-- is less than an hour old by the server's clock (else 'EG003': refused, never
-- applied by any call) and kept two hours, so no token is forgotten while a call
-- holding it could still apply it.
CREATE TABLE append_tokens (
    token text PRIMARY KEY,
    seq bigint NOT NULL,
    hash text NOT NULL,
    tx bigint NOT NULL,
    recorded_at bigint NOT NULL,
    config_tx bigint NOT NULL
);

CREATE PROCEDURE engram_append_many(
    p_tokens text[], p_config_tx bigint[], p_recorded_at bigint[], p_holes text[],
    p_time_holes text[], p_commit_holes text[],
    p_n_tables integer[], p_tables text[], p_rows text[], p_cols text[],
    p_n_events integer[], p_kinds text[], p_namespaces text[], p_actors text[],
    p_subjects text[], p_envelopes text[], p_seq_holes text[], p_salts bytea[],
    p_bodies text[],
    p_n_vecs integer[], p_vec_ids text[], p_vec_versions bigint[], p_vecs vector,
    p_dims integer[],
    p_barrier text, p_channel text,
    INOUT o_seq bigint[], INOUT o_hash text[], INOUT o_tx bigint[],
    INOUT o_recorded_at bigint[], INOUT o_config_tx bigint[], INOUT o_state text[],
    INOUT o_message text[], INOUT o_detail text[])
LANGUAGE plpgsql AS $$
DECLARE
    h record;
    k record;
    t bigint;          -- the chain as of the last write applied
    r bigint;
    s bigint;
    prev text;
    wt bigint;         -- the write being applied (kept only if it commits)
    wr bigint;
    ws bigint;
    wprev text;
    body text;
    commitment text;
    envelope text;
    digest text;
    stmt text;
    cols text;
    rows_json text;
    now_us bigint;
    ti integer := 0;   -- offsets into the flattened arrays
    ei integer := 0;
    vi integer := 0;
    vo integer := 0;   -- offset into p_vecs, in elements
    applied integer := 0;
    st text;
    msg text;
    det text;
BEGIN
    IF p_barrier <> '' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    PERFORM pg_advisory_xact_lock(7308892986227388721);  -- as engram_append (version 36)
    SELECT * INTO h FROM chain_head WHERE id = 1 FOR UPDATE;
    t := h.tx;
    r := h.recorded_at;
    s := h.seq;
    prev := h.hash;
    now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    o_seq := '{}'; o_hash := '{}'; o_tx := '{}'; o_recorded_at := '{}'; o_config_tx := '{}';
    o_state := '{}'; o_message := '{}'; o_detail := '{}';
    FOR w IN 1 .. coalesce(array_length(p_tokens, 1), 0) LOOP
        SELECT * INTO k FROM append_tokens WHERE token = p_tokens[w];
        IF FOUND THEN
            o_seq := o_seq || k.seq; o_hash := o_hash || k.hash; o_tx := o_tx || k.tx;
            o_recorded_at := o_recorded_at || k.recorded_at;
            o_config_tx := o_config_tx || k.config_tx;
            o_state := o_state || 'replayed'::text; o_message := o_message || ''::text;
            o_detail := o_detail || ''::text;
        ELSIF left(p_tokens[w], 16)::bigint < now_us - 3600000000 THEN
            o_seq := o_seq || 0::bigint; o_hash := o_hash || ''::text;
            o_tx := o_tx || 0::bigint; o_recorded_at := o_recorded_at || 0::bigint;
            o_config_tx := o_config_tx || h.config_tx;
            o_state := o_state || 'EG003'::text;
            o_message := o_message || 'engramdb: a combined write older than an hour'::text;
            o_detail := o_detail || ''::text;
        ELSE
            BEGIN
                IF h.config_tx <> p_config_tx[w] THEN
                    RAISE EXCEPTION 'engramdb: the configuration changed since this write was prepared'
                        USING ERRCODE = 'EG001', DETAIL = h.config_tx::text;
                END IF;
                wt := t + 1;
                wr := greatest(p_recorded_at[w], r);
                ws := s;
                wprev := prev;
                FOR i IN ti + 1 .. ti + p_n_tables[w] LOOP
                    IF p_tables[i] = 'memories' AND p_cols[i] = 'id,version,namespace,layer,text,'
                            'subject,predicate,value,metadata,importance,confidence,author,source,'
                            'session,valid_from,valid_to,tx_from,tx_to,recorded_at,status,'
                            'expires_at,row_tx,words' THEN
                        INSERT INTO memories (id, version, namespace, layer, text, subject,
                                              predicate, value, metadata, importance, confidence,
                                              author, source, session, valid_from, valid_to,
                                              tx_from, tx_to, recorded_at, status, expires_at,
                                              row_tx, words)
                        SELECT id, version, namespace, layer, text, subject, predicate, value,
                               metadata, importance, confidence, author, source, session,
                               valid_from, valid_to, tx_from, tx_to, recorded_at, status,
                               expires_at, row_tx, words
                        FROM json_populate_recordset(NULL::memories,
                            replace(replace(p_rows[i], p_holes[w], wt::text), p_time_holes[w],
                                    wr::text)::json);
                        CONTINUE;
                    END IF;
                    rows_json := quote_literal(replace(replace(p_rows[i], p_holes[w], wt::text),
                                                       p_time_holes[w], wr::text));
                    stmt := 'engram_ins_' || md5(p_tables[i] || '(' || p_cols[i] || ')');
                    BEGIN
                        EXECUTE 'EXECUTE ' || stmt || '(' || rows_json || ')';
                    EXCEPTION WHEN invalid_sql_statement_name THEN
                        SELECT string_agg(quote_ident(c), ', ') INTO cols
                        FROM unnest(string_to_array(p_cols[i], ',')) AS c;
                        EXECUTE 'PREPARE ' || stmt || '(json) AS INSERT INTO '
                                || quote_ident(p_tables[i]) || ' (' || cols || ') SELECT '
                                || cols || ' FROM json_populate_recordset(NULL::'
                                || quote_ident(p_tables[i]) || ', $1)';
                        EXECUTE 'EXECUTE ' || stmt || '(' || rows_json || ')';
                    END;
                END LOOP;
                IF p_n_vecs[w] > 0 THEN
                    INSERT INTO memory_vectors (id, version, vec)
                    SELECT p_vec_ids[vi + j], p_vec_versions[vi + j],
                           subvector(p_vecs, vo + (j - 1) * p_dims[w] + 1, p_dims[w])
                    FROM generate_series(1, p_n_vecs[w]) AS j ORDER BY j;
                END IF;
                FOR i IN ei + 1 .. ei + p_n_events[w] LOOP
                    ws := ws + 1;
                    body := replace(replace(p_bodies[i], p_holes[w], wt::text), p_time_holes[w],
                                    wr::text);
                    commitment := encode(sha256(p_salts[i] || convert_to(body, 'UTF8')), 'hex');
                    envelope := replace(replace(replace(replace(p_envelopes[i], p_seq_holes[i],
                                                                ws::text),
                                                        p_holes[w], wt::text),
                                                p_time_holes[w], wr::text),
                                        p_commit_holes[w], commitment);
                    digest := encode(sha256(decode(wprev, 'hex') || convert_to(envelope, 'UTF8')),
                                     'hex');
                    INSERT INTO events (seq, tx, kind, namespace, actor, recorded_at, subject_ref,
                                        commitment, prev_hash, hash)
                    VALUES (ws, wt, p_kinds[i], p_namespaces[i], p_actors[i], wr, p_subjects[i],
                            commitment, wprev, digest);
                    INSERT INTO event_payloads (seq, salt, payload) VALUES (ws, p_salts[i], body);
                    wprev := digest;
                END LOOP;
                INSERT INTO append_tokens (token, seq, hash, tx, recorded_at, config_tx)
                VALUES (p_tokens[w], ws, wprev, wt, wr, h.config_tx);
                -- Applied: the chain moves on from this write.
                t := wt; r := wr; s := ws; prev := wprev;
                applied := applied + 1;
                o_seq := o_seq || s; o_hash := o_hash || prev; o_tx := o_tx || t;
                o_recorded_at := o_recorded_at || r; o_config_tx := o_config_tx || h.config_tx;
                o_state := o_state || ''::text; o_message := o_message || ''::text;
                o_detail := o_detail || ''::text;
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                                        det = PG_EXCEPTION_DETAIL;
                o_seq := o_seq || 0::bigint; o_hash := o_hash || ''::text;
                o_tx := o_tx || 0::bigint; o_recorded_at := o_recorded_at || 0::bigint;
                o_config_tx := o_config_tx || h.config_tx; o_state := o_state || st;
                o_message := o_message || coalesce(msg, ''); o_detail := o_detail || coalesce(det, '');
            END;
        END IF;
        ti := ti + p_n_tables[w];
        ei := ei + p_n_events[w];
        vi := vi + p_n_vecs[w];
        vo := vo + p_n_vecs[w] * p_dims[w];
    END LOOP;
    IF applied > 0 THEN
        UPDATE chain_head SET seq = s, hash = prev, tx = t, recorded_at = r WHERE id = 1;
        PERFORM pg_notify(p_channel, s::text);
        IF t / 512 > h.tx / 512 THEN  -- now and then: forget tokens no call may still hold
            DELETE FROM append_tokens
            WHERE token < lpad((now_us - 7200000000)::text, 16, '0');
        END IF;
    END IF;
    COMMIT;
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
