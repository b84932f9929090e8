"""``engram audit``: signed checkpoints, rewrite detection and inclusion proofs.

::

    engram audit keygen                          create <db>.audit-key.pem (init does it)
    engram audit checkpoint -o cp.json           sign the log's size, head and Merkle root
    engram audit verify --checkpoint cp.json     was history rewritten after cp.json?
    engram audit prove 42 --checkpoint cp.json -o e42.json
    engram audit verify-proof e42.json --checkpoint cp.json   (no database needed)

Keep checkpoints and the public key outside the database: whoever can
rewrite the database file can also rewrite anything stored next to it.
Exit status 0 when a check passes, 1 when it fails, 2 on bad usage or errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from engramdb.audit.checkpoint import Checkpoint, load_public_key
from engramdb.audit.evidence import (
    EventProof,
    default_key_path,
    ensure_signing_key,
    public_key_path,
    verify_event_proof,
)
from engramdb.cli.app import EngramGroup, Env, pass_env

__all__ = ["command", "on_init"]

_KEY_HELP = "Ed25519 signing key (PEM). Default: <db file>.audit-key.pem."
_PUB_HELP = ("The signer's published public key (PEM). Without it the key inside the "
             "checkpoint is used, which proves nothing about who signed.")


def _key(env: Env, key: str | None) -> Path:
    return Path(key) if key is not None else default_key_path(env.target)


def _read_checkpoint(path: str) -> Checkpoint:
    return Checkpoint.from_json(Path(path).read_text(encoding="utf-8"))


def _write(env: Env, text: str, out: str | None, what: str) -> None:
    if out is None:
        click.echo(text, nl=False)
        return
    Path(out).write_text(text, encoding="utf-8")
    if not env.json:
        env.note(f"{what} written to {out}")


def on_init(env: Env, target: str) -> list[str]:
    """``engram init`` hook: create the checkpoint signing key next to the database."""
    if "://" in target:
        return ["No audit signing key for a server database; create one with "
                "`engram audit keygen --key PATH` and pass --key to `engram audit checkpoint`."]
    path = default_key_path(target)
    existed = path.exists()
    ensure_signing_key(path)
    verb = "Audit signing key" if existed else "Created audit signing key"
    return [f"{verb} {path} (mode 0600); publish {public_key_path(path)} to auditors."]


@click.group("audit", cls=EngramGroup)
def command() -> None:
    """Signed checkpoints of the log, rewrite detection and inclusion proofs."""


@command.command("keygen")
@click.option("--key", default=None, metavar="PATH", help=_KEY_HELP)
@pass_env
def keygen(env: Env, key: str | None) -> None:
    """Create the checkpoint signing key if it does not exist (and its .pub.pem)."""
    env.admin_only("audit keygen")
    path = _key(env, key)
    existed = path.exists()
    ensure_signing_key(path)
    if env.json:
        env.emit_json({"key": str(path), "public_key": str(public_key_path(path)),
                       "created": not existed})
        return
    verb = "Key exists:" if existed else "Created"
    env.out.print(Text(f"{verb} {path}; public key {public_key_path(path)}"))


@command.command("checkpoint")
@click.option("--key", default=None, metavar="PATH", help=_KEY_HELP)
@click.option("-o", "--out", default=None, metavar="FILE",
              help="Write the checkpoint here (default: stdout).")
@pass_env
def checkpoint(env: Env, key: str | None, out: str | None) -> None:
    """Verify the log, then sign its size, head hash and Merkle root."""
    env.admin_only("audit checkpoint")
    cp = env.open().checkpoint(_key(env, key))
    _write(env, cp.to_json(), out, f"checkpoint of {cp.tree_size} events")


@command.command("verify")
@click.option("--checkpoint", "checkpoint_file", required=True, metavar="FILE",
              help="A checkpoint written by `engram audit checkpoint`.")
@click.option("--public-key", default=None, metavar="FILE", help=_PUB_HELP)
@click.option("--quick", is_flag=True,
              help="Skip the full replay of the log; check the signed prefix only.")
@pass_env
def verify(env: Env, checkpoint_file: str, public_key: str | None, quick: bool) -> None:
    """Detect history rewritten after a checkpoint, even with every hash recomputed."""
    env.admin_only("audit verify")
    cp = _read_checkpoint(checkpoint_file)
    pub = None if public_key is None else load_public_key(public_key)
    report = env.open().verify_checkpoint(cp, pub, full=not quick)
    if env.json:
        env.emit_json(report.to_dict())
    else:
        style = "bold green" if report.ok else "bold red"
        head = "intact" if report.ok else "NOT intact"
        env.out.print(Text.assemble((f"Log {head} ", style),
                                    f"against checkpoint of {report.checkpoint_size} events "
                                    f"(log now holds {report.current_size})"))
        if report.problem:
            env.out.print(Text(report.problem, style="red"))
        if report.signature is not None and not report.signature.trusted:
            env.note("warning: " + (report.signature.reason or "untrusted signing key"),
                     style="yellow")
    if not report.ok:
        raise click.exceptions.Exit(1)


@command.command("prove")
@click.argument("event_seq", type=int)
@click.option("--checkpoint", "checkpoint_file", default=None, metavar="FILE",
              help="Prove against this checkpoint's tree size (default: the whole log).")
@click.option("-o", "--out", default=None, metavar="FILE",
              help="Write the proof here (default: stdout).")
@pass_env
def prove(env: Env, event_seq: int, checkpoint_file: str | None, out: str | None) -> None:
    """Emit an inclusion proof of event EVENT_SEQ (RFC 9162) with its envelope."""
    env.admin_only("audit prove")
    size = None if checkpoint_file is None else _read_checkpoint(checkpoint_file).tree_size
    proof = env.open().prove(event_seq, tree_size=size)
    _write(env, proof.to_json(), out, f"proof of event {event_seq}")


@command.command("verify-proof")
@click.argument("proof_file", metavar="PROOF")
@click.option("--checkpoint", "checkpoint_file", required=True, metavar="FILE",
              help="The checkpoint the proof was made against.")
@click.option("--public-key", default=None, metavar="FILE", help=_PUB_HELP)
@pass_env
def verify_proof(env: Env, proof_file: str, checkpoint_file: str,
                 public_key: str | None) -> None:
    """Check an inclusion proof against a checkpoint, without the database."""
    proof = EventProof.from_json(Path(proof_file).read_text(encoding="utf-8"))
    cp = _read_checkpoint(checkpoint_file)
    pub = None if public_key is None else load_public_key(public_key)
    check = verify_event_proof(proof, cp, pub)
    if env.json:
        out: dict[str, Any] = check.to_dict()
        out["event"] = dict(proof.event)
        env.emit_json(out)
    elif check.ok:
        ev = proof.event
        env.out.print(Text.assemble(("Proof valid: ", "bold green"),
                                    f"event {ev['seq']} ({ev['kind']} by {ev['actor']}) is in "
                                    f"the log of {cp.tree_size} events signed by key "
                                    f"{cp.key_id}"))
        if check.signature is not None and not check.signature.trusted:
            env.note("warning: " + (check.signature.reason or "untrusted key"), style="yellow")
    else:
        env.out.print(Text.assemble(("Proof INVALID: ", "bold red"), check.reason or ""))
    if not check.ok:
        raise click.exceptions.Exit(1)

