-- EngramDB sqlite schema, version 23: the transaction of the last configuration change.
-- Append-only: never edit a released migration. Mirrors the postgres migration 0023.
-- Every write that changes a configuration table (principals, grants, predicate
-- schemas, namespace settings, lifecycle policies, legal holds; storage/schema.py
-- CONFIG_TABLES) sets chain_head.config_tx to its transaction in the same commit.
-- Writers read it with the chain head and keep the configuration rows in memory
-- while it has not moved (storage/sql.py), instead of reading them on every write.
ALTER TABLE chain_head ADD COLUMN config_tx INTEGER NOT NULL DEFAULT 0;
