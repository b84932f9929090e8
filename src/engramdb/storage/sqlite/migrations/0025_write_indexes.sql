-- EngramDB sqlite schema, version 25: two indexes every memory write paid for and no
-- read needs. Append-only: never edit a released migration.
-- `memories_author (author)` is the leading column of `memories_author_layer_time
-- (author, layer, valid_from)` (migration 0011), and `memories_session (session) WHERE
-- session IS NOT NULL` the leading column of `memories_session_time (session,
-- valid_from)`: every lookup by author or by session is served by the wider index,
-- and each version written updated one b-tree less (issue 13, batch writes).
-- PostgreSQL keeps its indexes (a separate schema history).
DROP INDEX IF EXISTS memories_author;
DROP INDEX IF EXISTS memories_session;
