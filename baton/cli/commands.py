"""Every command of the `baton` command line, loaded at once (``main`` loads each only
when it runs: baton.cli.support.COMMANDS). Commands live in lifecycle (init, up, down),
info (whoami, machines), status (status), ui (ui), pair (pair, join), members (machines
remove, leave), send (send), chat (chat-server), wakeup (wakeup), restart (restart, upgrade), doctor
(doctor), secret_cmds (secrets), pool_cmds (pool), feature_cmds (features) and demo
(demo):
importing each registers its commands on ``main``."""

from baton.cli import (
    chat,
    demo,
    doctor,
    feature_cmds,
    info,
    lifecycle,
    members,
    pair,
    pool_cmds,
    restart,
    secret_cmds,
    send,
    status,
    ui,
    wakeup,
)
from baton.cli.support import main

__all__ = [
    "chat",
    "demo",
    "doctor",
    "feature_cmds",
    "info",
    "lifecycle",
    "main",
    "members",
    "pair",
    "pool_cmds",
    "restart",
    "secret_cmds",
    "send",
    "status",
    "ui",
    "wakeup",
]
