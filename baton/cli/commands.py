"""The `baton` command line. Commands live in lifecycle (init, up, down), info (whoami,
machines, status), pair (pair, join), members (machines remove, leave), send (send),
chat (chat-server), wakeup (wakeup), doctor (doctor) and demo (demo); this module
assembles them: importing each registers its commands on ``main``."""

from baton.cli import chat, demo, doctor, info, lifecycle, members, pair, send, wakeup
from baton.cli.support import main

__all__ = [
    "chat",
    "demo",
    "doctor",
    "info",
    "lifecycle",
    "main",
    "members",
    "pair",
    "send",
    "wakeup",
]
