-- EngramDB schema, version 18: maintain reads what is due by index only.
-- Append-only: never edit a released migration.

-- Decay windows read reinforced memories by last use (engine/lifecycle.py,
-- used_between): without this index that read scanned every usage row.
CREATE INDEX memory_usage_last_used ON memory_usage (last_used);
