-- EngramDB SQLite schema, version 1. Append-only: never edit a released migration.
-- State tables mirror engramdb/storage/schema.py; times are integer microseconds (UTC).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The log: one row per event, hash-chained. The chain covers `commitment`,
-- a salted hash of the payload, never the payload itself (erasure-safe).
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    tx          INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    namespace   TEXT,
    actor       TEXT    NOT NULL,
    recorded_at INTEGER NOT NULL,
    subject_ref TEXT,
    commitment  TEXT    NOT NULL,
    prev_hash   TEXT    NOT NULL,
    hash        TEXT    NOT NULL
);
CREATE INDEX events_tx ON events (tx);
CREATE INDEX events_recorded_at ON events (recorded_at);
CREATE INDEX events_subject_ref ON events (subject_ref);

CREATE TABLE event_payloads (
    seq     INTEGER PRIMARY KEY,
    salt    BLOB,
    payload TEXT
);

-- The single lock point of the audit chain; updated by every write transaction.
CREATE TABLE chain_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    seq         INTEGER NOT NULL,
    hash        TEXT    NOT NULL,
    tx          INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
);
INSERT INTO chain_head (id, seq, hash, tx, recorded_at)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', 0, 0);

CREATE TABLE memories (
    row_id      INTEGER PRIMARY KEY,
    id          TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    namespace   TEXT    NOT NULL,
    layer       TEXT    NOT NULL,
    text        TEXT    NOT NULL,
    subject     TEXT,
    predicate   TEXT,
    value       TEXT,
    metadata    TEXT    NOT NULL DEFAULT '{}',
    importance  REAL    NOT NULL,
    confidence  REAL    NOT NULL,
    author      TEXT    NOT NULL,
    source      TEXT,
    session     TEXT,
    valid_from  INTEGER NOT NULL,
    valid_to    INTEGER,
    tx_from     INTEGER NOT NULL,
    tx_to       INTEGER,
    recorded_at INTEGER NOT NULL,
    status      TEXT    NOT NULL,
    expires_at  INTEGER,
    row_tx      INTEGER NOT NULL,
    UNIQUE (id, version)
);
CREATE INDEX memories_current ON memories (namespace, layer) WHERE tx_to IS NULL;
CREATE UNIQUE INDEX memories_one_current ON memories (id) WHERE tx_to IS NULL;
CREATE INDEX memories_tx ON memories (tx_from, tx_to);
CREATE INDEX memories_row_tx ON memories (row_tx);
CREATE INDEX memories_assertion ON memories (subject, predicate) WHERE subject IS NOT NULL;
CREATE INDEX memories_namespace ON memories (namespace);
CREATE INDEX memories_session ON memories (session) WHERE session IS NOT NULL;

-- Full-text index: a projection of memories.text kept by triggers.
CREATE VIRTUAL TABLE memories_fts USING fts5 (
    text, content = 'memories', content_rowid = 'row_id', tokenize = 'porter unicode61'
);
CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text) VALUES (new.row_id, new.text);
END;
CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.row_id, old.text);
END;
CREATE TRIGGER memories_fts_au AFTER UPDATE OF text ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text) VALUES ('delete', old.row_id, old.text);
    INSERT INTO memories_fts (rowid, text) VALUES (new.row_id, new.text);
END;

-- Embeddings: a derived index (rebuildable by re-embedding), float32 little-endian.
CREATE TABLE memory_vectors (
    id      TEXT    NOT NULL,
    version INTEGER NOT NULL,
    vec     BLOB    NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE principals (
    name       TEXT PRIMARY KEY,
    kind       TEXT    NOT NULL,
    roles      TEXT    NOT NULL DEFAULT '[]',
    trust      REAL    NOT NULL,
    status     TEXT    NOT NULL,
    created_tx INTEGER NOT NULL,
    metadata   TEXT    NOT NULL DEFAULT '{}'
);

CREATE TABLE api_keys (
    key_id      TEXT PRIMARY KEY,
    principal   TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    created_tx  INTEGER NOT NULL,
    revoked_tx  INTEGER,
    expires_at  INTEGER
);
CREATE INDEX api_keys_principal ON api_keys (principal);

CREATE TABLE grants (
    id         TEXT PRIMARY KEY,
    grantee    TEXT    NOT NULL,
    pattern    TEXT    NOT NULL,
    actions    TEXT    NOT NULL,
    granted_by TEXT    NOT NULL,
    tx_from    INTEGER NOT NULL,
    tx_to      INTEGER
);
CREATE INDEX grants_grantee ON grants (grantee);

CREATE TABLE idempotency (
    principal    TEXT NOT NULL,
    key          TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    result       TEXT NOT NULL,
    tx           INTEGER NOT NULL,
    PRIMARY KEY (principal, key)
);

CREATE TABLE conflicts (
    id          TEXT PRIMARY KEY,
    kind        TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    subject     TEXT,
    predicate   TEXT,
    memories    TEXT    NOT NULL,
    detector    TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    policy      TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    winner      TEXT,
    resolution  TEXT,
    resolved_by TEXT,
    tx          INTEGER NOT NULL,
    resolved_tx INTEGER
);
CREATE INDEX conflicts_namespace ON conflicts (namespace, status);

CREATE TABLE decisions (
    id          TEXT PRIMARY KEY,
    principal   TEXT    NOT NULL,
    namespace   TEXT,
    description TEXT    NOT NULL,
    basis       TEXT    NOT NULL,
    outcome     TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    tx          INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX decisions_principal ON decisions (principal);

CREATE TABLE predicate_schemas (
    id          TEXT PRIMARY KEY,
    pattern     TEXT    NOT NULL,
    predicate   TEXT    NOT NULL,
    cardinality TEXT    NOT NULL,
    value_type  TEXT,
    merge       TEXT,
    policy      TEXT    NOT NULL,
    tx_from     INTEGER NOT NULL,
    tx_to       INTEGER
);

CREATE TABLE namespace_settings (
    pattern  TEXT PRIMARY KEY,
    settings TEXT    NOT NULL,
    tx       INTEGER NOT NULL
);

CREATE TABLE reads (
    id           TEXT PRIMARY KEY,
    principal    TEXT    NOT NULL,
    tx           INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    query_digest TEXT,
    items        TEXT    NOT NULL,
    namespaces   TEXT    NOT NULL
);
CREATE INDEX reads_principal ON reads (principal, tx);
