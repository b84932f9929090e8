-- EngramDB PostgreSQL schema, version 10: lifecycle policies, legal holds, usage
-- (decay reinforcement), erasure records and derivations.
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.

-- Lifecycle policy per namespace glob and layer ('*' = every layer).
CREATE TABLE lifecycle_policies (
    pattern  TEXT    NOT NULL,
    layer    TEXT    NOT NULL,
    settings TEXT    NOT NULL,
    tx       BIGINT NOT NULL,
    -- Decay has been evaluated for memories last used up to this time (micros).
    checked_to BIGINT,
    PRIMARY KEY (pattern, layer)
);

CREATE TABLE legal_holds (
    pattern TEXT PRIMARY KEY,
    active  BIGINT  NOT NULL,
    reason  TEXT    NOT NULL,
    set_by  TEXT    NOT NULL,
    tx      BIGINT NOT NULL
);

-- Reinforcement of a memory's decayed relevance by recall and decisions, written
-- in batches (engine/lifecycle.py), never one write per read.
CREATE TABLE memory_usage (
    id        TEXT PRIMARY KEY,
    uses      BIGINT NOT NULL,
    last_used BIGINT NOT NULL,
    tx        BIGINT NOT NULL
);

-- One row per erasure, and one per memory version and per event it erased:
-- the skeleton that lets `verify` accept a payload-less event.
CREATE TABLE erasures (
    id        TEXT PRIMARY KEY,
    actor     TEXT    NOT NULL,
    selector  TEXT    NOT NULL,
    reason    TEXT    NOT NULL,
    receipt   TEXT    NOT NULL,
    tx        BIGINT NOT NULL
);
CREATE TABLE erased_versions (
    memory_id  TEXT    NOT NULL,
    version    BIGINT NOT NULL,
    erasure_id TEXT    NOT NULL,
    tx         BIGINT NOT NULL,
    PRIMARY KEY (memory_id, version)
);
CREATE INDEX erased_versions_tx ON erased_versions (tx);
CREATE TABLE erased_events (
    seq        BIGINT PRIMARY KEY,
    erasure_id TEXT    NOT NULL,
    tx         BIGINT NOT NULL,
    effects    TEXT    NOT NULL
);

-- Derived memories (summaries, extractions, CRDT merges) and the versions they
-- were derived from; shared contract with the layers work (0011 creates the same).
CREATE TABLE IF NOT EXISTS derivations (
    derived_id      TEXT    NOT NULL,
    derived_version BIGINT NOT NULL,
    source_id       TEXT    NOT NULL,
    source_version  BIGINT NOT NULL,
    kind            TEXT    NOT NULL,
    tx              BIGINT NOT NULL,
    PRIMARY KEY (derived_id, source_id)
);
CREATE INDEX IF NOT EXISTS derivations_source ON derivations (source_id);

-- Maintenance finds what is due by index, not by scanning the table.
CREATE INDEX memories_expiry ON memories (expires_at) WHERE tx_to IS NULL AND expires_at IS NOT NULL;
CREATE INDEX memories_current_recorded ON memories (recorded_at) WHERE tx_to IS NULL;
CREATE INDEX memories_author ON memories (author);
