"""The command line: ``main`` assembles the click commands, ``support`` holds what they
share; one module per group of commands. Composition roots: only these, the node and the
supervisor may wire concrete adapters."""
