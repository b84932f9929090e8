-- EngramDB PostgreSQL schema, version 1. Append-only: never edit a released migration.
-- Mirrors storage/sqlite/migrations/0001_core.sql column for column (and
-- engramdb/storage/schema.py): times are BIGINT microseconds (UTC), JSON columns
-- hold canonical JSON text, exactly as SQLite stores them, so both backends return
-- byte-identical rows and logs.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The log: one row per event, hash-chained. The chain covers `commitment`,
-- a salted hash of the payload, never the payload itself (erasure-safe).
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY,
    tx          BIGINT NOT NULL,
    kind        TEXT   NOT NULL,
    namespace   TEXT,
    actor       TEXT   NOT NULL,
    recorded_at BIGINT NOT NULL,
    subject_ref TEXT,
    commitment  TEXT   NOT NULL,
    prev_hash   TEXT   NOT NULL,
    hash        TEXT   NOT NULL
);
CREATE INDEX events_tx ON events (tx);
CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_subject_ref ON events (subject_ref);

CREATE TABLE event_payloads (
    seq     BIGINT PRIMARY KEY,
    salt    BYTEA,
    payload TEXT
);

-- The single lock point of the audit chain: every write transaction starts with
-- SELECT ... FOR UPDATE on this row and ends by updating it.
CREATE TABLE chain_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         BIGINT NOT NULL,
    hash        TEXT   NOT NULL,
    tx          BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
INSERT INTO chain_head (id, seq, hash, tx, recorded_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, 0);

CREATE TABLE memories (
    row_id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    namespace   TEXT   NOT NULL,
    layer       TEXT   NOT NULL,
    text        TEXT   NOT NULL,
    subject     TEXT,
    predicate   TEXT,
    value       TEXT,
    metadata    TEXT   NOT NULL DEFAULT '{}',
    importance  DOUBLE PRECISION NOT NULL,
    confidence  DOUBLE PRECISION NOT NULL,
    author      TEXT   NOT NULL,
    source      TEXT,
    session     TEXT,
    valid_from  BIGINT NOT NULL,
    valid_to    BIGINT,
    tx_from     BIGINT NOT NULL,
    tx_to       BIGINT,
    recorded_at BIGINT NOT NULL,
    status      TEXT   NOT NULL,
    expires_at  BIGINT,
    row_tx      BIGINT NOT NULL,
    -- Full-text index: a projection of `text`, kept by PostgreSQL itself.
    tsv         TSVECTOR GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
    UNIQUE (id, version)
);
CREATE INDEX memories_current ON memories (namespace, layer) WHERE tx_to IS NULL;
CREATE UNIQUE INDEX memories_one_current ON memories (id) WHERE tx_to IS NULL;
CREATE INDEX memories_tx ON memories (tx_from, tx_to);
CREATE INDEX memories_row_tx ON memories (row_tx);
CREATE INDEX memories_assertion ON memories (subject, predicate) WHERE subject IS NOT NULL;
CREATE INDEX memories_namespace ON memories (namespace);
CREATE INDEX memories_session ON memories (session) WHERE session IS NOT NULL;
CREATE INDEX memories_fts ON memories USING gin (tsv);

-- Embeddings: a derived index (rebuildable by re-embedding). `vec` gets its
-- dimension, vector(N), once the embedder is known (at setup from meta 'embedder',
-- or with the first stored vector). `vseq` numbers every write of a vector in
-- commit order (writers hold the chain lock), so the ANN projection below can
-- follow this table with a watermark.
CREATE SEQUENCE memory_vectors_vseq;
CREATE TABLE memory_vectors (
    id      TEXT   NOT NULL,
    version BIGINT NOT NULL,
    vec     vector NOT NULL,
    vseq    BIGINT NOT NULL DEFAULT nextval('memory_vectors_vseq'),
    PRIMARY KEY (id, version)
);
CREATE INDEX memory_vectors_vseq_idx ON memory_vectors (vseq);

-- The approximate-nearest-neighbour projection of memory_vectors: the rows with
-- vseq <= vector_index_state.vseq, under an HNSW index (storage/postgres/ann.py
-- fills it in the background, so a write never waits for graph insertion).
-- Searches read this table through the index plus the few newer rows of
-- memory_vectors exactly, in one snapshot.
CREATE TABLE memory_vectors_ann (
    id      TEXT   NOT NULL,
    version BIGINT NOT NULL,
    vec     vector NOT NULL,
    PRIMARY KEY (id, version)
);
CREATE TABLE vector_index_state (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    vseq BIGINT NOT NULL
);
INSERT INTO vector_index_state (id, vseq) VALUES (1, 0);

-- Whatever removes or replaces a vector (erasure, a re-embedding) removes its
-- ANN copy in the same transaction; the indexer copies the new one later.
CREATE FUNCTION engram_forget_ann_vector() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM memory_vectors_ann WHERE id = OLD.id AND version = OLD.version;
    RETURN NULL;
END
$$;
CREATE TRIGGER memory_vectors_forget_ann AFTER DELETE OR UPDATE ON memory_vectors
    FOR EACH ROW EXECUTE FUNCTION engram_forget_ann_vector();

CREATE TABLE principals (
    name       TEXT PRIMARY KEY,
    kind       TEXT   NOT NULL,
    roles      TEXT   NOT NULL DEFAULT '[]',
    trust      DOUBLE PRECISION NOT NULL,
    status     TEXT   NOT NULL,
    created_tx BIGINT NOT NULL,
    metadata   TEXT   NOT NULL DEFAULT '{}'
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    principal   TEXT   NOT NULL,
    secret_hash TEXT   NOT NULL,
    created_tx  BIGINT NOT NULL,
    revoked_tx  BIGINT,
    expires_at  BIGINT
);
CREATE INDEX api_keys_principal ON api_keys (principal);

CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    grantee    TEXT   NOT NULL,
    pattern    TEXT   NOT NULL,
    actions    TEXT   NOT NULL,
    granted_by TEXT   NOT NULL,
    tx_from    BIGINT NOT NULL,
    tx_to      BIGINT
);
CREATE INDEX grants_grantee ON grants (grantee);

CREATE TABLE idempotency (
    principal    TEXT   NOT NULL,
    key          TEXT   NOT NULL,
    request_hash TEXT   NOT NULL,
    result       TEXT   NOT NULL,
    tx           BIGINT NOT NULL,
    PRIMARY KEY (principal, key)
);

CREATE TABLE conflicts (
    id          TEXT PRIMARY KEY,
    kind        TEXT   NOT NULL,
    namespace   TEXT   NOT NULL,
    subject     TEXT,
    predicate   TEXT,
    memories    TEXT   NOT NULL,
    detector    TEXT   NOT NULL,
    reason      TEXT   NOT NULL,
    policy      TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    status      TEXT   NOT NULL,
    winner      TEXT,
    resolution  TEXT,
    resolved_by TEXT,
    tx          BIGINT NOT NULL,
    resolved_tx BIGINT
);
CREATE INDEX conflicts_namespace ON conflicts (namespace, status);

CREATE TABLE decisions (
    id          TEXT PRIMARY KEY,
    principal   TEXT   NOT NULL,
    namespace   TEXT,
    description TEXT   NOT NULL,
    basis       TEXT   NOT NULL,
    outcome     TEXT   NOT NULL,
    metadata    TEXT   NOT NULL,
    tx          BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX decisions_principal ON decisions (principal);

CREATE TABLE predicate_schemas (
    id          TEXT PRIMARY KEY,
    pattern     TEXT   NOT NULL,
    predicate   TEXT   NOT NULL,
    cardinality TEXT   NOT NULL,
    value_type  TEXT,
    merge       TEXT,
    policy      TEXT   NOT NULL,
    tx_from     BIGINT NOT NULL,
    tx_to       BIGINT
);

CREATE TABLE namespace_settings (
    pattern  TEXT PRIMARY KEY,
    settings TEXT   NOT NULL,
    tx       BIGINT NOT NULL
);

CREATE TABLE reads (
    id           TEXT PRIMARY KEY,
    principal    TEXT   NOT NULL,
    tx           BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL,
    query_digest TEXT,
    items        TEXT   NOT NULL,
    namespaces   TEXT   NOT NULL
);
CREATE INDEX reads_principal ON reads (principal, tx);
