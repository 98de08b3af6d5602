"""SecretSyncActor: every member keeps every secret (SecretSync).

Each machine tells each peer which versions it has (``secrets_have``, no values) when
its store changes (a ``baton secrets set`` here, or a secret taken from a peer), when a
peer joins, and every ``every_ms``. A peer answers with each secret it has a newer
version of, sealed to the asker's X25519 key (``secret``), at most MAX_GIVE per ask
(starting where the last ask to that peer stopped, so a name the peer refuses never
holds back the rest), and, unless the ask was itself a reply, with its own versions
when the asker has newer ones: a change travels in one exchange either way, and two
members that cannot agree (a store over its limit) exchange once per ``every_ms``,
never in a loop. Each name's newest version wins (baton.core.secret_rules).

When the registry shows a machine removed that the master key was not yet rotated for,
the key is rotated (the store sealed again under a new one) and the secrets the
removed machine knew are named in the log, to be rotated at their source.

Invariants:
- Only the active members' envelopes are looked at; a secret or a digest that does
  not read, or a box that does not open, is refused (``secrets.refused``), logged at
  most a few times a minute, and changes nothing; even a failure nobody foresaw is
  counted so, and the actor goes on.
- An envelope over the wire's frame limit is counted (``secrets.unsent``), not sent.
- A store that cannot be read (``secrets.unavailable``) stops nothing: the next tick
  tries again.
- Values are in no log line, no counter and no error.
- With the ``secret_sync`` component flag off (``baton features``) nothing is told,
  given or taken (``secrets.disabled`` counts what came); a machine's own changes still
  reach its agent, and travel once the flag is back on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import nacl.public
import pykka

from baton.actors.messages import EnvelopeReceived, MembersChanged, Tick
from baton.adapters.metrics import Counters
from baton.core import secret_rules as rules
from baton.core.clock import Clock
from baton.core.errors import BadSecret, BatonError
from baton.core.ratelimit import RateLimiter
from baton.core.secret_rules import SecretKeeper
from baton.wire.envelope import Envelope
from baton.wire.secret_transport import SecretTransport, open_have, open_secret

log = logging.getLogger("baton.secrets")

EVERY_MS = 10_000
MAX_GIVE = 64
ROUTES = ("secrets_have", "secret")


class SecretSyncActor(pykka.ThreadingActor):
    def __init__(
        self,
        store: SecretKeeper,
        *,
        transport: SecretTransport,
        key: nacl.public.PrivateKey,
        removed: Callable[[], Iterable[str]],
        clock: Clock,
        counters: Counters,
        on_change: Callable[[set[str]], None],
        every_ms: int = EVERY_MS,
        enabled: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__()
        self.store = store
        self.enabled = enabled  # the component flag (baton features)
        self.transport = transport
        self.key = key
        self.removed = removed
        self.clock = clock
        self.counters = counters
        self.on_change = on_change
        self.every_ms = every_ms
        self.peers: dict[str, bytes] = {}  # machine id -> X25519 public key
        self.stamp: Any = None
        self.versions: dict[str, tuple[float, str]] = {}
        self.due_ms = 0.0
        self.give_from: dict[str, int] = {}  # peer -> where the next gifts start
        self.handled: set[str] = set()  # removals met with no master key to rotate
        self.log_limit = RateLimiter(rate_per_s=1 / 20, burst=3)

    def on_start(self) -> None:
        self._look(tell=False)
        self._rotate_for_removed()

    def on_receive(self, message: Any) -> Any:
        try:
            self._receive(message)
        except Exception as exc:  # a failure nobody foresaw: counted, never the actor's end
            self.counters.inc("secrets.unavailable")
            self._log("unexpected", f"secret sync failed: {type(exc).__name__}: {exc!s:.200}")
        return None

    def _receive(self, message: Any) -> None:
        match message:
            case Tick(now_ms=now_ms):
                changed = self._look(tell=True)  # this machine's own change counts here
                if not self.enabled():
                    self.due_ms = 0.0  # told at the first tick once it is back on
                elif changed or now_ms >= self.due_ms:
                    self.due_ms = now_ms + self.every_ms
                    self._tell(self.peers)
            case MembersChanged(peers=peers):
                new = {p.machine_id for p in peers} - set(self.peers)
                self.peers = {p.machine_id: p.identity.encryption_public for p in peers}
                self._tell(new if self.enabled() else ())
                self._rotate_for_removed()
            case EnvelopeReceived(envelope=env) if not self.enabled():
                self.counters.inc("secrets.disabled")  # off: nothing taken nor given
            case EnvelopeReceived(envelope=env) if env.sender in self.peers:
                self._guarded(env)
            case EnvelopeReceived(envelope=env):
                self._refused("stranger", f"{env.type} from {env.sender}, not a member")

    # --- what this machine has ---------------------------------------------------------

    def _entries(self) -> dict[str, rules.Secret] | None:
        try:
            return self.store.entries()
        except BatonError as exc:
            self.counters.inc("secrets.unavailable")
            self._log("unavailable", f"the secret store cannot be read: {exc.detail}")
            return None

    def _look(self, *, tell: bool) -> bool:
        """Whether the store changed since the last look; the names that changed go to
        ``on_change`` (the agent's environment) when ``tell``."""
        stamp = self.store.stamp()
        if stamp == self.stamp:
            return False
        entries = self._entries()
        if entries is None:
            return False
        self.stamp = stamp
        versions = {n: s.version for n, s in entries.items()}
        every = versions.keys() | self.versions.keys()
        changed = {n for n in every if versions.get(n) != self.versions.get(n)}
        self.versions = versions
        if changed and tell:
            self.on_change(changed)
        return bool(changed)

    def _tell(self, peers: Iterable[str]) -> None:
        peers = list(peers)
        entries = self._entries() if peers else None
        if entries is None:
            return
        digest = rules.digest(entries)
        for peer in peers:
            if self._have(peer, digest, reply=False):
                self.counters.inc("secrets.told")

    def _have(self, peer: str, digest: dict[str, Any], *, reply: bool) -> bool:
        try:
            return self.transport.have(peer, digest, reply=reply)
        except ValueError as exc:  # more versions than one frame holds
            self.counters.inc("secrets.unsent")
            self._log("unsent", f"versions not sent to {peer}: {exc}")
            return False

    # --- what peers say ----------------------------------------------------------------

    def _guarded(self, env: Envelope) -> None:
        try:
            if env.type == "secrets_have":
                self._asked(env)
            else:
                self._given(env)
        except BadSecret as exc:
            self._refused("bad", f"{env.type} from {env.sender}: {exc.detail}")
        except BatonError as exc:
            self.counters.inc("secrets.unavailable")
            self._log("unavailable", f"the secret store failed: {exc.detail}")
        except Exception as exc:  # nobody foresaw it: refused all the same, never fatal
            self._refused("bad", f"{env.type} from {env.sender}: {type(exc).__name__}")

    def _asked(self, env: Envelope) -> None:
        theirs = open_have(env)
        entries = self._entries()
        if entries is None:
            return
        newer = rules.newer_here(entries, theirs)
        start = self.give_from.get(env.sender, 0) % max(1, len(newer))
        self.give_from[env.sender] = start + MAX_GIVE
        for name in (newer[start:] + newer[:start])[:MAX_GIVE]:
            try:
                sent = self.transport.give(env.sender, self.peers[env.sender], name, entries[name])
            except ValueError as exc:  # larger than the wire's frames
                self.counters.inc("secrets.unsent")
                self._log("unsent", f"secret {name} not sent to {env.sender}: {exc}")
                continue
            self.counters.inc("secrets.given" if sent else "secrets.unsent")
        if not env.body["reply"] and rules.newer_there(entries, theirs):
            self._have(env.sender, rules.digest(entries), reply=True)

    def _given(self, env: Envelope) -> None:
        name, secret = open_secret(env, self.key)
        if self.store.take(name, secret, self.clock.wall_s()):
            self.counters.inc("secrets.taken")
            log.info("secret %s taken from %s (set by %s)", name, env.sender, secret.set_by)
            self._look(tell=True)
            self._tell(p for p in self.peers if p != env.sender)  # passed on at once

    # --- removals ----------------------------------------------------------------------

    def _rotate_for_removed(self) -> None:
        try:
            handled = {*self.store.rotated_for(), *self.handled}
            removed = tuple(sorted(set(self.removed()) - handled))
            if not removed:
                return
            known = sorted(rules.live(self.store.entries()))
            if self.store.rotate(removed) is None:  # no store, no key: nothing to rotate
                self.handled |= set(removed)
                return
        except BatonError as exc:
            self.counters.inc("secrets.unavailable")
            self._log("unavailable", f"cannot rotate the secrets' master key: {exc.detail}")
            return
        self.counters.inc("secrets.rotated")
        log.warning(
            "%s removed: the secrets' master key is rotated; the secrets it knew, to rotate "
            "at their source: %s",
            ", ".join(removed),
            ", ".join(known) or "none",
        )

    def _refused(self, why: str, line: str) -> None:
        self.counters.inc(f"secrets.refused.{why}")
        self._log(why, f"refused: {line}")

    def _log(self, kind: str, line: str) -> None:
        if self.log_limit.allow(kind, self.clock.monotonic_ms() / 1000):
            log.warning("%s", line)
