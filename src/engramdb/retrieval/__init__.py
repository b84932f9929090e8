"""Retrieval: turning text into vectors and token counts, and ranking what comes back.

Modules here are pure: they compute, they never read or write the database.

* :mod:`engramdb.retrieval.embed`: the :class:`~engramdb.retrieval.embed.Embedder`
  protocol, the offline local embedder, the OpenAI-compatible embedder, an LRU
  cache, and the spec strings (``local``, ``openai:<base_url>#<model>``) that
  choose one from a CLI flag or a config value.
* :mod:`engramdb.retrieval.tokens`: token counting and truncation (cl100k,
  bundled offline) for context budgets.
"""
