"""A recall's readable namespaces, remembered per pattern, read rules and namespace list
(``AccessControl.readable``), are what checking each namespace gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from engramdb.model import namespace_matches
from engramdb.policy.acl import AccessControl

_SEGMENT = st.sampled_from(["a", "b", "ops", "team", "x1"])
_NAMESPACE = st.lists(_SEGMENT, min_size=1, max_size=3).map("/".join)
_GLOB = st.lists(st.one_of(_SEGMENT, st.just("*"), st.just("**")), min_size=1,
                 max_size=3).map("/".join)
_ACTIONS = st.lists(st.sampled_from(["read", "write", "admin", "erase"]), min_size=1,
                    max_size=3, unique=True)


@settings(max_examples=300, deadline=None)
@given(principal=st.sampled_from(["ana", "bo"]), admin=st.booleans(),
       grants=st.lists(st.tuples(_GLOB, _ACTIONS), max_size=4),
       names=st.lists(_NAMESPACE | st.sampled_from(["agents/ana/notes", "agents/bo"]),
                      max_size=8, unique=True),
       pattern=_GLOB)
def test_readable_is_each_namespace_checked(principal, admin, grants, names, pattern):
    acl = AccessControl(principal, [{"id": f"g{i}", "pattern": p, "actions": a}
                                    for i, (p, a) in enumerate(grants)], is_admin=admin)
    want = tuple(ns for ns in sorted(names)
                 if namespace_matches(pattern, ns) and acl.check("read", ns).allow)
    assert acl.readable(pattern, sorted(names)) == want
    assert acl.readable(pattern, sorted(names)) == want  # asked again: remembered, the same
