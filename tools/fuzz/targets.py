"""Every parser of outside bytes, as a fuzz target: a name, valid samples, ``parse(data)``
and the exceptions that count as a clear refusal. Anything else a parser raises is a
crash: a peer, a store, a chat service or a file could make a node fail with it.

Targets (what reaches each parser in a running node):
- envelope:      a wire frame, then its body's opener by type (markers, acks, sync
                 requests, forwarded messages, live-tail frames, handoffs, lease records,
                 roster entries); a refusal is a PeerFault.
- lease_record:  the lease store's record (git blob, etcd value); MalformedLease.
- pairing:       /api/pair/start and /finish bodies (fields, base64, the SPAKE2 element)
                 and the joiner's card; BadRequest or PairingError.
- bot_api:       a getUpdates answer from the chat service or Telegram, down to each
                 update (a bad one is skipped and counted, never raised); ChannelError.
- http_node:     JSON bodies on every POST route of the node's app; any 5xx is a crash.
- http_chat:     bodies and parameters on the chat service's routes; any 5xx is a crash.
- config:        config.toml text; ConfigError.
- registry_file: data/registry.json; HomeError.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nacl.public
import nacl.signing

from baton.adapters.signing import Ed25519Signer, verify_ed25519
from baton.api import create_app
from baton.channels.base import ChannelError
from baton.channels.botapi import BotApiChannel
from baton.channels.chat_service import create_chat_app
from baton.channels.chat_store import ChatStore
from baton.channels.chat_tokens import ChatTokens
from baton.channels.updates import parse_updates
from baton.core import safejson
from baton.core.errors import (
    BadRequest,
    BatonError,
    ConfigError,
    HomeError,
    InvalidCard,
    MalformedLease,
    PeerFault,
)
from baton.core.features import FeatureFlags
from baton.core.identity import derive_machine_id
from baton.core.knobs import resolve_settings
from baton.core.lease_record import LeaseRecord, sign_record
from baton.core.registry import MachineEntry, MachineRegistry, Role, entry_from_card
from baton.pairing.host import _fields, _open_card
from baton.stores.config_file import read_config
from baton.stores.registry_store import registry_from_bytes, registry_to_bytes
from baton.wire import handoff_transport as handoff
from baton.wire import marker_transport as markers
from baton.wire import tail_transport as tail
from baton.wire.envelope import Envelope, decode, encode, make_envelope
from baton.wire.lease_transport import LeaseTransport
from baton.wire.pake import JoinerPake, b64d, b64e, host_pake

MAX_FRAME = 1 << 20


@dataclass
class Target:
    name: str
    seeds: list[bytes]
    parse: Callable[[bytes], Any]
    refusals: tuple[type[BaseException], ...]


def _signer(seed: int) -> Ed25519Signer:
    key = nacl.signing.SigningKey(bytes([seed]) * 32)
    return Ed25519Signer(derive_machine_id(bytes(key.verify_key)), key)


A, B = _signer(1), _signer(2)
MEMBERS = {s.machine_id: bytes(s._key.verify_key) for s in (A, B)}


def _card(s: Ed25519Signer, nickname: str) -> dict[str, Any]:
    return {
        "machine_id": s.machine_id,
        "nickname": nickname,
        "signing_public": base64.b64encode(bytes(s._key.verify_key)).decode(),
        "encryption_public": base64.b64encode(
            bytes(nacl.public.PrivateKey(bytes([7]) * 32).public_key)
        ).decode(),
        "wire": "tcp://127.0.0.1:8421",
        "http": "http://127.0.0.1:8420",
    }


ENTRY = entry_from_card(_card(B, "bravo"), 1.7e9)
RECORD = sign_record(LeaseRecord(A.machine_id, 3, 1, 15000, 1.7e9), A)

BODIES: dict[str, dict[str, Any]] = {
    "ping": {},
    "pong": {"ping_id": "p1"},
    "roster": {"machines": [ENTRY.to_dict()]},
    "lease": {"record": RECORD.to_dict(), "token": ""},
    "marker": {"marker": {"id": "k", "state": "prepared"}, "signature": "00"},
    "marker_ack": {"id": "k"},
    "sync_request": {"keys": ["k"], "page": 0, "more": False},
    "user_message": {"item_id": "i1", "topic": "t", "text": "hi"},
    "user_message_ack": {"item_id": "i1", "message_id": 5},
    "tail": {"frames": [{"topic": "t", "seq": 1, "sealed": "AA=="}], "heads": {"t": 1}},
    "tail_ack": {"have": {"t": [1, "ab"]}, "pull": False},
    "handoff_request": {"handoff_id": "h1"},
    "handoff_begin": {"handoff_id": "h1", "heads": [["t", 1, "ab"]], "position": 3},
    "handoff_ack": {"handoff_id": "h1", "heads": [], "position": 3, "signature": "00"},
    "handoff_abort": {"handoff_id": "h1", "reason": "x"},
    "features": {"flags": FeatureFlags().changed(3, disabled=["state_sync"]).sign(A).to_dict()},
}

OPENERS: dict[str, Callable[[Envelope], Any]] = {
    "roster": lambda env: [MachineEntry.from_dict(m) for m in env.body["machines"]],
    "lease": LeaseTransport.decode,
    "marker": lambda env: markers.open_marker(env, MEMBERS, verify_ed25519),
    "marker_ack": markers.open_ack,
    "sync_request": markers.open_sync_request,
    "user_message": markers.open_forward,
    "tail": tail.open_flush,
    "tail_ack": tail.open_ack,
    "handoff_request": handoff.handoff_id_of,
    "handoff_begin": handoff.open_heads,
    "handoff_ack": lambda env: handoff.ack_signed(env, MEMBERS, verify_ed25519),
    "handoff_abort": handoff.handoff_id_of,
    "features": lambda env: FeatureFlags.from_dict(env.body["flags"]),
}


def _envelope(data: bytes) -> Any:
    env = decode(data, MAX_FRAME)
    opener = OPENERS.get(env.type)
    return opener(env) if opener else env


def envelope() -> Target:
    seeds = [
        encode(make_envelope(t, A.machine_id, B.machine_id, body, "m1", epoch=3))
        for t, body in BODIES.items()
    ]
    # InvalidCard: a roster entry, refused whole by the registry (registry.roster_refused)
    return Target("envelope", seeds, _envelope, (PeerFault, InvalidCard))


def lease_record() -> Target:
    return Target("lease_record", [RECORD.encode()], LeaseRecord.decode, (MalformedLease,))


CODE = "maple-otter-4821"


def _pairing(data: bytes) -> Any:
    body = safejson.loads(data)
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object")
    if "joiner_message" in body:
        [message] = _fields(body, ("joiner_message",))
        return host_pake(CODE, b64d(message, "joiner_message"))
    if "sealed_card" in body:
        _fields(body, ("run_id", "joiner_confirmation", "sealed_card"))
        return _open_card(base64.b64decode(body["sealed_card"], validate=True), b"t")
    return _fields(body, ())


def pairing() -> Target:
    start = {"v": 1, "joiner_message": b64e(JoinerPake(CODE).message)}
    card = json.dumps({**_card(B, "bravo"), "proof": b64e(bytes(64))}).encode()
    finish = {"v": 1, "run_id": "r1", "joiner_confirmation": b64e(bytes(32)),
              "sealed_card": b64e(card)}  # fmt: skip
    seeds = [json.dumps(start).encode(), json.dumps(finish).encode()]
    # any BatonError is an HTTP refusal (baton.api.errors); ValueError: base64 of the
    # fuzzer's card shortcut (a real card comes sealed)
    return Target("pairing", seeds, _pairing, (BatonError, ValueError))


def bot_api() -> Target:
    channel = BotApiChannel("local", "http://127.0.0.1:1", "t", fencing=True, poller_id="f")
    chat, sender = {"id": 1, "type": "private"}, {"id": 2, "is_bot": False}
    message = {"message_id": 7, "date": 1, "text": "hi", "chat": chat, "from": sender}
    update = {"update_id": 5, "message": message}

    def parse(data: bytes) -> Any:
        try:
            doc = safejson.loads(data)
        except ValueError as exc:
            raise ChannelError(f"not JSON: {exc}") from None
        result = channel._ok("getUpdates", 200, doc).get("result")
        if not isinstance(result, list):
            raise ChannelError("the result is not a list")
        return parse_updates(result, "local", None)

    seeds = [json.dumps({"ok": True, "result": [update]}).encode()]
    return Target("bot_api", seeds, parse, (ChannelError,))


class _Services:
    """The node's services as the fuzz sees them: every call accepts its body."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name == "token_ok":
            return lambda presented: True
        return lambda *args, **kw: {"ok": True, "status": "posted", "message_id": 1}


NODE_ROUTES = ["/api/machines", "/api/machines/remove", "/api/pair/session",
               "/api/pair/decide", "/api/send", "/api/wakeup", "/api/pair/start",
               "/api/pair/finish", "/api/leave", "/api/features", "/api/ui/login"]  # fmt: skip


class _Crash(Exception):
    pass


class _Refused(Exception):
    """A 4xx: the app refused the request clearly."""


def _http(client: Any, routes: list[str], headers: dict[str, str]) -> Callable[[bytes], Any]:
    state = {"i": 0}

    def parse(data: bytes) -> Any:
        state["i"] += 1
        route = routes[state["i"] % len(routes)]
        r = client.post(route, data=data, headers=headers)
        if r.status_code >= 500:
            raise _Crash(f"{route}: {r.status_code} {r.get_data()[:200]!r}")
        if r.status_code >= 400:
            raise _Refused(r.status_code)
        return r.status_code

    return parse


def http_node() -> Target:
    app = create_app(resolve_settings({}, {}, {}), _Services())
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    seeds = [b'{"name": "bravo"}', b'{"topic": "t", "text": "hi"}', b'{"force": false}']
    return Target("http_node", seeds, _http(app.test_client(), NODE_ROUTES, headers), (_Refused,))


def http_chat(workdir: Path) -> Target:
    app = create_chat_app(ChatStore(workdir / "chat.sqlite"), ChatTokens("1:x", "user"))
    routes = ["/bot1:x/sendMessage", "/bot1:x/getUpdates", "/api/topics/t/messages",
              "/api/faults", "/bot1:x/setWebhook", "/api/topics/t/messages/1/edit"]  # fmt: skip
    headers = {"Content-Type": "application/json", "Authorization": "Bearer user"}
    seeds = [b'{"chat_id": 1, "text": "hi", "baton_epoch": 1, "baton_reply_key": "k"}',
             b'{"offset": 1, "limit": 5, "timeout": 0}', b'{"text": "hi", "client_id": "c"}',
             b'{"send_delay_ms": 0}']  # fmt: skip
    return Target("http_chat", seeds, _http(app.test_client(), routes, headers), (_Refused,))


def config(workdir: Path) -> Target:
    path = workdir / "config.toml"

    def parse(data: bytes) -> Any:
        path.write_bytes(data)
        return resolve_settings(read_config(path), {}, {})

    seeds = [b'agent = "echo"\nlease_ttl_ms = 3000\nredact_patterns = ["default"]\n',
             b'http = "127.0.0.1:8420"\nchannel = "local:http://127.0.0.1:8480"\n']  # fmt: skip
    return Target("config", seeds, parse, (ConfigError,))


def registry_file() -> Target:
    me = replace(entry_from_card(_card(A, "alpha"), 1.7e9), role=Role.AWAKE)
    registry = MachineRegistry(
        self_id=A.machine_id, entries={ENTRY.machine_id: ENTRY, me.machine_id: me}
    )
    seeds = [registry_to_bytes(registry)]
    return Target(
        "registry_file", seeds, lambda d: registry_from_bytes(d, "registry.json"), (HomeError,)
    )


def all_targets(workdir: Path) -> list[Target]:
    """Every target; those that need files keep them in ``workdir`` (the caller's)."""
    return [
        envelope(), lease_record(), pairing(), bot_api(), http_node(), http_chat(workdir),
        config(workdir), registry_file(),
    ]  # fmt: skip
