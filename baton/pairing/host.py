"""PairingService: the host side of `baton join`, as the HTTP views call it.

It runs on HTTP threads and may wait on actors (actors never wait on each other):
  start:  PairingActor spends an attempt and answers the SPAKE2 message.
  finish: PairingActor checks the joiner's key confirmation; we open the sealed card,
          check the joiner's signature in it (it holds the key it enrols) and check the
          card against the registry; the PairingActor consumes the session
          (exactly one racing joiner wins); the RegistryActor admits the joiner as a
          standby; the joiner gets the roster sealed under the run's key.
Peer bytes are decoded strictly here; anything malformed is a PairingError or
BadRequest (400), never a traceback.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import pykka

from baton.actors.messages import AddMachine, CheckCard, ListMachines
from baton.actors.pairing_actor import (
    AwaitApproval,
    ConsumeSession,
    Decide,
    GetApproval,
    GetSessionView,
    NewSession,
    RunStarted,
    StartRun,
    VerifyRun,
)
from baton.adapters.signing import verify_ed25519
from baton.core import safejson
from baton.core.errors import BadRequest, PairingError
from baton.core.identity import PublicIdentity
from baton.core.pairing import PairingSession
from baton.core.registry import CARD_FIELDS, OPTIONAL_CARD_FIELDS, MachineEntry
from baton.wire.pake import Side, b64d, b64e, possession_statement

log = logging.getLogger("baton.pairing")

PAIRING_VERSION = 1
APPROVAL_TIMEOUT_S = 60.0  # a joiner waits this long for the operator (--verify)
APPROVAL_POLL_S = 0.2


def _fields(body: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    """The string fields ``names`` of a request body, which must have exactly these keys."""
    expected = {"v", *names}
    if set(body) != expected:
        raise BadRequest(f"expected the fields {sorted(expected)}, got {sorted(body)}")
    if body["v"] != PAIRING_VERSION or isinstance(body["v"], bool):
        raise BadRequest(f"unsupported pairing version {body['v']!r}; this node speaks 1")
    values = [body[n] for n in names]
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, str):
            raise BadRequest(f"{name} must be a string")
    return values


class PairingService:
    def __init__(
        self,
        pairing: pykka.ActorRef[Any],
        registry: pykka.ActorRef[Any],
        ask: Callable[[pykka.ActorRef[Any], Any], Any],
        mesh_extras: Callable[[], dict[str, Any]],
        url: Callable[[], str],
    ) -> None:
        self.pairing = pairing
        self.registry = registry
        self.ask = ask
        self.mesh_extras = mesh_extras
        self.url = url  # where a joiner reaches us now (our addresses may change)

    def new_session(self, verify: bool) -> dict[str, Any]:
        session: PairingSession = self.ask(self.pairing, NewSession(verify))
        return {"code": session.code, "expires_at": session.expires_at, "url": self.url()}

    def view(self) -> dict[str, Any]:
        return dict(self.ask(self.pairing, GetSessionView()))

    def decide(self, session_id: str, accept: bool) -> None:
        self.ask(self.pairing, Decide(session_id, accept))

    def _await_operator(self, session: PairingSession, sas: str, nickname: str) -> None:
        """--verify: hold the joiner until the operator compares the SAS (or time runs out)."""
        self.ask(self.pairing, AwaitApproval(session.session_id, sas, nickname))
        deadline = time.monotonic() + APPROVAL_TIMEOUT_S
        while time.monotonic() < deadline:
            decision = self.ask(self.pairing, GetApproval(session.session_id, sas))
            if decision is not None:
                if decision:
                    return
                raise PairingError(
                    "the operator refused: the short authentication strings did not match"
                )
            time.sleep(APPROVAL_POLL_S)
        self.ask(self.pairing, Decide(session.session_id, False))  # unanswered: burn the code
        raise PairingError("the operator did not confirm the short authentication string in time")

    def start(self, body: Mapping[str, Any]) -> dict[str, Any]:
        [message] = _fields(body, ("joiner_message",))
        started: RunStarted = self.ask(self.pairing, StartRun(b64d(message, "joiner_message")))
        # the settings a joiner would adopt, sealed so only one that knows the code reads
        # them, and sent now so it can decline before it is admitted (issue 16)
        settings = {"settings": {k: v for k, v in self.mesh_extras().items() if v}}
        return {
            "v": PAIRING_VERSION,
            "run_id": started.run_id,
            "host_message": b64e(started.host_message),
            "host_confirmation": b64e(started.keys.host_confirmation()),
            "attempts_left": started.attempts_left,
            "sealed_settings": b64e(started.keys.seal(json.dumps(settings).encode(), Side.JOINER)),
        }

    def finish(self, body: Mapping[str, Any]) -> dict[str, Any]:
        run_id, mac, sealed = _fields(body, ("run_id", "joiner_confirmation", "sealed_card"))
        session, keys = self.ask(self.pairing, VerifyRun(run_id, b64d(mac, "joiner_confirmation")))
        card = _open_card(keys.open(b64d(sealed, "sealed_card"), Side.JOINER), keys.transcript)
        self.ask(self.registry, CheckCard(card, readmit=True))
        if session.verify:
            self._await_operator(session, keys.sas, str(card.get("nickname")))
        self.ask(self.pairing, ConsumeSession(session.session_id))
        entry: MachineEntry = self.ask(self.registry, AddMachine(card, readmit=True))
        log.info(
            "pairing: %s (%s) joined as standby; SAS %s", entry.nickname, entry.machine_id, keys.sas
        )
        members = self.ask(self.registry, ListMachines())
        roster = {
            "v": PAIRING_VERSION,
            "mesh": [m.to_dict() for m in members],
            **self.mesh_extras(),
        }
        sealed_roster = keys.seal(json.dumps(roster).encode(), Side.JOINER)
        return {"v": PAIRING_VERSION, "sealed_roster": b64e(sealed_roster)}


def _open_card(data: bytes, transcript: bytes) -> dict[str, Any]:
    """The joiner's card, once its proof of possession checks out (without the proof)."""
    try:
        card = safejson.loads(data)
    except ValueError:
        raise PairingError("the joiner's card is not JSON") from None
    if not isinstance(card, dict):
        raise PairingError("the joiner's card must be a JSON object")
    proof = card.pop("proof", None)
    if not isinstance(proof, str):
        raise PairingError("the joiner's card lacks its proof of key possession")
    signature = b64d(proof, "proof", 64)
    identity = PublicIdentity.from_dict(card, extra_ok=CARD_FIELDS | OPTIONAL_CARD_FIELDS)
    if not verify_ed25519(identity.signing_public, possession_statement(transcript), signature):
        log.warning("pairing: %s sent a card it cannot sign for", identity.machine_id)
        raise PairingError("the joiner's card is not signed by the key it claims")
    return card
