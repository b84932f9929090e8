-- EngramDB postgres schema, version 38: three b-tree entries fewer per sessionless memory
-- version written, none that a read needs. Append-only: never edit a released migration.
-- The same change SQLite made in its versions 25 and 26 (issue 13, 16 writers):
-- * `memories_author (author)` (version 10) is the leading column of
--   `memories_author_layer_time (author, layer, valid_from)` (version 11): every lookup by
--   author (`author IN (...)`, storage/sql_where.py) is served by the wider index.
-- * `memories_session (session) WHERE session IS NOT NULL` (version 1) is the leading
--   column of `memories_session_time (session, valid_from)`: every lookup by session
--   (`session = $1`) is served by the wider one.
-- * `memories_session_time` held an entry for every memory without a session, which no
--   query reads: a session is looked up by equality, which PostgreSQL proves implies
--   `session IS NOT NULL`, so the partial index still serves it.
DROP INDEX IF EXISTS memories_author;
DROP INDEX IF EXISTS memories_session;
DROP INDEX IF EXISTS memories_session_time;
CREATE INDEX memories_session_time ON memories (session, valid_from) WHERE session IS NOT NULL;
