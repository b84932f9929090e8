"""Storage: the seam (:mod:`.base`), the logical schema, and the backends.

Nothing above this package knows which backend it runs on; backends pass one
shared conformance suite (tests/conftest.py ``BACKENDS``).
"""
