"""The layout of a machine's home directory (docs/DESIGN.md, "Identity and the home").

Invariant: every path baton reads or writes inside a home comes from HomePaths,
so the layout is written down exactly once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = "~/.baton"


def resolve_home(option: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    """``--home`` wins, then ``BATON_HOME``, then ``~/.baton``; always absolute."""
    raw = option if option else env.get("BATON_HOME") or DEFAULT_HOME
    return Path(raw).expanduser().absolute()


@dataclass(frozen=True)
class HomePaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def machine_dir(self) -> Path:
        return self.root / "machine"

    @property
    def identity(self) -> Path:
        return self.machine_dir / "identity.json"

    @property
    def signing_key(self) -> Path:
        return self.machine_dir / "signing.key"

    @property
    def encryption_key(self) -> Path:
        return self.machine_dir / "encryption.key"

    @property
    def api_token(self) -> Path:
        return self.machine_dir / "api-token"

    @property
    def telegram_token(self) -> Path:
        """The bot token: Telegram's, or the bundled chat service's (``local:``)."""
        return self.machine_dir / "telegram-token"

    @property
    def chat_user_token(self) -> Path:
        """The bundled chat service's user token (`baton send` posts as the user)."""
        return self.machine_dir / "chat-user-token"

    @property
    def state_signing_key(self) -> Path:
        """The signing key again, in OpenSSH's form, for git's SSH commit signing; 0600."""
        return self.machine_dir / "state-signing.key"

    @property
    def pairing_session(self) -> Path:
        return self.machine_dir / "pairing-session.json"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def registry(self) -> Path:
        return self.data_dir / "registry.json"

    @property
    def pending_join(self) -> Path:
        """A join made while the node ran: applied by the node's next start."""
        return self.data_dir / "join.pending.json"

    @property
    def restart_handshake(self) -> Path:
        """What `baton restart` expects the next node to run (UpdateRestartHandshake)."""
        return self.data_dir / "restart.expected.json"

    @property
    def features(self) -> Path:
        """The last signed component flags this machine took or set."""
        return self.data_dir / "features.json"

    @property
    def allowed_signers(self) -> Path:
        """Who may sign state commits, and when: written from the registry (StateSync)."""
        return self.data_dir / "allowed-signers"

    @property
    def state_git(self) -> Path:
        """The git directory of state/, kept outside it: the agent writes state/, never
        the repository's config or hooks (git runs those)."""
        return self.data_dir / "state.git"

    @property
    def ledger(self) -> Path:
        return self.data_dir / "ledger.sqlite"

    @property
    def transcripts(self) -> Path:
        """Every topic's transcript (baton.stores.transcript_sqlite)."""
        return self.data_dir / "transcripts.sqlite"

    @property
    def pool(self) -> Path:
        """The pool's state: on or off, pins, placements (baton.stores.pool_sqlite)."""
        return self.data_dir / "pool.sqlite"

    @property
    def tail_dir(self) -> Path:
        return self.data_dir / "tail"

    @property
    def tail_buffer(self) -> Path:
        """The LiveTailBuffer (SQLite, frames sealed to this machine's key), 0600."""
        return self.tail_dir / "buffer.sqlite"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def node_run_file(self) -> Path:
        """pid, ports and start time of the running node, written once it is up."""
        return self.run_dir / "node.json"

    @property
    def last_error(self) -> Path:
        """Why the supervisor last gave up ({error, detail}), for `baton up --detach`."""
        return self.run_dir / "last-error.json"

    @property
    def supervisor_lock(self) -> Path:
        """Held (flock) by the supervisor for as long as it lives."""
        return self.run_dir / "supervisor.lock"

    @property
    def node_lock(self) -> Path:
        """Held (flock) by the node process for as long as it lives."""
        return self.run_dir / "node.lock"
