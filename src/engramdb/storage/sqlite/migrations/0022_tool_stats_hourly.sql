-- EngramDB sqlite schema, version 22: tool statistics per clock hour (issue 11).
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- The counts of tool_stats (0019) again, one row per (namespace, agent, tool, hour,
-- kind, label); hour is the UTC clock hour's first microsecond. Changed in the same
-- transaction and log event as the outcomes it counts, so tool_stats(since=T) adds
-- up the whole hours after T and reads only T's own hour from tool_outcomes (by the
-- tool_outcomes_group index). Error labels are agent-written text: erasure renames
-- them here as in tool_stats. Outcomes recorded before this version are counted
-- once, by one logged event, when the database is opened (engine/layers/procedures.py).
CREATE TABLE tool_stats_hourly (
    namespace   TEXT    NOT NULL,
    principal   TEXT    NOT NULL,
    tool        TEXT    NOT NULL,
    hour        INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    calls       INTEGER NOT NULL,
    successes   INTEGER NOT NULL,
    last_at     INTEGER NOT NULL,
    tx          INTEGER NOT NULL,
    PRIMARY KEY (namespace, principal, tool, hour, kind, label)
) WITHOUT ROWID;
CREATE INDEX tool_stats_hourly_tool ON tool_stats_hourly (tool, hour);
CREATE INDEX tool_stats_hourly_hour ON tool_stats_hourly (hour);

-- A tool's newest outcomes in order, without sorting them (the recency-weighted rate).
CREATE INDEX tool_outcomes_recent ON tool_outcomes (tool, recorded_at, id);
