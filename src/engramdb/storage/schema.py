"""The logical schema: every state table, its key and its column types.

State tables are projections of the log (DESIGN.md, principle 1). Writes
reach them only as :mod:`effects <engramdb.storage.base>` that name a table
from this registry, and the same effects are stored in the event payload, so
``verify`` and ``import`` can replay the log onto an empty model of these
tables and compare. Both backends build their SQL from this registry; their
migrations must create exactly these columns.

Column kinds:

* ``text``, ``int``, ``real``: stored as such.
* ``json``: any JSON value, stored as canonical JSON text.
* ``micros``: a UTC time as integer microseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONFIG_TABLES", "TABLES", "TableSpec"]


@dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    key: tuple[str, ...]
    columns: dict[str, str]
    # Maintained by storage itself; not part of the logged state.
    bookkeeping: tuple[str, ...] = ()

    @property
    def json_columns(self) -> frozenset[str]:
        return frozenset(c for c, k in self.columns.items() if k == "json")


def _spec(
    name: str, key: tuple[str, ...], columns: str, bookkeeping: tuple[str, ...] = ()
) -> TableSpec:
    cols: dict[str, str] = {}
    for part in columns.split(","):
        col, kind = part.split()
        cols[col] = kind
    return TableSpec(name, key, cols, bookkeeping)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        _spec(
            "memories",
            ("id", "version"),
            "id text, version int, namespace text, layer text, text text, subject text,"
            " predicate text, value json, metadata json, importance real, confidence real,"
            " author text, source text, session text, valid_from micros, valid_to micros,"
            " tx_from int, tx_to int, recorded_at micros, status text, expires_at micros",
            bookkeeping=("row_tx", "words"),
        ),
        _spec(
            "principals",
            ("name",),
            "name text, kind text, roles json, trust real, status text, created_tx int,"
            " metadata json",
        ),
        _spec(
            "api_keys",
            ("key_id",),
            "key_id text, principal text, secret_hash text, created_tx int, revoked_tx int,"
            " expires_at micros",
        ),
        _spec(
            "grants",
            ("id",),
            "id text, grantee text, pattern text, actions json, granted_by text, tx_from int,"
            " tx_to int",
        ),
        _spec(
            "idempotency",
            ("principal", "key"),
            "principal text, key text, request_hash text, result json, tx int",
        ),
        _spec(
            "conflicts",
            ("id",),
            "id text, kind text, namespace text, subject text, predicate text, memories json,"
            " detector text, reason text, policy text, outcome text, status text, winner text,"
            " resolution text, resolved_by text, tx int, resolved_tx int",
        ),
        _spec(
            "decisions",
            ("id",),
            "id text, principal text, namespace text, description text, basis json,"
            " outcome json, metadata json, tx int, recorded_at micros, stale_tx int",
        ),
        # One row per basis item of a decision: lets a write find, by index, the
        # decisions its closed versions make stale (engine/_commit.py).
        _spec(
            "decision_basis",
            ("decision_id", "memory_id", "version"),
            "decision_id text, memory_id text, version int",
        ),
        _spec(
            "predicate_schemas",
            ("id",),
            "id text, pattern text, predicate text, cardinality text, value_type text,"
            " merge text, policy text, tx_from int, tx_to int",
        ),
        _spec(
            "namespace_settings",
            ("pattern",),
            "pattern text, settings json, tx int",
        ),
        _spec(
            "reads",
            ("id",),
            "id text, principal text, tx int, recorded_at micros, query_digest text,"
            " items json, namespaces json",
        ),
        # One row per memory version a recorded read returned: ``who_read`` by index.
        _spec(
            "read_items",
            ("read_id", "memory_id", "version"),
            "read_id text, memory_id text, version int",
        ),
        # Since version 21 (audit/read_batches.py): one row per flushed batch of
        # reads, naming the event whose payload holds the batch, and one
        # two-integer row per distinct memory of a batch, derived from that
        # payload, so who_read is an index lookup. reads and read_items hold
        # the reads recorded before.
        _spec("read_batches", ("seq",), "seq int, recorded_at micros"),
        _spec("read_index", ("memory_key", "seq"), "memory_key int, seq int"),
        # Lifecycle (engine/lifecycle.py): policies per namespace glob and layer
        # ('*' for every layer), legal holds, batched reinforcement of relevance.
        _spec("lifecycle_policies", ("pattern", "layer"),
              "pattern text, layer text, settings json, tx int, checked_to micros"),
        _spec("legal_holds", ("pattern",),
              "pattern text, active int, reason text, set_by text, tx int"),
        _spec("memory_usage", ("id",), "id text, uses int, last_used micros, tx int"),
        # Erasure (engine/erasure.py): what was erased, never the content.
        _spec("erasures", ("id",),
              "id text, actor text, selector json, reason text, receipt json, tx int"),
        _spec("erased_versions", ("memory_id", "version"),
              "memory_id text, version int, erasure_id text, tx int"),
        _spec("erased_events", ("seq",), "seq int, erasure_id text, tx int, effects json"),
        # Derived memories and their sources (shared with the layers work).
        _spec("derivations", ("derived_id", "source_id"),
              "derived_id text, derived_version int, source_id text, source_version int,"
              " kind text, tx int"),
        # The layers (issue 11). Tool and procedure outcomes are not memories;
        # ``error`` and ``metadata`` of a tool outcome are agent-written text.
        _spec(
            "tool_outcomes",
            ("id",),
            "id text, principal text, namespace text, tool text, ok int, latency_ms real,"
            " error text, metadata json, tx int, recorded_at micros",
        ),
        # Tool statistics as an aggregate (migration 0019), changed in the same
        # event as the outcomes it counts; ``verify`` also folds it again from them.
        _spec(
            "tool_stats",
            ("namespace", "principal", "tool", "kind", "label"),
            "namespace text, principal text, tool text, kind text, label text, calls int,"
            " successes int, last_at micros, tx int",
        ),
        # The same counts per clock hour (migration 0022): ``tool_stats(since=T)``
        # sums whole hours and counts only T's own hour from the outcomes.
        _spec(
            "tool_stats_hourly",
            ("namespace", "principal", "tool", "hour", "kind", "label"),
            "namespace text, principal text, tool text, hour micros, kind text, label text,"
            " calls int, successes int, last_at micros, tx int",
        ),
        _spec(
            "procedure_outcomes",
            ("id",),
            "id text, principal text, namespace text, procedure_id text, version int, ok int,"
            " tx int, recorded_at micros",
        ),
    )
}


# The configuration a write reads and acts on: who may write where, with which
# settings and schemas. Every write that changes one of these tables moves
# ``chain_head.config_tx`` to its transaction (migration 0023), so a writer may
# keep their rows in memory while it has not moved (storage/sql.py, sql_write.py).
CONFIG_TABLES = frozenset({"principals", "grants", "predicate_schemas", "namespace_settings",
                           "lifecycle_policies", "legal_holds"})
