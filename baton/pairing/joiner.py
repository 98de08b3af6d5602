"""The joiner's side of pairing: `baton join URL --code CODE [--name NICK]`.

Order: check the code's shape, check the URL answers like a baton node, make (or load)
this machine's identity, run SPAKE2 over /api/pair/start and /api/pair/finish with key
confirmation both ways, and only then write the roster as this machine's registry. The
code never leaves this process. The card the joiner seals to the host carries its
Ed25519 signature over the run's transcript: it holds the key it enrols.

A home created by a join that fails is removed, so a failed join leaves nothing
behind, with one exception: once /finish was sent and no clear refusal came back (the
answer was lost, garbled or interrupted), the host may have admitted this machine.
Then the identity is kept and the error says so: joining again with a new code is
recognized as the same machine (no ghost member holding the nickname).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from baton.adapters.netif import advertised_by
from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.build import THIS
from baton.core import safejson
from baton.core.announce import Announcement, next_announcement, sign_announcement
from baton.core.errors import (
    AlreadyRunning,
    BadRequest,
    BatonError,
    ConfigError,
    MalformedAnnouncement,
    NotABatonNode,
    PairingError,
    RateLimited,
    Unavailable,
    WrongCode,
)
from baton.core.knobs import resolve_settings
from baton.core.pairing import MAX_ATTEMPTS, normalize_code, wrong_code
from baton.core.registry import MachineEntry, MachineRegistry, Role, is_signed_by
from baton.node.client import http_json, restart_node
from baton.stores.config_file import load_settings, render_config
from baton.stores.home import HomePaths
from baton.stores.identity_store import MachineIdentity, create_home, load_identity
from baton.stores.pending_join import apply_pending_join, write_pending_join
from baton.stores.registry_store import JsonRegistryStore
from baton.stores.runfile import ProcessLock
from baton.wire.envelope import is_machine_id
from baton.wire.pake import JoinerPake, PakeKeys, Side, b64d, b64e, possession_statement

VERSION = 1
TIMEOUT_S = 15.0
RATE_LIMIT_PATIENCE_S = 60.0
FINISH_TIMEOUT_S = 90.0  # the host may hold /finish while its operator checks the SAS
MAYBE_ADMITTED = (
    "; the awake machine may have admitted this machine before the answer was lost, "
    "so its identity is kept: join again with a new code (it is recognized as the same "
    "machine), or `baton machines remove` it on the awake machine"
)


class _Progress:
    """How far a join got, for the cleanup after a failure."""

    may_be_member = False


class Consent:
    """What the joiner's operator decides, asked by ``join`` at two points. The defaults
    accept everything but a code agent (a script's --yes); the CLI asks a person."""

    def show(self, sas: str, offered: Mapping[str, str]) -> None:
        """Before /finish: the SAS and the host's settings, to be shown."""

    def settings(self, sas: str, offered: Mapping[str, str]) -> None:
        """Before /finish (nothing admitted yet): raise to decline the host's settings."""

    def sas(self, sas: str) -> None:
        """After /finish, before anything is written: raise if the host showed other
        digits (--verify)."""


def join(
    home: Path,
    url: str,
    code: str,
    name: str | None,
    *,
    config: Mapping[str, object] | None = None,
    consent: Consent | None = None,
    timeout: float = TIMEOUT_S,
    trust_agent: bool = False,
) -> dict[str, Any]:
    """Join the mesh whose awake machine serves ``url``; returns {ok, sas, mesh, ...}.

    ``config`` (knobs such as http and wire) is written to config.toml only when the join
    creates this machine's home. ``timeout`` bounds each request but /finish, which
    may wait for the host's operator (FINISH_TIMEOUT_S). The host's settings (lease
    store, channel, agent) come sealed with its first answer; ``consent`` sees them
    before this machine is admitted, and a ``cmd:`` or ``python:`` agent (programs it
    would run here once it holds) is refused unless ``trust_agent``."""
    code = normalize_code(code)
    paths = HomePaths(home)
    url = url.rstrip("/")
    host_id = _check_is_node(url, timeout)
    created = not paths.identity.exists()
    progress = _Progress()
    try:
        identity = _identity(home, name, created, config or {}, host_id)
        asked = _Asked(consent or Consent(), trust_agent)
        return _pair(paths, identity, url, code, asked=asked, timeout=timeout, progress=progress)
    except BatonError as exc:
        if progress.may_be_member:
            exc.detail += MAYBE_ADMITTED
            exc.args = (exc.detail,)
        elif created:
            shutil.rmtree(home, ignore_errors=True)
        raise
    except BaseException:  # Ctrl-C: the same rule, without a message to amend
        if created and not progress.may_be_member:
            shutil.rmtree(home, ignore_errors=True)
        raise


def _check_is_node(url: str, timeout: float) -> str:
    """The machine id of the node at ``url``; NotABatonNode if it is not one."""
    health = http_json(url + "/health", timeout=timeout)
    if not (
        isinstance(health, dict)
        and health.get("ok") is True
        and is_machine_id(health.get("machine_id"))
    ):
        raise NotABatonNode(f"{url} answers, but not like a baton node")
    return str(health["machine_id"])


def _identity(
    home: Path, name: str | None, create: bool, config: Mapping[str, object], host_id: str
) -> MachineIdentity:
    if create:
        if not name:
            raise BadRequest(f"{home} has no identity yet; give this machine a --name")
        resolve_settings(config, {}, {})  # refuse a bad knob before anything is written
        return create_home(home, name, render_config(config))
    if config:
        raise BadRequest(f"{home} already has a config; change it there, not with join")
    identity = load_identity(home)
    if name and name != identity.nickname:
        raise BadRequest(f"this machine is already called {identity.nickname!r}")
    saved = JsonRegistryStore(HomePaths(home).registry).load()
    # Re-pairing into the same mesh is how a revoked machine comes back; another mesh
    # would mean leaving this one first.
    if saved is not None and saved.active_peers() and host_id not in saved.entries:
        raise BadRequest(
            f"{identity.nickname} is already in another mesh of "
            f"{len(saved.entries)}; `baton leave` it first"
        )
    return identity


class _Asked:
    """The join's two questions: the settings (a code agent refused first unless
    trusted) and, with --verify, the SAS."""

    def __init__(self, consent: Consent, trust_agent: bool) -> None:
        self.consent, self.trust_agent = consent, trust_agent

    def settings(self, sas: str, offered: Mapping[str, str]) -> None:
        self.consent.show(sas, offered)
        agent = offered.get("agent", "")
        if agent.split(":", 1)[0] in CODE_AGENTS and not self.trust_agent:
            raise PairingError(
                f"the awake machine's agent is {agent!r}: this machine would run it once it "
                "holds; nothing was admitted. Join with --trust-agent if you mean it"
            )
        self.consent.settings(sas, offered)


CODE_AGENTS = ("cmd", "python")


def _pair(
    paths: HomePaths,
    identity: MachineIdentity,
    url: str,
    code: str,
    *,
    asked: _Asked,
    timeout: float,
    progress: _Progress,
) -> dict[str, Any]:
    settings = load_settings(paths.root, os.environ, {})
    if 0 in (settings.wire.port, settings.http.port) or (settings.door and not settings.door_port):
        raise ConfigError("wire", "a machine that joins needs fixed ports (not 0) for its peers")
    wire, http = advertised_by(settings)
    card: dict[str, Any] = {**identity.public.to_dict(), "wire": wire[0], "http": http}
    said = _announcement(identity, wire, http)
    if said is not None:  # its versions: the mesh knows what it runs from the start
        card["announcement"] = said
    pake = JoinerPake(code)
    started = _post(
        url + "/api/pair/start", timeout, {"v": VERSION, "joiner_message": b64e(pake.message)}
    )
    keys = pake.finish(b64d(_text(started, "host_message"), "host_message"))
    try:  # a host that does not know our code learns nothing more: stop here
        keys.check_host_confirmation(b64d(_text(started, "host_confirmation"), "host_confirmation"))
    except WrongCode:
        raise wrong_code(_attempts_left(started)) from None
    offered = _open_settings(keys, _text(started, "sealed_settings"))
    asked.settings(keys.sas, offered)  # a refusal here: nothing admitted
    proof = identity.signing_key.sign(possession_statement(keys.transcript)).signature
    sealed_card = keys.seal(json.dumps({**card, "proof": b64e(proof)}).encode(), Side.HOST)
    progress.may_be_member = True
    try:
        finished = _post(
            url + "/api/pair/finish",
            FINISH_TIMEOUT_S,
            {
                "v": VERSION,
                "run_id": _text(started, "run_id"),
                "joiner_confirmation": b64e(keys.joiner_confirmation()),
                "sealed_card": b64e(sealed_card),
            },
        )
    except (Unavailable, NotABatonNode):
        raise  # no clear answer: the host may have admitted us
    except BatonError:
        progress.may_be_member = False  # the host answered with a refusal
        raise
    roster = _open_roster(keys, _text(finished, "sealed_roster"))
    registry = _registry(identity, roster["mesh"])
    asked.consent.sas(keys.sas)  # --verify: before anything is written
    restarted = _settle(paths, registry, offered)
    return {
        "ok": True,
        "sas": keys.sas,
        "machine_id": identity.machine_id,
        "nickname": identity.nickname,
        "mesh": [
            {"machine_id": e.machine_id, "nickname": e.nickname, "role": e.role.value}
            for e in registry.listing()
        ],
        "lease_store": offered.get("lease_store"),
        "restarted": restarted,
    }


def _settle(paths: HomePaths, registry: MachineRegistry, offered: Mapping[str, str]) -> bool:
    """Write what the join decided; apply it now, or when this machine's node runs, have
    it restart to apply it (baton.stores.pending_join). True when the node restarted."""
    write_pending_join(paths, registry, offered)
    lock = ProcessLock(paths.node_lock, "node")
    try:
        lock.acquire()
    except AlreadyRunning:
        restart_node(paths)
        return True
    try:
        apply_pending_join(paths)
    finally:
        lock.release()
    return False


MESH_KNOBS = ("lease_store", "channel", "agent", "agent_sandbox")  # what a joiner takes


def _open_settings(keys: PakeKeys, sealed: str) -> dict[str, str]:
    """The host's mesh settings, checked (a bad value is refused, not written later)."""
    try:
        doc = safejson.loads(keys.open(b64d(sealed, "sealed_settings"), Side.HOST))
    except ValueError:
        raise PairingError("the host's settings are not JSON") from None
    offered = doc.get("settings") if isinstance(doc, dict) else None
    if not isinstance(offered, dict) or set(offered) - set(MESH_KNOBS):
        raise PairingError(f"the host's settings must be an object of {', '.join(MESH_KNOBS)}")
    if not all(isinstance(v, str) and v and v.isprintable() for v in offered.values()):
        # printable only: an escape sequence could make the consent screen show another
        # value than the one adopted (issue 16's review)
        raise PairingError("the host's settings must be non-empty printable strings")
    try:
        resolve_settings(offered, {}, {})
    except ConfigError as exc:
        raise PairingError(f"the host's settings are refused: {exc.detail}") from None
    return offered


def _attempts_left(started: Mapping[str, Any]) -> int:
    left = started.get("attempts_left")
    if isinstance(left, bool) or not isinstance(left, int) or not 0 <= left <= MAX_ATTEMPTS:
        raise PairingError("the host's answer has no valid attempts_left")
    return left


def _post(url: str, timeout: float, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST to the host; a 429 (the host's pairing limit, perhaps under someone's flood)
    is tried again with a growing wait for up to RATE_LIMIT_PATIENCE_S: a request it
    refused did nothing, so sending it again is safe."""
    deadline, wait = time.monotonic() + RATE_LIMIT_PATIENCE_S, 0.5
    while True:
        try:
            answer = http_json(url, "POST", body, timeout=timeout)
            break
        except RateLimited:
            if time.monotonic() + wait > deadline:
                raise
            time.sleep(wait)  # the host said to wait; a deadline bounds it
            wait = min(wait * 2, 8.0)
    if not isinstance(answer, dict) or answer.get("v") != VERSION:
        raise NotABatonNode(f"{url} did not answer like a baton node (pairing v{VERSION})")
    return answer


def _text(doc: Mapping[str, Any], field: str) -> str:
    value = doc.get(field)
    if not isinstance(value, str):
        raise PairingError(f"the host's answer lacks {field}")
    return value


def _open_roster(keys: PakeKeys, sealed: str) -> dict[str, Any]:
    try:
        roster = safejson.loads(keys.open(b64d(sealed, "sealed_roster"), Side.HOST))
    except ValueError:
        raise PairingError("the host's roster is not JSON") from None
    if not isinstance(roster, dict) or not isinstance(roster.get("mesh"), list):
        raise PairingError("the host's roster has no member list")
    return roster


def _registry(identity: MachineIdentity, members: list[Any]) -> MachineRegistry:
    try:
        entries = {e.machine_id: e for e in (MachineEntry.from_dict(m) for m in members)}
        registry = MachineRegistry(self_id=identity.machine_id, entries=entries).check()
    except (BatonError, TypeError, AttributeError) as exc:
        raise PairingError(f"the host's roster is not valid: {exc}") from None
    me = registry.me
    if me.identity != identity.public or me.role is not Role.STANDBY:
        raise PairingError("the host's roster does not list this machine as a standby")
    awake = [e for e in registry.entries.values() if e.role is Role.AWAKE]
    if len(awake) != 1 or not all(
        is_signed_by(e, awake[0], verify_ed25519) for e in registry.entries.values()
    ):
        raise PairingError("the host's roster is not signed by its awake member")
    return registry


def _announcement(
    identity: MachineIdentity, wire: tuple[str, ...], http: str
) -> dict[str, Any] | None:
    """This machine's signed announcement for its card (None if it would not read: the
    node announces once it runs, as without)."""
    me = identity.machine_id
    made = next_announcement(None, me, wire, http, int(time.time() * 1000), versions=THIS)
    assert made is not None  # (nothing announced before: always one)
    doc = sign_announcement(made, Ed25519Signer(me, identity.signing_key)).to_dict()
    try:
        Announcement.from_dict(doc)
    except MalformedAnnouncement:
        return None
    return doc
