-- Full text filled by the write path in bulk, not by a per-row trigger. An FTS5
-- table flushes its pending terms to a new segment at every statement savepoint,
-- and a trigger runs inside one per inserted row: a batch of 2,000 memories wrote
-- 2,000 one-row segments and merged them (about 160 us a row, 80% of an insert).
-- SQLiteStorage._insert_many now indexes the rows of each buffered insert with one
-- INSERT ... SELECT (about 10 us a row). Deletes and text updates keep their
-- triggers (rare, and they must follow any path that changes a row).
DROP TRIGGER memories_fts_ai;
