"""``engram forget`` and ``engram maintain``: erasure and lifecycle maintenance."""

from __future__ import annotations

import click

from engramdb.cli.app import Env, cli, pass_env

__all__: list[str] = []


@cli.command()
@click.option("--id", "memory_id", default=None, help="Erase this memory.")
@click.option("--subject", default=None, help="Erase every memory about this subject.")
@click.option("--author", default=None, help="Erase every memory this principal wrote.")
@click.option("-n", "--namespace", default=None, help="Erase every memory in this glob.")
@click.option("--reason", required=True, help="Why (kept in the log).")
@pass_env
def forget(env: Env, memory_id: str | None, subject: str | None, author: str | None,
           namespace: str | None, reason: str) -> None:
    """Erase memories for good: every version, index and file (prints the receipt)."""
    receipt = env.session().forget(id=memory_id, subject=subject, author=author,
                                   namespace=namespace, reason=reason)
    if env.json:
        env.emit_json(receipt.to_dict())
        return
    counts = ", ".join(f"{k} {v}" for k, v in receipt.counts.items())
    env.say(f"erased {len(receipt.memories)} memories ({counts}); "
            f"erasure {receipt.erasure_id}, event {receipt.seq}")


@cli.command()
@pass_env
def maintain(env: Env) -> None:
    """Apply lifecycle policies now: expiry, decay, capacity (idempotent)."""
    env.admin_only("maintain")
    report = env.open().maintain()
    if env.json:
        env.emit_json(report.to_dict())
        return
    env.say(f"expired {len(report.expired)}, archived {len(report.archived)}, "
            f"over capacity {len(report.over_capacity)}, held {len(report.held)}, "
            f"reinforced {report.reinforced}")
