-- EngramDB sqlite schema, version 20: each memory version's words, stored at write time.
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- The recall ranking counts the words of every candidate (BM25 over the candidate
-- pool); reading them with the row costs less than splitting each candidate's text
-- on every recall. `words` is engramdb.storage.words.stored_words(text), written by
-- SqlWriteTx with the row (a bookkeeping column, not logged state): derived, like the
-- full-text index, and deleted with its row (an erasure takes it along). Existing rows
-- are filled here through engram_words(), which SQLiteStorage registers on its
-- connections; a row without words is ranked from its text.
ALTER TABLE memories ADD COLUMN words TEXT;
UPDATE memories SET words = engram_words(text);
