-- EngramDB sqlite schema, version 26: the session index holds only memories with a session.
-- Append-only: never edit a released migration.
-- `memories_session_time (session, valid_from)` (migration 0011) also held an entry for every
-- memory without a session, which no query reads: a session is looked up by equality
-- (`session = ?`, which SQLite knows implies `session IS NOT NULL`, so the partial index still
-- serves it). Every sessionless memory written now updates one b-tree less (issue 13, batch
-- writes). PostgreSQL keeps its index (a separate schema history).
DROP INDEX IF EXISTS memories_session_time;
CREATE INDEX memories_session_time ON memories (session, valid_from) WHERE session IS NOT NULL;
