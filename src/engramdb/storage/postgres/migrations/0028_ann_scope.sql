-- EngramDB postgres schema, version 28: the namespace of each vector in the ANN projection.
-- Append-only: never edit a released migration.
-- A search scoped to a few namespaces ranks their vectors exactly, reading only
-- memory_vectors_ann (by this index) instead of looking each vector up by key from
-- memories; the projection's rebuild writes the rows in namespace order, so a
-- namespace's vectors sit on neighbouring pages. A version's namespace never changes.
ALTER TABLE memory_vectors_ann ADD COLUMN namespace TEXT;
UPDATE memory_vectors_ann a SET namespace = m.namespace
    FROM memories m WHERE m.id = a.id AND m.version = a.version;
CREATE INDEX memory_vectors_ann_namespace ON memory_vectors_ann (namespace);
