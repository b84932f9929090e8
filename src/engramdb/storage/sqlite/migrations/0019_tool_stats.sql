-- EngramDB sqlite schema, version 19: tool statistics kept as an aggregate (issue 11).
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- One row per (namespace, agent, tool, kind, label), changed in the same transaction
-- (and the same log event) as the outcomes it counts: kind 'total' (label ''),
-- 'latency' (label: the latency rounded to 3 significant digits) and 'error'
-- (label: the error text; agent-written, so erasure must cover this table).
-- The engine fills it for outcomes recorded before this version with one logged
-- event when the database is opened (engine/layers/procedures.py).
CREATE TABLE tool_stats (
    namespace   TEXT    NOT NULL,
    principal   TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    calls       INTEGER NOT NULL,
    successes   INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    tx          INTEGER NOT NULL,
    PRIMARY KEY (namespace, principal, tool, kind, label)
);
CREATE INDEX tool_stats_tool ON tool_stats (tool, kind);

-- The newest outcomes of one agent's tool in one namespace (the recency window).
CREATE INDEX tool_outcomes_group ON tool_outcomes (tool, namespace, principal, recorded_at);
