"""Doors onto EngramDB from agent frameworks, one subpackage per framework.

Each adapter is thin: it maps the framework's memory interface onto the public
EngramDB API (an embedded ``engramdb.open(...)`` database or ``db.as_agent(...)``
session, or the remote ``engramdb.connect(...)`` client) and adds no policy of
its own. Each needs its framework installed, through its own extra:

- ``engramdb.integrations.langgraph``: ``pip install 'engramdb[langgraph]'``
"""
