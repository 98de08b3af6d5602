"""The command line: ``main`` assembles the click commands, ``support`` holds what they
share; one module per group of commands. Composition roots: only these, the node and the
supervisor may wire concrete adapters."""


def __getattr__(name: str) -> object:
    """``baton.cli:main``, the console script's entry point: the click group, which
    loads a command's module only when that command runs (baton.cli.support.COMMANDS)."""
    if name == "main":
        from baton.cli.support import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
