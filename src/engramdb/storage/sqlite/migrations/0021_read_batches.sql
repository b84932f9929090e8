-- EngramDB sqlite schema, version 21: the read audit stored as one row per flushed batch.
-- Append-only: never edit a released migration. Mirrors engramdb/storage/schema.py.
-- A batch of reads is one row naming the `reads.recorded` event whose payload
-- holds the batch, dictionary-coded and compressed (audit/read_batches.py).
-- read_index files each distinct memory of a batch under a 48-bit hash of its id,
-- two integers per row, so who_read(memory) finds its batches by index.
-- Reads recorded before this version stay in reads and read_items and keep answering.
CREATE TABLE read_batches (
    seq         INTEGER PRIMARY KEY,
    recorded_at INTEGER NOT NULL
);
CREATE TABLE read_index (
    memory_key INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    PRIMARY KEY (memory_key, seq)
) WITHOUT ROWID;
