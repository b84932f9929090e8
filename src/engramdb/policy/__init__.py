"""Policy: decisions the engine takes about memories (contradictions, access, lifecycle).

Everything here is pure logic over values from :mod:`engramdb.model`; each
decision comes back as a value with a human-readable reason.
"""
