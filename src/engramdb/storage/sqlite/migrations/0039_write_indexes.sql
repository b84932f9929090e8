-- EngramDB sqlite schema, version 39: three b-trees fewer for every memory written.
-- Append-only: never edit a released migration.
-- `events_recorded_at (recorded_at)`: its one reader, a transaction's time
-- (storage/sql.py `tx_time`), now reads the last event at or before the transaction
-- through `events_tx`: a log's time never goes back (`engram verify` checks it; a writer
-- takes max(now, the head's time); an import refuses an event that goes back), so the
-- last event's time is the largest. The other time lookup (the transaction at a time)
-- already walked `events_tx` back from the end.
-- `memories_row_tx (row_tx)` (rows changed since a transaction, read by the search
-- caches and the namespace list) now holds only rows changed after the transaction that
-- wrote them (`row_tx <> tx_from`: a version closed, a status, an erasure). A row still
-- as written has `row_tx = tx_from` and is found through `memories_tx (tx_from, tx_to)`;
-- the SQLite readers ask for both halves (storage/sqlite/dialect.py `changed_since`).
-- `memories_current (namespace, layer) WHERE tx_to IS NULL` and `memories_namespace
-- (namespace)` become one `memories_namespace (namespace, layer, tx_to)`: a lookup of
-- current rows by namespace and layer seeks `tx_to IS NULL` as its third column (the
-- same entries the partial index held), and every lookup by namespace alone keeps its
-- leading column.
-- PostgreSQL keeps its indexes (a separate schema history).
DROP INDEX IF EXISTS events_recorded_at;
DROP INDEX IF EXISTS memories_row_tx;
CREATE INDEX memories_row_tx ON memories (row_tx) WHERE row_tx <> tx_from;
DROP INDEX IF EXISTS memories_current;
DROP INDEX IF EXISTS memories_namespace;
CREATE INDEX memories_namespace ON memories (namespace, layer, tx_to);
