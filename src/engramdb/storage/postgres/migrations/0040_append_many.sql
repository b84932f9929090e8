-- EngramDB postgres schema, version 40: engram_append_many, K prepared writes in one call.
-- Append-only: never edit a released migration.
--
-- The write combiner (storage/postgres/combiner.py) gathers the prepared writes of
-- several writer processes and sends them in one call of this procedure: one lock
-- hand-off, one COMMIT and one WAL flush for K writes. Each write is still its own
-- transaction number, events, placeholders and configuration check (exactly what
-- engram_append of version 36 does for one), in order. The rows of all K go in by one
-- statement per table (the server's saving is per statement and per call, not per
-- row); a write refused by a check (its configuration, its token) is answered alone
-- and left out. If a statement fails anyway (a constraint), that attempt is rolled
-- back whole and the writes are applied again one by one, each in a subtransaction
-- of its own (engram_append_one): the one that fails is rolled back alone and
-- answered with its error (SQLSTATE, message, detail); the others commit.
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

-- One write's rows (the tables, rows and columns of engram_append's arguments), the
-- placeholders filled, inserted as engram_append (version 36) inserts them: the
-- memories of a single write by a static statement, any other table or column list by
-- a statement prepared per shape and connection.
CREATE FUNCTION engram_append_rows(p_tables text[], p_rows text[], p_cols text[],
                                   p_hole text, p_time_hole text, p_tx bigint,
                                   p_recorded_at bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    stmt text;
    cols text;
    rows_json text;
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_tables, 1), 0) LOOP
        rows_json := replace(replace(p_rows[i], p_hole, p_tx::text), p_time_hole,
                             p_recorded_at::text);
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
            FROM json_populate_recordset(NULL::memories, rows_json::json);
            CONTINUE;
        END IF;
        rows_json := quote_literal(rows_json);
        stmt := 'engram_ins_' || md5(p_tables[i] || '(' || p_cols[i] || ')');
        BEGIN
            EXECUTE 'EXECUTE ' || stmt || '(' || rows_json || ')';
        EXCEPTION WHEN invalid_sql_statement_name THEN
            SELECT string_agg(quote_ident(c), ', ') INTO cols
            FROM unnest(string_to_array(p_cols[i], ',')) AS c;
            EXECUTE 'PREPARE ' || stmt || '(json) AS INSERT INTO ' || quote_ident(p_tables[i])
                    || ' (' || cols || ') SELECT ' || cols
                    || ' FROM json_populate_recordset(NULL::' || quote_ident(p_tables[i])
                    || ', $1)';
            EXECUTE 'EXECUTE ' || stmt || '(' || rows_json || ')';
        END;
    END LOOP;
END
$$;

-- One write of engram_append_many applied alone (its rows, vectors, events, payloads
-- and token), as engram_append (version 36) applies one: the second attempt of a
-- call runs each write through this in a subtransaction of its own. ``p_seq`` and
-- ``p_prev`` are the chain before it; returns the chain after it.
CREATE FUNCTION engram_append_one(
    p_tables text[], p_rows text[], p_cols text[], p_hole text, p_time_hole text,
    p_commit_hole text, p_tx bigint, p_recorded_at bigint, p_seq bigint, p_prev text,
    p_kinds text[], p_namespaces text[], p_actors text[], p_subjects text[],
    p_envelopes text[], p_seq_holes text[], p_salts bytea[], p_bodies text[],
    p_vec_ids text[], p_vec_versions bigint[], p_vecs vector, p_vec_from integer,
    p_dim integer, p_token text, p_config_tx bigint, OUT o_seq bigint, OUT o_hash text)
LANGUAGE plpgsql AS $$
DECLARE
    body text;
    commitment text;
    envelope text;
BEGIN
    PERFORM engram_append_rows(p_tables, p_rows, p_cols, p_hole, p_time_hole, p_tx,
                               p_recorded_at);
    INSERT INTO memory_vectors (id, version, vec)
    SELECT p_vec_ids[j], p_vec_versions[j],
           subvector(p_vecs, p_vec_from + (j - 1) * p_dim, p_dim)
    FROM generate_subscripts(p_vec_ids, 1) AS j ORDER BY j;
    o_seq := p_seq;
    o_hash := p_prev;
    FOR i IN 1 .. coalesce(array_length(p_kinds, 1), 0) LOOP
        o_seq := o_seq + 1;
        body := replace(replace(p_bodies[i], p_hole, p_tx::text), p_time_hole,
                        p_recorded_at::text);
        commitment := encode(sha256(p_salts[i] || convert_to(body, 'UTF8')), 'hex');
        envelope := replace(replace(replace(replace(p_envelopes[i], p_seq_holes[i],
                                                    o_seq::text),
                                            p_hole, p_tx::text), p_time_hole,
                                    p_recorded_at::text),
                            p_commit_hole, commitment);
        INSERT INTO events (seq, tx, kind, namespace, actor, recorded_at, subject_ref,
                            commitment, prev_hash, hash)
        VALUES (o_seq, p_tx, p_kinds[i], p_namespaces[i], p_actors[i], p_recorded_at,
                p_subjects[i], commitment, o_hash,
                encode(sha256(decode(o_hash, 'hex') || convert_to(envelope, 'UTF8')), 'hex'))
        RETURNING hash INTO o_hash;
        INSERT INTO event_payloads (seq, salt, payload) VALUES (o_seq, p_salts[i], body);
    END LOOP;
    INSERT INTO append_tokens (token, seq, hash, tx, recorded_at, config_tx)
    VALUES (p_token, o_seq, o_hash, p_tx, p_recorded_at, p_config_tx);
END
$$;

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
    n integer := coalesce(array_length(p_tokens, 1), 0);
    seen text[];
    t bigint;          -- the chain as of the last write applied
    r bigint;
    s bigint;
    prev text;
    wt bigint;         -- the write being applied (kept only if it is)
    wr bigint;
    ws bigint;
    wprev text;
    body text;
    commitment text;
    envelope text;
    rows_json text;
    now_us bigint;
    ti integer[];      -- each write's offsets into the flattened arrays
    ei integer[];
    vi integer[];
    vo integer[];
    applied integer;
    fast boolean;
    st text;
    msg text;
    det text;
    m_json text;       -- attempt 1's rows, one statement per table
    v_ids text[];
    v_versions bigint[];
    v_from integer[];
    v_dims integer[];
    e_seq bigint[];
    e_tx bigint[];
    e_kind text[];
    e_ns text[];
    e_actor text[];
    e_rec bigint[];
    e_subject text[];
    e_commit text[];
    e_prev text[];
    e_hash text[];
    e_salt bytea[];
    e_body text[];
    k_token text[];
    k_seq bigint[];
    k_hash text[];
    k_tx bigint[];
    k_rec bigint[];
BEGIN
    IF p_barrier <> '' THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
    PERFORM pg_advisory_xact_lock(7308892986227388721);  -- as engram_append (version 36)
    SELECT * INTO h FROM chain_head WHERE id = 1 FOR UPDATE;
    now_us := (extract(epoch FROM clock_timestamp()) * 1000000)::bigint;
    SELECT coalesce(array_agg(token), '{}') INTO seen FROM append_tokens
    WHERE token = ANY(p_tokens);
    ti := array_fill(0, ARRAY[n + 1]); ei := ti; vi := ti; vo := ti;
    FOR w IN 1 .. n LOOP
        ti[w + 1] := ti[w] + p_n_tables[w];
        ei[w + 1] := ei[w] + p_n_events[w];
        vi[w + 1] := vi[w] + p_n_vecs[w];
        vo[w + 1] := vo[w] + p_n_vecs[w] * p_dims[w];
    END LOOP;
    -- Attempt 1: each write checked and numbered, the rows of all gathered and
    -- inserted by one statement per table. Attempt 2, only if a statement of attempt 1
    -- failed (which rolled attempt 1 back whole): each write in a subtransaction of
    -- its own (engram_append_one), so the one that fails fails alone.
    FOR attempt IN 1 .. 2 LOOP
        t := h.tx; r := h.recorded_at; s := h.seq; prev := h.hash;
        applied := 0;
        fast := true;
        o_seq := '{}'; o_hash := '{}'; o_tx := '{}'; o_recorded_at := '{}';
        o_config_tx := '{}'; o_state := '{}'; o_message := '{}'; o_detail := '{}';
        m_json := ''; v_ids := '{}'; v_versions := '{}'; v_from := '{}'; v_dims := '{}';
        e_seq := '{}'; e_tx := '{}'; e_kind := '{}'; e_ns := '{}'; e_actor := '{}';
        e_rec := '{}'; e_subject := '{}'; e_commit := '{}'; e_prev := '{}'; e_hash := '{}';
        e_salt := '{}'; e_body := '{}';
        k_token := '{}'; k_seq := '{}'; k_hash := '{}'; k_tx := '{}'; k_rec := '{}';
        BEGIN
            FOR w IN 1 .. n LOOP
                st := NULL;
                IF p_tokens[w] = ANY(seen) OR p_tokens[w] = ANY(k_token) THEN
                    -- Applied before (or earlier in this call): answered with its results.
                    SELECT a.seq, a.hash, a.tx, a.recorded_at, a.config_tx INTO k
                    FROM append_tokens a WHERE a.token = p_tokens[w];
                    IF NOT FOUND THEN
                        SELECT k_seq[i] AS seq, k_hash[i] AS hash, k_tx[i] AS tx,
                               k_rec[i] AS recorded_at, h.config_tx AS config_tx INTO k
                        FROM generate_subscripts(k_token, 1) AS i
                        WHERE k_token[i] = p_tokens[w];
                    END IF;
                    o_seq := o_seq || k.seq; o_hash := o_hash || k.hash;
                    o_tx := o_tx || k.tx; o_recorded_at := o_recorded_at || k.recorded_at;
                    o_config_tx := o_config_tx || k.config_tx;
                    o_state := o_state || 'replayed'::text;
                    o_message := o_message || ''::text; o_detail := o_detail || ''::text;
                    CONTINUE;
                ELSIF left(p_tokens[w], 16)::bigint < now_us - 3600000000 THEN
                    st := 'EG003';
                    msg := 'engramdb: a combined write older than an hour';
                    det := '';
                ELSIF h.config_tx <> p_config_tx[w] THEN
                    st := 'EG001';
                    msg := 'engramdb: the configuration changed since this write was prepared';
                    det := h.config_tx::text;
                ELSE
                    wt := t + 1;
                    wr := greatest(p_recorded_at[w], r);
                    ws := s;
                    wprev := prev;
                END IF;
                IF st IS NULL AND attempt = 2 THEN
                    BEGIN
                        SELECT o.o_seq, o.o_hash INTO ws, wprev FROM engram_append_one(
                            p_tables[ti[w] + 1 : ti[w + 1]], p_rows[ti[w] + 1 : ti[w + 1]],
                            p_cols[ti[w] + 1 : ti[w + 1]], p_holes[w], p_time_holes[w],
                            p_commit_holes[w], wt, wr, ws, wprev,
                            p_kinds[ei[w] + 1 : ei[w + 1]],
                            p_namespaces[ei[w] + 1 : ei[w + 1]],
                            p_actors[ei[w] + 1 : ei[w + 1]],
                            p_subjects[ei[w] + 1 : ei[w + 1]],
                            p_envelopes[ei[w] + 1 : ei[w + 1]],
                            p_seq_holes[ei[w] + 1 : ei[w + 1]],
                            p_salts[ei[w] + 1 : ei[w + 1]], p_bodies[ei[w] + 1 : ei[w + 1]],
                            coalesce(p_vec_ids[vi[w] + 1 : vi[w + 1]], '{}'),
                            p_vec_versions[vi[w] + 1 : vi[w + 1]], p_vecs, vo[w] + 1,
                            p_dims[w], p_tokens[w], h.config_tx) AS o;
                        k_token := k_token || p_tokens[w]; k_seq := k_seq || ws;
                        k_hash := k_hash || wprev; k_tx := k_tx || wt; k_rec := k_rec || wr;
                    EXCEPTION WHEN OTHERS THEN
                        GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                                                det = PG_EXCEPTION_DETAIL;
                    END;
                ELSIF st IS NULL THEN  -- attempt 1: gathered, inserted below
                    FOR i IN ti[w] + 1 .. ti[w + 1] LOOP
                        IF p_tables[i] = 'memories' AND p_cols[i] = 'id,version,namespace,'
                                'layer,text,subject,predicate,value,metadata,importance,'
                                'confidence,author,source,session,valid_from,valid_to,tx_from,'
                                'tx_to,recorded_at,status,expires_at,row_tx,words' THEN
                            rows_json := replace(replace(p_rows[i], p_holes[w], wt::text),
                                                 p_time_holes[w], wr::text);
                            m_json := m_json || CASE WHEN m_json = '' THEN '' ELSE ',' END
                                      || substr(rows_json, 2, length(rows_json) - 2);
                        ELSE
                            PERFORM engram_append_rows(ARRAY[p_tables[i]], ARRAY[p_rows[i]],
                                                       ARRAY[p_cols[i]], p_holes[w],
                                                       p_time_holes[w], wt, wr);
                        END IF;
                    END LOOP;
                    FOR j IN 1 .. p_n_vecs[w] LOOP
                        v_ids := v_ids || p_vec_ids[vi[w] + j];
                        v_versions := v_versions || p_vec_versions[vi[w] + j];
                        v_from := v_from || (vo[w] + (j - 1) * p_dims[w] + 1);
                        v_dims := v_dims || p_dims[w];
                    END LOOP;
                    FOR i IN ei[w] + 1 .. ei[w + 1] LOOP
                        ws := ws + 1;
                        body := replace(replace(p_bodies[i], p_holes[w], wt::text),
                                        p_time_holes[w], wr::text);
                        commitment := encode(sha256(p_salts[i] || convert_to(body, 'UTF8')),
                                             'hex');
                        envelope := replace(replace(replace(replace(
                            p_envelopes[i], p_seq_holes[i], ws::text), p_holes[w], wt::text),
                            p_time_holes[w], wr::text), p_commit_holes[w], commitment);
                        e_seq := e_seq || ws; e_tx := e_tx || wt;
                        e_kind := e_kind || p_kinds[i]; e_ns := e_ns || p_namespaces[i];
                        e_actor := e_actor || p_actors[i]; e_rec := e_rec || wr;
                        e_subject := e_subject || p_subjects[i];
                        e_commit := e_commit || commitment; e_prev := e_prev || wprev;
                        e_salt := e_salt || p_salts[i]; e_body := e_body || body;
                        wprev := encode(sha256(decode(wprev, 'hex')
                                               || convert_to(envelope, 'UTF8')), 'hex');
                        e_hash := e_hash || wprev;
                    END LOOP;
                    k_token := k_token || p_tokens[w]; k_seq := k_seq || ws;
                    k_hash := k_hash || wprev; k_tx := k_tx || wt; k_rec := k_rec || wr;
                END IF;
                IF st IS NULL THEN  -- applied: the chain moves on from this write
                    t := wt; r := wr; s := ws; prev := wprev;
                    applied := applied + 1;
                    o_seq := o_seq || s; o_hash := o_hash || prev; o_tx := o_tx || t;
                    o_recorded_at := o_recorded_at || r;
                    o_config_tx := o_config_tx || h.config_tx;
                    o_state := o_state || ''::text; o_message := o_message || ''::text;
                    o_detail := o_detail || ''::text;
                ELSE
                    o_seq := o_seq || 0::bigint; o_hash := o_hash || ''::text;
                    o_tx := o_tx || 0::bigint; o_recorded_at := o_recorded_at || 0::bigint;
                    o_config_tx := o_config_tx || h.config_tx; o_state := o_state || st;
                    o_message := o_message || coalesce(msg, '');
                    o_detail := o_detail || coalesce(det, '');
                END IF;
            END LOOP;
            IF attempt = 1 THEN
                IF m_json <> '' THEN
                    INSERT INTO memories (id, version, namespace, layer, text, subject,
                                          predicate, value, metadata, importance, confidence,
                                          author, source, session, valid_from, valid_to,
                                          tx_from, tx_to, recorded_at, status, expires_at,
                                          row_tx, words)
                    SELECT id, version, namespace, layer, text, subject, predicate, value,
                           metadata, importance, confidence, author, source, session,
                           valid_from, valid_to, tx_from, tx_to, recorded_at, status,
                           expires_at, row_tx, words
                    FROM json_populate_recordset(NULL::memories, ('[' || m_json || ']')::json);
                END IF;
                INSERT INTO memory_vectors (id, version, vec)
                SELECT v_ids[j], v_versions[j], subvector(p_vecs, v_from[j], v_dims[j])
                FROM generate_subscripts(v_ids, 1) AS j ORDER BY j;
                INSERT INTO events (seq, tx, kind, namespace, actor, recorded_at, subject_ref,
                                    commitment, prev_hash, hash)
                SELECT * FROM unnest(e_seq, e_tx, e_kind, e_ns, e_actor, e_rec, e_subject,
                                     e_commit, e_prev, e_hash);
                INSERT INTO event_payloads (seq, salt, payload)
                SELECT * FROM unnest(e_seq, e_salt, e_body);
                INSERT INTO append_tokens (token, seq, hash, tx, recorded_at, config_tx)
                SELECT u.tk, u.sq, u.hs, u.tx, u.rc, h.config_tx
                FROM unnest(k_token, k_seq, k_hash, k_tx, k_rec) AS u(tk, sq, hs, tx, rc);
            END IF;
        EXCEPTION WHEN OTHERS THEN
            IF attempt = 2 THEN
                RAISE;
            END IF;
            fast := false;  -- attempt 1 is rolled back: attempt 2
        END;
        EXIT WHEN fast;
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
