"""The remote clients: the embedded API over HTTP (extra ``engramdb[client]``).

::

    import engramdb
    db = engramdb.connect("http://127.0.0.1:8420", api_key=KEY)
    m = db.remember("Company X outlook is positive", namespace="acme/research")
    db.recall("outlook for X").hits[0].memory.text

    adb = engramdb.connect_async("http://127.0.0.1:8420", api_key=KEY)
    await adb.remember(...)

Same arguments, same return types (:mod:`engramdb.model`), same exceptions
(:mod:`engramdb.errors`, rebuilt from the server's codes) as an embedded
:class:`engramdb.Session`.
"""

from __future__ import annotations

from engramdb.client._async import AsyncClient, AsyncRemoteAdmin, connect_async
from engramdb.client._sync import Client, RemoteAdmin, connect
from engramdb.client._tx import PendingMemory, RemoteTransaction
from engramdb.client._wire import PrincipalInfo

__all__ = [
    "AsyncClient",
    "AsyncRemoteAdmin",
    "Client",
    "PendingMemory",
    "PrincipalInfo",
    "RemoteAdmin",
    "RemoteTransaction",
    "connect",
    "connect_async",
]
