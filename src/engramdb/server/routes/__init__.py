"""One router per resource. A new resource is a new module here with a ``router``,
added to :data:`ROUTERS`."""

from __future__ import annotations

from fastapi import APIRouter

from engramdb.server.routes import (
    admin,
    audit,
    changes,
    conflicts,
    context,
    decisions,
    knowledge,
    layers,
    lifecycle,
    memories,
    namespaces,
    policy,
    recall,
    system,
    transactions,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    system.router,
    memories.router,
    recall.router,
    transactions.router,
    changes.router,
    context.router,
    layers.router,
    decisions.router,
    conflicts.router,
    knowledge.router,
    namespaces.router,
    admin.router,
    policy.router,
    audit.router,
    lifecycle.router,
)
