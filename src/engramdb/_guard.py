"""A call that does not fit a public method's signature is bad input, not a crash.

``remember("x", author="eve")`` or ``grant()`` would raise Python's own
``TypeError``; :func:`guard_calls` makes every public method of a class raise
:class:`~engramdb.errors.InvalidArguments` instead (an ``InvalidInput`` that
is also a ``TypeError``, so code catching Python's error keeps working),
naming the method and the parameters it takes. Only calls whose arguments
do not bind to the signature are translated (checked after the ``TypeError``, so a good call pays
nothing); a ``TypeError`` from inside a method is left alone, since it is a
defect to fix, not input to refuse. ``functools.wraps`` keeps each method's
signature and docstring, so introspection (and the checks comparing the
engine's and the clients' signatures) see the original.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from engramdb import telemetry
from engramdb.errors import InvalidArguments

__all__ = ["guard_and_trace", "guard_calls"]

C = TypeVar("C", bound=type)


def guard_calls(cls: C) -> C:
    """Class decorator: wrap the public methods ``cls`` defines itself (see the module)."""
    for name, attr in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(attr):
            continue
        setattr(cls, name, _guarded(attr))
    return cls


def guard_and_trace(cls: C) -> C:
    """:func:`guard_calls`, and each call is an ``engram.<method>`` span when telemetry is on.

    For the engine's facades (Session, Database, Admin): one wrapper does both,
    so a call pays one global read for telemetry when it is off.
    """
    for name, attr in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(attr):
            continue
        setattr(cls, name, _traced(attr) if not inspect.iscoroutinefunction(attr)
                else _guarded(attr))
    return cls


def _refusal(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> InvalidArguments | None:
    sig = inspect.signature(fn)
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        params = list(sig.parameters)[1:]
        return InvalidArguments(
            f"{fn.__qualname__}() was called with arguments it does not take ({exc}); "
            f"it takes: {', '.join(params) or 'no arguments'}", field=fn.__name__)
    return None


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                coro = fn(*args, **kwargs)
            except TypeError:
                refusal = _refusal(fn, args, kwargs)
                if refusal is None:
                    raise
                raise refusal from None
            return await coro

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TypeError:
            refusal = _refusal(fn, args, kwargs)
            if refusal is None:
                raise
            raise refusal from None

    return wrapper


def _traced(fn: Callable[..., Any]) -> Callable[..., Any]:
    name = fn.__name__
    guarded = _guarded(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if telemetry._active is None:  # off: nothing but this read
            return guarded(*args, **kwargs)
        with telemetry.operation(name, args[0] if args else None, fn, args, kwargs) as op:
            out = guarded(*args, **kwargs)
            op.result(out)
            return out

    return wrapper
