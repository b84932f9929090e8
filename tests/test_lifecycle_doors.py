"""Erasure and lifecycle through the remote doors: a real HTTP server, both clients."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import engramdb
from engramdb.client import AsyncClient, Client
from engramdb.engine.admin import Admin
from engramdb.errors import InvalidInput, InvalidPolicy, LegalHoldActive, NotFound
from tests.support.http_server import served_client


@pytest.fixture
def remote(tmp_path, embedder):
    client = served_client(engramdb.open(tmp_path / "engram.db", embedder=embedder))
    yield client
    client.close()


def test_forget_maintain_restore_and_policies_over_http(remote):
    m = remote.remember("Customer ZQX42CANARY prefers email", namespace="crm/eu",
                        subject="user:42")
    keep = remote.remember("Customer 43 prefers phone", namespace="crm/eu", subject="user:43")
    remote.admin.legal_hold("crm/**", on=True, reason="litigation")
    with pytest.raises(LegalHoldActive):
        remote.forget(subject="user:42", reason="GDPR")
    remote.admin.legal_hold("crm/**", on=False, reason="settled")
    receipt = remote.forget(subject="user:42", reason="GDPR")
    assert receipt.memories == (m.id,) and receipt.counts["versions"] == 1
    with pytest.raises(NotFound):
        remote.get(m.id)
    with pytest.raises(InvalidInput):
        remote.forget(reason="no selector")
    policy = remote.admin.set_lifecycle("crm/**", ttl="1d", capacity=10)
    assert policy["ttl"] == 86_400_000_000
    assert remote.admin.lifecycle("crm/eu")["capacity"] == 10
    with pytest.raises(InvalidPolicy):
        remote.admin.set_lifecycle("crm/**", half_life=-3)
    report = remote.maintain()
    assert report.changed == 0
    with pytest.raises(InvalidInput):
        remote.restore(keep.id)  # not archived
    assert remote.verify().ok


def test_async_client_forgets(remote):
    m = remote.remember("Temporary ZQX77CANARY", namespace="tmp")

    async def go():
        async with AsyncClient(remote.server.url, remote.server.admin_key()) as client:
            return await client.forget(id=m.id, reason="cleanup")

    assert asyncio.run(go()).memories == (m.id,)


@pytest.mark.parametrize("name", ["forget"])
def test_client_signatures_match_the_session(name):
    want = inspect.signature(getattr(engramdb.Session, name))
    assert inspect.signature(getattr(Client, name)).parameters == want.parameters
    assert inspect.signature(getattr(AsyncClient, name)).parameters == want.parameters


@pytest.mark.parametrize("name", ["set_lifecycle", "lifecycle", "legal_hold"])
def test_remote_admin_signatures_match_the_admin(name):
    from engramdb.client._async import AsyncRemoteAdmin
    from engramdb.client._sync import RemoteAdmin
    want = inspect.signature(getattr(Admin, name)).parameters
    assert inspect.signature(getattr(RemoteAdmin, name)).parameters == want
    assert inspect.signature(getattr(AsyncRemoteAdmin, name)).parameters == want


def test_cli_forget_and_maintain(tmp_path, embedder):
    import json

    from click.testing import CliRunner

    from engramdb.cli import cli

    path = tmp_path / "engram.db"
    db = engramdb.open(path, embedder=embedder)
    m = db.remember("Customer ZQX91CANARY phone number", namespace="crm", subject="user:91")
    db.close()

    def run(*args):
        return CliRunner().invoke(cli, ["--db", str(path), *args], catch_exceptions=False)

    missing = run("forget", "--subject", "user:91")
    assert missing.exit_code == 2 and "--reason" in missing.output
    none = run("forget", "--reason", "why")
    assert none.exit_code == 2 and "invalid_input" in none.output
    done = run("--json", "forget", "--subject", "user:91", "--reason", "GDPR")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["memories"] == [m.id]
    report = run("--json", "maintain")
    assert report.exit_code == 0 and json.loads(report.stdout)["expired"] == []
    assert b"ZQX91CANARY" not in path.read_bytes()


def test_unknown_policy_fields_over_http_are_a_typed_400(remote):
    import httpx
    before = remote.verify().head_seq
    r = httpx.put(remote.server.url + "/v1/admin/lifecycle",
                  headers={"Authorization": f"Bearer {remote.server.admin_key()}"},
                  json={"pattern": "acme/**", "ttl": "1d", "forever": True})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_input"
    r = httpx.put(remote.server.url + "/v1/admin/lifecycle",
                  headers={"Authorization": f"Bearer {remote.server.admin_key()}"},
                  json={"pattern": "acme/**", "ttl": "-1d"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_policy"
    assert remote.admin.lifecycle("acme/x") is None
    assert remote.verify().head_seq == before + 2  # only the two admin keys were issued


def test_the_server_schedule_runs_maintain_and_can_be_switched_off(tmp_path, embedder):
    import time
    from datetime import UTC, datetime, timedelta

    from engramdb.server.serve import MaintenanceSchedule

    db = engramdb.open(tmp_path / "engram.db", embedder=embedder)
    gone = db.remember("stale", namespace="q", expires_at=datetime.now(UTC) - timedelta(1))
    off = MaintenanceSchedule(db, None)
    off.start()
    time.sleep(0.5)
    off.stop()
    assert off.runs == 0 and db.get(gone.id).status == "active"
    on = MaintenanceSchedule(db, 0.2)
    on.start()
    deadline = time.monotonic() + 30
    while db.get(gone.id).status == "active" and time.monotonic() < deadline:
        time.sleep(0.1)
    on.stop()
    assert db.get(gone.id).status == "archived" and on.runs >= 1
    db.close()
