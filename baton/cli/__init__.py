"""The command line: ``main`` assembles the click commands, ``support`` holds what they
share; one module per group of commands. Composition roots: only these, the node and the
supervisor may wire concrete adapters."""


def __getattr__(name: str) -> object:
    """``baton.cli:main``, the console script's entry point: the click group with
    every command (baton.cli.commands). Lazy: importing one command module does not
    load them all."""
    if name == "main":
        from baton.cli.commands import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
