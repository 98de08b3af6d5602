"""The bundled chat service's two secrets (issue 16: it trusted everyone who reached it).

- The **bot token**, in every Bot API path (``/bot<token>/...``) as Telegram's is: the
  machines that poll and send hold it (``machine/telegram-token`` or
  ``BATON_TELEGRAM_TOKEN``).
- The **user token**, ``Authorization: Bearer`` on ``/api/*``: posting as the user,
  reading the log of sends and polls, setting faults. Tests, the demo and a machine's
  `baton send` hold it (``machine/chat-user-token`` or ``BATON_CHAT_USER_TOKEN``).

Both are minted at the service's first start and kept beside its database as
``<db>.bot-token`` and ``<db>.user-token``: 0600, written atomically, refused when
others may read them. Never on a command line (``/proc/PID/cmdline`` is world-readable).
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from baton.core.errors import ConfigError
from baton.stores.files import atomic_write, check_private_file

TOKEN_SHAPE = re.compile(r"[0-9A-Za-z:_-]{1,100}")


@dataclass(frozen=True)
class ChatTokens:
    bot: str
    user: str

    def __post_init__(self) -> None:
        for name, value in (("bot", self.bot), ("user", self.user)):
            if not TOKEN_SHAPE.fullmatch(value):
                raise ValueError(f"the {name} token is 1 to 100 of 0-9 A-Z a-z : _ -")

    def __repr__(self) -> str:  # never in a log line or a traceback
        return "ChatTokens(<secret>)"

    @classmethod
    def mint(cls) -> ChatTokens:
        """Fresh tokens: a bot token shaped like Telegram's, a user token of 32 bytes."""
        bot = f"{secrets.randbelow(10**9):09d}:{secrets.token_urlsafe(27)}"
        return cls(bot, secrets.token_urlsafe(32))

    def bot_ok(self, presented: str) -> bool:
        return hmac.compare_digest(presented.encode(), self.bot.encode())

    def user_ok(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self.user.encode()
        )


def token_paths(db: Path) -> tuple[Path, Path]:
    """Where the bot and user tokens of the chat kept in ``db`` live."""
    return db.with_name(db.name + ".bot-token"), db.with_name(db.name + ".user-token")


def load_or_mint(db: Path) -> ChatTokens:
    """The tokens beside ``db``, minted and written (0600) where missing; HomeError or
    ConfigError naming the file when one is readable by others or not a token."""
    values = []
    for path, fresh in zip(token_paths(db), _fresh(), strict=True):
        if not path.exists():
            atomic_write(path, (fresh + "\n").encode())
        check_private_file(path)  # HomeError naming the file and the chmod
        value = path.read_text(encoding="utf-8").strip()
        if not TOKEN_SHAPE.fullmatch(value):
            raise ConfigError("token", f"{path} does not hold a token")
        values.append(value)
    return ChatTokens(*values)


def _fresh() -> tuple[str, str]:
    minted = ChatTokens.mint()
    return minted.bot, minted.user
