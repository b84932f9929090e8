-- EngramDB SQLite schema, version 3: decision staleness and read-audit indexes.
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.

-- The transaction that first closed (or erased) a version the decision rests on;
-- NULL while its basis is current. Set by a logged `decision.stale` event.
ALTER TABLE decisions ADD COLUMN stale_tx INTEGER;
CREATE INDEX decisions_namespace ON decisions (namespace);

-- The basis of each decision, one row per memory version, so that a write that
-- closes version (id, v) finds the decisions resting on it by index.
CREATE TABLE decision_basis (
    decision_id TEXT    NOT NULL,
    memory_id   TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (decision_id, memory_id, version)
);
CREATE INDEX decision_basis_memory ON decision_basis (memory_id, version);

-- Each memory version a recorded read returned, so `who_read` is an index lookup.
CREATE TABLE read_items (
    read_id   TEXT    NOT NULL,
    memory_id TEXT    NOT NULL,
    version   INTEGER NOT NULL,
    PRIMARY KEY (read_id, memory_id, version)
);
CREATE INDEX read_items_memory ON read_items (memory_id, version);
