"""The node process: its composition root (``root``), the parts it builds (lease,
delivery, handoff), the services facade the HTTP API calls, the supervisor that runs it,
and the client by which anything else finds and calls a home's node."""


def __getattr__(name: str) -> object:
    """``baton.node.node_main``, which a supervisor started before the node became a
    package spawns by name (multiprocessing's spawn context imports it afresh): without
    it, upgrading under a running supervisor would crash-loop its next node start."""
    if name == "node_main":
        from baton.node.process import node_main

        return node_main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
