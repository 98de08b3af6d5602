"""The `baton` command line. Commands live in cli_node (init, up, down) and
cli_info (whoami, machines, status), cli_pair (pair, join) and cli_members
(machines remove, leave), cli_send (send), cli_chat (chat-server) and cli_wakeup
(wakeup), cli_doctor (doctor) and cli_demo (demo); this module assembles them."""

from baton import (
    cli_chat,
    cli_demo,
    cli_doctor,
    cli_info,
    cli_members,
    cli_node,
    cli_pair,
    cli_send,
    cli_wakeup,
)
from baton.cli_support import main

__all__ = [
    "cli_chat",
    "cli_demo",
    "cli_doctor",
    "cli_info",
    "cli_members",
    "cli_node",
    "cli_pair",
    "cli_send",
    "cli_wakeup",
    "main",
]
