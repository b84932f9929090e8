"""Door schemas derived from the declared API (:mod:`engramdb.api`).

A call's parameters are read from its declaration (``**fields:
Unpack[SomeTypedDict]`` spelled out), so the HTTP request model and the MCP
tool input schema of a call have exactly the declared keywords with the
declared defaults; adding a keyword to ``api.py`` reaches both doors with no
second edit. A door supplies:

* a **type table**: the wire type of each declared annotation (``When`` is an
  ISO-8601 string in MCP, a checked ``Time`` over HTTP). A declared type the
  table does not know fails when the door is built, naming the parameter;
* **overrides** where it needs one: ``Annotated[type, Field(...)]`` (or just a
  ``Field(...)``, or just a type) for a keyword, carrying the door's limits and
  the description its readers see. An override may not name a keyword the
  call does not declare, nor state a default other than the declared one:
  either is a :class:`SchemaDrift` when the door is built.

A keyword the call declares without a default is required on the wire; one
left out by default (``UNSET``, or a key of an ``Unpack``-ed ``TypedDict``) is
``null`` on the wire and means "not given". :func:`call_with` passes what a
door received back to the declared call under the declared names.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, create_model
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from engramdb.model import UNSET

__all__ = ["REQUIRED", "Declared", "SchemaDrift", "WireField", "call_with", "declared",
           "request_model", "tool_signature", "wire_fields"]

REQUIRED: Any = PydanticUndefined  # a declared parameter without a default


class SchemaDrift(TypeError):
    """A door's schema disagrees with the declared API (raised when the door is built)."""


@dataclass(frozen=True, slots=True)
class Declared:
    """One declared keyword of a call: its name, evaluated annotation and default."""

    name: str
    hint: Any
    default: Any  # REQUIRED, None for "not given", or the declared value


@dataclass(frozen=True, slots=True)
class WireField:
    """One keyword as a door offers it."""

    name: str  # the name on the wire
    declared: str  # the parameter of the declared call
    type: Any  # its wire type
    info: FieldInfo  # its limits and description (no default)
    default: Any  # REQUIRED or a value

    @property
    def annotation(self) -> Any:
        """``Annotated[type, FieldInfo]``, as a function signature carries it (MCP SDK)."""
        return Annotated[self.type, self.info]

    def field(self) -> tuple[Any, FieldInfo]:
        """``(type, FieldInfo with the default)``, as ``pydantic.create_model`` takes it.

        The limits stay on the field rather than in ``Annotated``: pydantic applies
        ``ge``/``le`` as schema constraints only there when the type has validators.
        """
        if self.default is REQUIRED:
            return self.type, self.info
        return self.type, FieldInfo.merge_field_infos(self.info, default=self.default)


def declared(fn: Callable[..., Any] | type) -> list[Declared]:
    """The parameters of a declared method, in order, ``**fields`` spelled out.

    A declared keyword set (a ``TypedDict``) gives its keys, none required.
    """
    if typing.is_typeddict(fn):
        keyword_hints = typing.get_type_hints(fn, include_extras=True)
        return [Declared(n, keyword_hints[n], None) for n in fn.__annotations__]
    hints = typing.get_type_hints(fn, include_extras=True)
    out: list[Declared] = []
    for p in inspect.signature(fn).parameters.values():
        if p.name == "self":
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            (keywords,) = typing.get_args(hints[p.name])  # Unpack[SomeTypedDict]
            keyword_hints = typing.get_type_hints(keywords, include_extras=True)
            out.extend(Declared(n, keyword_hints[n], None) for n in keywords.__annotations__)
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise SchemaDrift(f"{fn.__qualname__}: *{p.name} has no wire form")
        else:
            default = p.default
            if default is inspect.Parameter.empty:
                default = REQUIRED
            elif default is UNSET:
                default = None
            elif isinstance(default, tuple):
                default = list(default)  # JSON has lists
            out.append(Declared(p.name, hints[p.name], default))
    return out


def _wire_type(call: str, d: Declared, types: Mapping[Any, Any]) -> Any:
    found = [wire for hint, wire in types.items() if hint == d.hint]
    if not found:
        raise SchemaDrift(
            f"{call}({d.name}: {d.hint}): the door has no wire type for this declared type; "
            "add it to the door's type table or give the keyword an override")
    wire = found[0]
    if d.default is None and not _admits_none(wire):
        wire = wire | None  # left out means "not given": null on the wire
    return wire


def _admits_none(tp: Any) -> bool:
    if tp is Any:
        return True
    if typing.get_origin(tp) is Annotated:
        return _admits_none(typing.get_args(tp)[0])
    return type(None) in typing.get_args(tp) or tp is type(None)


def _split(override: Any) -> tuple[Any, FieldInfo]:
    """An override as (type or None, FieldInfo)."""
    if isinstance(override, FieldInfo):
        return None, override
    if typing.get_origin(override) is Annotated:
        base, *meta = typing.get_args(override)
        infos = [m for m in meta if isinstance(m, FieldInfo)]
        rest = [m for m in meta if not isinstance(m, FieldInfo)]
        tp = Annotated[(base, *rest)] if rest else base
        return tp, FieldInfo.merge_field_infos(*infos) if infos else FieldInfo()
    return override, FieldInfo()


def wire_fields(call: str, fn: Callable[..., Any], *, types: Mapping[Any, Any],
                overrides: Mapping[str, Any] | None = None,
                wire: Mapping[str, str] | None = None, exclude: Iterable[str] = (),
                describe: Callable[[str, Declared], str] | None = None) -> list[WireField]:
    """The keywords of ``fn`` (a declared method) as one door offers them.

    Args:
        call: the call's name, for messages.
        fn: its declaration, e.g. ``api.MemoryAPI.remember``.
        types: the door's wire type per declared annotation.
        overrides: per declared keyword, ``Annotated[type, Field(...)]``, a
            ``Field(...)`` or a type.
        wire: declared name -> wire name where they differ.
        exclude: declared keywords this door does not take (path parameters,
            what a door leaves out on purpose).
        describe: the description of a keyword no override describes.

    Raises:
        SchemaDrift: an override or an exclusion names a keyword ``fn`` does not
            declare, an override's default is not the declared one, or a declared
            type has no wire type.
    """
    overrides = dict(overrides or {})
    wire = dict(wire or {})
    excluded = set(exclude)
    params = declared(fn)
    names = {d.name for d in params}
    unknown = (set(overrides) | excluded | set(wire)) - names
    if unknown:
        raise SchemaDrift(f"{call}: {sorted(unknown)} not declared in engramdb.api "
                          f"(declared: {sorted(names)})")
    out: list[WireField] = []
    for d in params:
        if d.name in excluded:
            continue
        tp, info = _split(overrides[d.name]) if d.name in overrides else (None, FieldInfo())
        if info.default is not PydanticUndefined and info.default != d.default:
            raise SchemaDrift(f"{call}({d.name}): the door's default {info.default!r} is not "
                              f"the declared {_shown(d.default)}")
        if info.default_factory is not None:
            raise SchemaDrift(f"{call}({d.name}): a door may not compute a default")
        if tp is None:
            tp = _wire_type(call, d, types)
        if info.description is None and describe is not None:
            info = FieldInfo.merge_field_infos(info, description=describe(call, d))
        out.append(WireField(wire.get(d.name, d.name), d.name, tp, info, d.default))
    return out


def _shown(default: Any) -> str:
    return "(required)" if default is REQUIRED else repr(default)


def request_model(name: str, fields: list[WireField], *, base: type[BaseModel],
                  doc: str | None = None) -> type[BaseModel]:
    """A pydantic request model whose fields are ``fields``, in declared order."""
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        name, __base__=base, __doc__=doc, __module__=base.__module__,
        **{f.name: f.field() for f in fields})
    return model


def tool_signature(fields: list[WireField], returns: Any) -> inspect.Signature:
    """The signature an MCP SDK tool function shows: keyword-only, declared defaults."""
    return inspect.Signature(
        [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=f.annotation,
                           default=inspect.Parameter.empty if f.default is REQUIRED
                           else f.default)
         for f in fields],
        return_annotation=returns)


def call_with(target: Any, call: str, fields: list[WireField], received: Mapping[str, Any],
              **path: Any) -> Any:
    """Call ``target.<call>`` with what a door received, under the declared names.

    ``received`` holds what the caller gave (by wire name); what it left out
    takes the declared default. ``path`` are declared keywords the door took
    elsewhere (an HTTP path parameter).
    """
    kwargs = {f.declared: received[f.name] for f in fields if f.name in received}
    return getattr(target, call)(**kwargs, **path)
