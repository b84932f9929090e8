-- Full text with the namespace inside the index: a scoped query intersects its
-- words with the namespace's token in FTS5 instead of ranking every match and
-- filtering afterwards. `scope` holds one token per row, 'n' || hex(namespace)
-- || '0' (letters and digits only, so unicode61 keeps it whole and porter
-- leaves it alone); its bm25 weight is 0, so ranking is by `text` alone.
DROP TRIGGER memories_fts_ai;
DROP TRIGGER memories_fts_ad;
DROP TRIGGER memories_fts_au;
DROP TABLE memories_fts;

CREATE VIEW memories_fts_source AS
    SELECT row_id, text, 'n' || hex(namespace) || '0' AS scope FROM memories;

CREATE VIRTUAL TABLE memories_fts USING fts5 (
    text, scope, content = 'memories_fts_source', content_rowid = 'row_id',
    tokenize = 'porter unicode61'
);
CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text, scope)
    VALUES (new.row_id, new.text, 'n' || hex(new.namespace) || '0');
END;
CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text, scope)
    VALUES ('delete', old.row_id, old.text, 'n' || hex(old.namespace) || '0');
END;
CREATE TRIGGER memories_fts_au AFTER UPDATE OF text, namespace ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, text, scope)
    VALUES ('delete', old.row_id, old.text, 'n' || hex(old.namespace) || '0');
    INSERT INTO memories_fts (rowid, text, scope)
    VALUES (new.row_id, new.text, 'n' || hex(new.namespace) || '0');
END;
INSERT INTO memories_fts (memories_fts) VALUES ('rebuild');
INSERT INTO memories_fts (memories_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)');
