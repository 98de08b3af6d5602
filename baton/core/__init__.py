"""Sans-IO core: pure rules and state machines. Standard library only.

Nothing here opens a file or a socket, reads a clock or draws randomness of its
own: time, randomness and bytes come in as arguments (see STYLE.md, habit 1).
"""
