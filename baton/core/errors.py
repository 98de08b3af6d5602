"""The one error tree of baton.

Invariants:
- Every error baton raises on purpose derives from BatonError.
- Each error carries a short machine-readable ``code`` (used as the ``error``
  field of JSON error bodies and as the counter suffix) and a human ``detail``.
- Peer faults (PeerFault and below) are dropped and counted at the boundary that
  sees them; they never bring a node down. Our own misuse fails loudly.
- HTTP status codes are decided in one place: baton.api.errors.
"""

from __future__ import annotations


class BatonError(Exception):
    """Root of every error baton raises on purpose."""

    code = "baton_error"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()


# --- configuration and the local home -------------------------------------


class ConfigError(BatonError):
    """The configuration is invalid."""

    code = "config_error"

    def __init__(self, knob: str, detail: str) -> None:
        super().__init__(f"{knob}: {detail}")
        self.knob = knob


class HomeError(BatonError):
    """The machine's home directory is missing, incomplete or unsafe."""

    code = "home_error"


class IdentityError(HomeError):
    """A key or identity file is missing, corrupt or has unsafe permissions."""

    code = "identity_error"


class IdentityExists(HomeError):
    """The home already holds an identity; init refuses to overwrite it."""

    code = "identity_exists"


class InvalidNickname(BatonError):
    """A nickname does not follow the rules."""

    code = "invalid_nickname"


class InvalidCard(BatonError):
    """A machine's public identity card is malformed or inconsistent."""

    code = "invalid_card"


class NicknameTaken(BatonError):
    """Another machine in the mesh already uses this nickname."""

    code = "nickname_taken"


class NotFound(BatonError):
    """The thing asked for does not exist."""

    code = "not_found"


# --- running node -----------------------------------------------------------


class NodeNotRunning(BatonError):
    """No node is running for this home."""

    code = "not_running"


class AlreadyRunning(BatonError):
    """A node is already running for this home."""

    code = "already_running"


class AddressInUse(BatonError):
    """A port the node needs is already taken."""

    code = "address_in_use"


class Unauthorized(BatonError):
    """Missing or wrong API token."""

    code = "unauthorized"


class MisdirectedRequest(BatonError):
    """A request to the operator API under a host name that is not this machine's (a
    page elsewhere whose name was made to point at loopback: DNS rebinding)."""

    code = "misdirected_request"


class BadRequest(BatonError):
    """The request is malformed."""

    code = "bad_request"


class Unavailable(BatonError):
    """The node could not answer in time."""

    code = "unavailable"


# --- peer faults: dropped and counted at the boundary -----------------------


class PeerFault(BatonError):
    """Something a peer (or a stranger) sent is unacceptable."""

    code = "peer_fault"


class FrameError(PeerFault):
    """A wire frame could not be accepted."""

    code = "bad_frame"


class MalformedFrame(FrameError):
    """The frame does not decode to a valid envelope."""

    code = "malformed"


class UnknownVersion(FrameError):
    """The envelope carries a protocol version this node does not speak."""

    code = "unknown_version"


class UnknownType(FrameError):
    """The envelope carries a message type this node does not know."""

    code = "unknown_type"


class FrameTooLarge(FrameError):
    """The frame is larger than max_frame_bytes."""

    code = "too_large"


class SpoofedSender(FrameError):
    """The envelope claims a sender other than the authenticated peer."""

    code = "spoofed_sender"


class RosterRefused(PeerFault):
    """A registry roster from a peer was not accepted."""

    code = "roster_refused"


class Misaddressed(FrameError):
    """The envelope is addressed to another machine."""

    code = "misaddressed"


# --- pairing ---------------------------------------------------------------------


class PairingError(BatonError):
    """Pairing could not go on."""

    code = "pairing_error"


class InvalidCode(PairingError):
    """The text is not a pairing code of the form WORD-WORD-NNNN."""

    code = "invalid_code"


class NoPairingSession(PairingError):
    """This machine has no pairing session; run `baton pair` on it first."""

    code = "no_pairing_session"


class PairingExpired(PairingError):
    """The pairing code has expired; run `baton pair` again for a new one."""

    code = "pairing_expired"


class PairingBurned(PairingError):
    """The pairing code has used up its attempts; run `baton pair` again for a new one."""

    code = "pairing_burned"


class PairingConsumed(PairingError):
    """The pairing code has already been used by a machine that joined."""

    code = "pairing_consumed"


class PairingRefused(PairingError):
    """What a joiner is told when the host has no open session for it: none was started,
    it expired, it was used or it used up its attempts. The host does not say which,
    so a stranger learns nothing of its sessions (the operator sees the state)."""

    code = "pairing_refused"


class WrongCode(PairingError):
    """The code does not match the one minted by `baton pair`."""

    code = "wrong_code"

    def __init__(self, detail: str = "", attempts_left: int = 0) -> None:
        super().__init__(detail)
        self.attempts_left = attempts_left


class RateLimited(BatonError):
    """Too many requests from this address; wait a little and try again."""

    code = "rate_limited"


class NotABatonNode(BatonError):
    """The URL does not answer like a baton node."""

    code = "not_a_baton_node"


# --- endpoint announcements (issue 17) -------------------------------------------


class AnnouncementRefused(PeerFault):
    """An endpoint announcement that is not accepted."""

    code = "announcement_refused"


class MalformedAnnouncement(AnnouncementRefused):
    """An announcement that does not decode (fields, types or endpoints)."""

    code = "announcement_malformed"


class ForgedAnnouncement(AnnouncementRefused):
    """An announcement not signed by the key of the machine it names, or sent by another
    machine than the one it names, or naming a machine that is not an active member."""

    code = "announcement_forged"


class StaleAnnouncement(AnnouncementRefused):
    """An announcement no newer than the last one accepted from its machine (replayed or
    overtaken)."""

    code = "announcement_stale"


# --- the lease ---------------------------------------------------------------


class LeaseRefused(PeerFault):
    """A lease record that is not accepted."""

    code = "lease_refused"


class MalformedLease(LeaseRefused):
    """A lease record that does not decode (fields, types or values)."""

    code = "lease_malformed"


class ForgedLease(LeaseRefused):
    """A lease record that is unsigned, or not signed by its holder's key."""

    code = "lease_forged"


class LeaseFromStranger(LeaseRefused):
    """A lease record whose holder is not an active member (unknown or revoked)."""

    code = "lease_stranger"


class StaleLease(LeaseRefused):
    """A lease record with an epoch below the highest this machine has seen."""

    code = "lease_stale"


class ReplayedLease(LeaseRefused):
    """A lease record not newer than the last one seen from the same holder."""

    code = "lease_replayed"


class LeaseStoreError(BatonError):
    """The lease store could not be asked; the outcome of a write is unknown."""

    code = "lease_store_unavailable"


# --- the message processing ledger -----------------------------------------------


class LedgerError(BatonError):
    """The ledger could not be read or written."""

    code = "ledger_error"


class LedgerCorrupt(LedgerError):
    """The ledger file is not a ledger this baton can read; it was left untouched."""

    code = "ledger_corrupt"


class LedgerTransitionError(LedgerError):
    """An illegal ledger transition was asked for; nothing changed."""

    code = "ledger_transition"


class UnknownEntry(LedgerError):
    """The ledger has no entry under that key."""

    code = "ledger_unknown"


class MarkerRefused(PeerFault):
    """A reply marker from a peer is malformed or inconsistent."""

    code = "marker_refused"


# --- transcripts -------------------------------------------------------------------


class TranscriptError(BatonError):
    """The transcript store could not be read or written."""

    code = "transcript_error"


class TranscriptCorrupt(TranscriptError):
    """The transcript file is not a transcript store this baton can read; it was left
    untouched."""

    code = "transcript_corrupt"


class ArchiveError(TranscriptError):
    """The transcript archive in the state directory could not be read or written."""

    code = "archive_error"


class TranscriptRefused(PeerFault):
    """A transcript turn is malformed (fields, types or values)."""

    code = "transcript_refused"


# --- pool ---------------------------------------------------------------------------


class PoolError(BatonError):
    """The pool's state could not be read or written."""

    code = "pool_error"


class PoolCorrupt(PoolError):
    """The pool's state file is not one this baton can read; it was left untouched."""

    code = "pool_corrupt"


class PoolNotHolder(PoolError):
    """Only the holder changes the pool."""

    code = "not_holder"


class PoolDisabled(Unavailable):
    """The pool is off: its routes answer 503 until it is turned on."""

    code = "pool_disabled"


class PoolUnknown(NotFound):
    """No such machine or topic in the pool (404)."""

    code = "unknown"


class PoolMoveConflict(BatonError):
    """A move that cannot be made as asked: already there, or it needs confirming (409)."""

    code = "move_conflict"


class PoolMoveLimited(RateLimited):
    """A topic moved too often (429)."""

    code = "rate_limited"


class PoolRefused(PeerFault):
    """A pool state (from a peer, or a file) is malformed."""

    code = "pool_refused"


# --- component flags (issue 21) ------------------------------------------------------


class FeatureRefused(BadRequest):
    """A component flag that is not one (unknown, or a core guarantee)."""

    code = "unknown_feature"


class FeatureNotHolder(BatonError):
    """Only the holder changes the component flags."""

    code = "not_holder"


class FeatureError(BatonError):
    """The component flags could not be read or written."""

    code = "features_error"


class ForgedFlags(PeerFault):
    """Component flags not signed by the member they name."""

    code = "flags_forged"


class FlagsNotFromHolder(PeerFault):
    """Component flags from a machine this one does not see hold at that epoch."""

    code = "flags_not_holder"


class MalformedFlags(PeerFault):
    """Component flags (a peer's, or a file's) that do not decode."""

    code = "flags_malformed"


class StaleFlags(PeerFault):
    """Component flags not newer than those this machine has (a replay, or a deposed
    holder's change)."""

    code = "flags_stale"


# --- live tail ----------------------------------------------------------------------


class TailError(BatonError):
    """The live-tail buffer could not be read or written."""

    code = "tail_error"


class TailCorrupt(TailError):
    """The live-tail buffer file is not a buffer this baton can read; left untouched."""

    code = "tail_corrupt"


class TailRefused(PeerFault):
    """A live-tail frame or ack is malformed, from a machine that is not the holder, or
    cannot be opened with this machine's key."""

    code = "tail_refused"


# --- planned handoff ------------------------------------------------------------------


class HandoffRefused(PeerFault):
    """A handoff message is malformed, or its signature does not verify."""

    code = "handoff_refused"


class RestartFailed(BatonError):
    """``baton restart``: the node did not come back, or came back on another version
    than the one installed (the UpdateRestartHandshake); the detail says which."""

    code = "restart_failed"


class UpgradeBlocked(BatonError):
    """``baton upgrade``: the version installed here cannot roll out without a gap (it
    cannot speak the protocol the mesh runs at)."""

    code = "upgrade_blocked"


class WakeupFailed(BatonError):
    """``baton wakeup`` could not make this machine awake; the detail says why (the old
    holder stays awake)."""

    code = "wakeup_failed"


# --- the core's state machines --------------------------------------------------------


class IllegalEvent(BatonError):
    """A core state machine was given what is not one of its events, or an answer to
    something it never asked: a fault of the shell that feeds it, never of a peer (a
    peer's input is refused as a PeerFault, or ignored and counted, as each machine
    says). Nothing changed."""

    code = "illegal_event"


# --- the agent's state (StateSync) ------------------------------------------------


class StateSyncError(BatonError):
    """The state repository or its remote could not be read or written."""

    code = "state_sync_error"


class UntrustedCommit(BatonError):
    """A state commit that may not reach the working tree: unsigned, signed by a key
    that was not a member's when it was made, rewriting history, or out of order."""

    code = "state_untrusted"

    def __init__(self, sha: str, reason: str) -> None:
        super().__init__(f"commit {sha[:12]}: {reason}")
        self.sha = sha
        self.reason = reason


# --- secrets (SecretStore) -------------------------------------------------------


class SecretsError(BatonError):
    """The secret store could not be read or written; nothing in it was changed."""

    code = "secrets_error"


class SecretsCorrupt(SecretsError):
    """The secret store's file is not one baton wrote, or was changed since (it fails
    its authentication); it was left as it is."""

    code = "secrets_corrupt"


class WrongSecretKey(SecretsError):
    """The secret store was sealed under another master key than this machine has."""

    code = "secrets_wrong_key"


class BadSecret(SecretsError):
    """A secret's name or value that the store refuses."""

    code = "bad_secret"


class NoSuchSecret(SecretsError):
    """No secret of that name."""

    code = "no_such_secret"


class CommitAhead(UntrustedCommit):
    """A state commit of a lease epoch above the highest this machine knows: not taken
    (yet); a machine that learns of a newer holder takes it then."""

    code = "state_ahead"
