"""`baton machines remove NICK` (on the awake machine) and `baton leave` (on a standby).

A removed machine knew every secret set before its removal (SecretSync gives every
member all of them): `remove` names them, to be rotated at their source, and every
remaining member rotates its master key (baton.actors.secret_sync_actor). A machine
that leaves deletes its secret store and master key with its private keys.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from typing import Any

import click

from baton.cli.info import machines
from baton.cli.lifecycle import stop_node
from baton.cli.support import Ctx, command, main
from baton.core.errors import BadRequest, BatonError, HomeError
from baton.core.registry import Role, Status
from baton.node.client import NodeClient, http_json
from baton.pairing.membership import sign_leave
from baton.stores.identity_store import load_identity, load_public_identity
from baton.stores.registry_store import JsonRegistryStore
from baton.stores.secret_keys import system_keychain
from baton.stores.secret_store import SecretStore


@command(machines, "remove")
@click.argument("name")
@click.option("--reason", default="removed by the awake machine", show_default=True)
def remove(ctx: Ctx, name: str, reason: str) -> None:
    """Revoke another machine (run on the awake machine). Revocation sticks: only a
    fresh pairing brings it back."""
    row = NodeClient(ctx.home).post("/api/machines/remove", {"name": name, "reason": reason})
    row = {**row, "secrets_known": _secrets_known(ctx, row.get("revoked_at"))}

    def human(r: dict[str, Any]) -> None:
        click.echo(f"revoked {r['nickname']} ({r['machine_id']}): {r['revoked_reason']}")
        known = r["secrets_known"]
        if known is None:
            click.echo("the secret store cannot be read here: see `baton secrets list`")
        elif known:
            click.echo(f"it knew these secrets; rotate them at their source: {', '.join(known)}")

    ctx.emit(row, human)


def _secrets_known(ctx: Ctx, revoked_at: float | None) -> list[str] | None:
    """The secrets set before ``revoked_at``: every member had them. None when the
    store cannot be read."""
    me = load_public_identity(ctx.home)
    try:
        secrets = SecretStore(ctx.paths, me.machine_id, system_keychain()).all()
    except BatonError:
        return None
    until = time.time() if revoked_at is None else revoked_at
    return sorted(n for n, s in secrets.items() if s.set_at <= until)


@command(main, "leave")
@click.option("--timeout", default=30.0, show_default=True, help="Seconds to wait for the node.")
def leave(ctx: Ctx, timeout: float) -> None:
    """Leave the mesh (run on a standby).

    The awake machine records the revocation, then this machine's node stops and its
    private keys are deleted."""
    identity = load_identity(ctx.home)
    store = JsonRegistryStore(ctx.paths.registry)
    registry = store.load()
    if registry is None or not registry.active_peers():
        raise BadRequest(f"{identity.nickname} is not in a mesh")
    me = registry.me
    if me.role is Role.AWAKE:
        raise BadRequest(
            f"{identity.nickname} is awake; hand the role to another machine "
            "(baton wakeup there) before it leaves"
        )
    awake = next((e for e in registry.active_peers() if e.role is Role.AWAKE), None)
    if awake is None:
        raise HomeError("no awake machine in this machine's registry to ask")
    request = sign_leave(identity.signing_key, me.machine_id, awake.machine_id, me.added_at)
    recorded = http_json(awake.http + "/api/leave", "POST", request)
    stopped = stop_node(ctx.paths, timeout)
    store.save(
        replace(
            registry,
            entries={
                **registry.entries,
                me.machine_id: replace(
                    me,
                    status=Status.REVOKED,
                    revoked_at=time.time(),
                    revoked_reason="left the mesh",
                ),
            },
        )
    )
    try:
        deleted = SecretStore(ctx.paths, me.machine_id, system_keychain()).forget()
    except OSError as exc:  # the keys go all the same; the error is said
        click.echo(f"the secret store was not deleted: {exc}", err=True)
        deleted = []
    for path in (ctx.paths.signing_key, ctx.paths.encryption_key, ctx.paths.api_token):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            deleted.append(str(path))
    result: dict[str, Any] = {
        "ok": True,
        "left": me.machine_id,
        "recorded_by": awake.machine_id,
        "revoked_at": recorded.get("revoked_at"),
        "node_stopped": stopped["stopped"],
        "deleted": deleted,
    }
    ctx.emit(
        result,
        lambda d: click.echo(
            f"{identity.nickname} left the mesh (recorded by {awake.nickname}); "
            f"private keys and secrets deleted"
        ),
    )
