"""SecretTransport: secrets between members (SecretSync), over the CURVE wire.

Two envelopes:
- ``secrets_have`` {"have": {name: [set_at, set_by]}, "reply": bool}: the versions a
  machine has, no value (baton.core.secret_rules.digest); a reply to another's;
- ``secret`` {"box": base64}: one secret (or removal), as JSON, in PyNaCl's SealedBox
  to the recipient's X25519 key: an ephemeral key seals it, so the sender cannot open
  it afterwards, and only the recipient's key can.

The CURVE link under both has forward secrecy of its own (its session keys are
transient); the box keeps a secret sealed end to end, to the one member it is for,
whatever carries it.

Invariants:
- ``open_have`` and ``open_secret`` return only what baton.core.secret_rules accepts,
  or raise BadSecret; a box that does not open is BadSecret too.
- ``give`` and ``have`` raise ValueError when the envelope exceeds the wire's frame
  limit (the caller counts it); nothing else they meet raises.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from typing import Any

import nacl.exceptions
import nacl.public

from baton.core import secret_rules as rules
from baton.core.errors import BadSecret
from baton.core.secret_rules import Secret
from baton.wire.envelope import Envelope, make_envelope, new_message_id


class SecretTransport:
    def __init__(
        self, me: str, send: Callable[[Envelope], bool], rng: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.me = me
        self.send = send
        self.rng = rng

    def have(self, to: str, digest: Mapping[str, Any], *, reply: bool = False) -> bool:
        """The versions this machine has; ``reply`` when it answers a peer's (a reply is
        never answered with versions again). ValueError past the frame limit."""
        body = {"have": dict(digest), "reply": reply}
        return self.send(make_envelope("secrets_have", self.me, to, body, new_message_id(self.rng)))

    def give(self, to: str, recipient: bytes, name: str, secret: Secret) -> bool:
        """``name`` sealed to ``recipient`` (the peer's X25519 key), sent to ``to``."""
        box = nacl.public.SealedBox(nacl.public.PublicKey(recipient))
        sealed = base64.b64encode(box.encrypt(rules.to_wire(name, secret))).decode()
        env = make_envelope("secret", self.me, to, {"box": sealed}, new_message_id(self.rng))
        return self.send(env)


def open_have(env: Envelope) -> dict[str, tuple[float, str]]:
    return rules.read_digest(env.body["have"])


def open_secret(env: Envelope, key: nacl.public.PrivateKey) -> tuple[str, Secret]:
    """The secret in a ``secret`` envelope, opened with this machine's key."""
    try:
        sealed = base64.b64decode(env.body["box"], validate=True)
        raw = nacl.public.SealedBox(key).decrypt(sealed)
    except (binascii.Error, ValueError):
        raise BadSecret("the box is not base64") from None
    except nacl.exceptions.CryptoError:
        raise BadSecret("the box does not open with this machine's key") from None
    return rules.from_wire(raw)
