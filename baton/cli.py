"""The `baton` command line. Commands live in cli_node (init, up, down) and
cli_info (whoami, machines, status) and cli_pair (pair, join); this module assembles them."""

from baton import cli_info, cli_node, cli_pair
from baton.cli_support import main

__all__ = ["cli_info", "cli_node", "cli_pair", "main"]
