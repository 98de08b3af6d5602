"""LeaseTransport: signed lease records between machines, over the encrypted wire.

A "lease" envelope is ``{record, token}``: the record as LeaseRecord.to_dict() (it is
Ed25519-signed by its holder, so it stays verifiable however it travels) and the lease
store's token for it ("" when unknown). ``push`` encodes and sends; ``decode`` is strict
and raises MalformedLease, never anything else; whether the record is signed by an
active member is the receiver's check (core.lease_record.check_record).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from baton.core.errors import MalformedLease
from baton.core.lease_record import LeaseRecord
from baton.wire.envelope import Envelope, make_envelope, new_message_id

MAX_TOKEN = 200  # a store token is short (a commit id, a revision)


class LeaseTransport:
    def __init__(
        self,
        me: str,
        send: Callable[[Envelope], bool],
        rng: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.me = me
        self.send = send
        self.rng = rng

    def push(self, to: str, record: LeaseRecord, token: str | None) -> bool:
        """Send ``record`` to machine ``to``; False if the wire could not take it now."""
        body = {"record": record.to_dict(), "token": token or ""}
        return self.send(make_envelope("lease", self.me, to, body, new_message_id(self.rng)))

    @staticmethod
    def decode(env: Envelope) -> tuple[LeaseRecord, str | None]:
        """The record and token of a lease envelope (its schema is checked by the wire)."""
        token = env.body.get("token")
        if not isinstance(token, str) or len(token) > MAX_TOKEN:
            raise MalformedLease(f"token: expected a string of at most {MAX_TOKEN} characters")
        return LeaseRecord.from_dict(env.body.get("record")), token or None
