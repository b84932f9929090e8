"""Bad input through the public Python API: a typed EngramError, never a builtin, nothing written.

A Hypothesis property over every public method of ``Session`` (as an agent
and as the admin ``Database``) and ``db.admin``: each parameter, read from
the method's signature, gets an arbitrary hostile value (wrong types, None,
huge and non-finite numbers, control characters, generators, deep JSON,
unexpected keyword arguments). The call must return or raise an
``EngramError`` subclass; when it raises, the log head must not move.
When ``engramdb.api`` declares the public API (the ``arch`` branch), the
method list comes from that declaration instead of introspection.
"""

from __future__ import annotations

import inspect
import os
import warnings
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engramdb
from engramdb.errors import EngramError, InvalidInput

LONG = os.environ.get("ENGRAM_SECURITY_LONG") == "1"
EXAMPLES = 400 if LONG else 40

# Calls that are not data-plane input (they end the handle or need a file), and
# wait_for_events, which blocks by design for as long as it is told (up to an hour).
SKIP = {"close", "export", "transaction", "as_agent", "session_for_key", "authenticate",
        "checkpoint", "verify_checkpoint", "prove", "verify", "flush_reads", "wait_for_events"}


def _deep(depth: int) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value


def _gen() -> Any:
    return (x for x in ["team/a"])


HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(3.5e38),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=20),
    st.sampled_from(["admin\n", "team/a\n", "team/**", "", " ", "\x00", "a" * 5000, "role:",
                     "ek_x_y", "agents/mallory", "semantic", "read"]),
    st.lists(st.one_of(st.none(), st.integers(), st.text(max_size=5)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.one_of(st.none(), st.integers()), max_size=3),
    st.sampled_from([b"bytes", object(), {1, 2}, ("team/a", 1), [3.5e38] * 384]),
    st.builds(_gen),
    st.builds(_deep, st.integers(min_value=30, max_value=300)),
)


def public_methods() -> list[tuple[str, str]]:
    """``(owner, method)`` pairs: the declared API (``engramdb.api``), plus what else
    ``Database`` and ``Admin`` expose (so nothing public escapes the property)."""
    from engramdb.engine.admin import Admin

    out: set[tuple[str, str]] = set()
    try:
        from engramdb import api
    except ImportError:  # a checkout before the API was declared
        api = None  # type: ignore[assignment]
    if api is not None:
        for owner, proto_name in (("db", "MemoryAPI"), ("admin", "AdminAPI")):
            proto = getattr(api, proto_name, None)
            out |= {(owner, n) for n, v in vars(proto or object).items()
                    if not n.startswith("_") and inspect.isfunction(v)}
    for owner, cls in (("db", engramdb.Database), ("admin", Admin)):
        out |= {(owner, n) for n in dir(cls)
                if not n.startswith("_") and inspect.isfunction(getattr(cls, n))}
    return sorted((o, m) for o, m in out if m not in SKIP)


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    db = engramdb.open(tmp_path_factory.mktemp("inputs") / "engram.db", embedder=None)
    db.admin.create_agent("mallory")
    db.admin.grant("mallory", "team/**", ["read", "write"])
    m = db.remember("a fact", namespace="team/a", subject="s", predicate="p", value=1)
    yield db, m
    db.close()


@pytest.mark.parametrize("owner,method", public_methods())
def test_hostile_arguments_get_a_typed_error_and_write_nothing(target, owner, method):
    db, m = target
    handle = {"db": db, "agent": db.as_agent("mallory"), "admin": db.admin}[owner]
    fn = getattr(handle, method)
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: st.DataObject) -> None:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for p in params:
            if p.default is not p.empty and data.draw(st.booleans(), label=f"skip {p.name}"):
                continue
            value = data.draw(st.one_of(HOSTILE, st.just(m.id)), label=p.name)
            if p.kind == p.POSITIONAL_ONLY or (p.kind == p.POSITIONAL_OR_KEYWORD
                                               and p.default is p.empty):
                args.append(value)
            else:
                kwargs[p.name] = value
        if data.draw(st.booleans(), label="unexpected kwarg"):
            kwargs[data.draw(st.sampled_from(["author", "principal", "tx", "__class__"]))] = 1
        before = db.storage.head()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # an overflow warning is a silent failure
                result = fn(*args, **kwargs)
                if inspect.isgenerator(result):
                    list(result)
        except EngramError as exc:
            assert str(exc), "a typed error says what to do"
            if isinstance(exc, InvalidInput):
                assert db.storage.head() == before, f"{method} wrote despite refusing"
        # Anything else (TypeError, AttributeError, RuntimeWarning...) fails the test.

    run()
