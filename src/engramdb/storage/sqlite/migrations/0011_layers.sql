-- EngramDB sqlite schema, version 11: the memory layers (issue 11).
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- Working blocks, episodes, summaries and procedures are memories rows (layer
-- working / episodic / procedural); these tables hold what is not a memory.

-- Episodes by session and by agent over time, answered by index.
CREATE INDEX memories_session_time ON memories (session, valid_from);
CREATE INDEX memories_author_layer_time ON memories (author, layer, valid_from);

-- One row per tool call outcome an agent reported. Agent-written text lives in
-- error and metadata: erasure must cover this table.
CREATE TABLE tool_outcomes (
    id          TEXT PRIMARY KEY,
    principal   TEXT    NOT NULL,
    namespace   TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    ok          INTEGER NOT NULL,
    latency_ms  REAL,
    error       TEXT,
    metadata    TEXT    NOT NULL,
    tx          INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX tool_outcomes_tool ON tool_outcomes (tool, recorded_at);
CREATE INDEX tool_outcomes_principal ON tool_outcomes (principal, recorded_at);

-- One row per reported use of a procedure version (success or failure).
CREATE TABLE procedure_outcomes (
    id           TEXT PRIMARY KEY,
    principal    TEXT    NOT NULL,
    namespace    TEXT    NOT NULL,
    procedure_id TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    ok           INTEGER NOT NULL,
    tx           INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL
);
CREATE INDEX procedure_outcomes_procedure ON procedure_outcomes (procedure_id, version);

-- derivations (what a summary or extracted fact was made from) is created by 0010.
