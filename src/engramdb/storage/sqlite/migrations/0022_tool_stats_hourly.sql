-- EngramDB sqlite schema, version 22: tool statistics per clock hour (issue 11).
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- The counts of tool_stats (0019) again, one row per (namespace, agent, tool, hour,
-- kind, label); hour is the UTC clock hour's first microsecond. Changed in the same
-- transaction and log event as the outcomes it counts, so tool_stats(since=T) adds
-- up the whole hours after T and reads only T's own hour from tool_outcomes (by
-- index). Error labels are agent-written text: erasure renames them here as in
-- tool_stats. Outcomes recorded before this version are counted once, by one logged
-- event, when the database is opened (engine/layers/procedures.py).
-- The key starts with the tool and the hour (a tool's window is one range; the
-- writer's lookup names all of tool, hour, namespace and agent); the hour index
-- serves the window of every tool.
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
    PRIMARY KEY (tool, hour, namespace, principal, kind, label)
) WITHOUT ROWID;
CREATE INDEX tool_stats_hourly_hour ON tool_stats_hourly (hour);

-- A group's (tool, namespace, agent) outcomes in time order, ties broken by id: its
-- newest outcomes (the recency-weighted rate) are read without sorting the rest, and
-- a batch shares one recorded_at. Replaces 0019's index, which lacked the id.
DROP INDEX tool_outcomes_group;
CREATE INDEX tool_outcomes_newest ON tool_outcomes (tool, namespace, principal, recorded_at, id);
