-- EngramDB postgres schema, version 20: each memory version's words, stored at write time.
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- `words` is engramdb.storage.words.stored_words(text), written by SqlWriteTx with
-- the row (a bookkeeping column, not logged state), for the recall ranking's word
-- counts. Rows written before this version keep NULL and are ranked from their text
-- (PostgreSQL cannot run the Python tokenizer to fill them here).
ALTER TABLE memories ADD COLUMN words text;
