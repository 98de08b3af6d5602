"""Moving a topic from the conversation itself (sans-IO): "move this to the mini",
"move it back here" (the shared design's RelocationNicknameSet and NicknameCommand).

Theory of operation. The holder reads every inbound message before it routes it. A
message that is, as a whole, a move command naming a machine of the mesh is taken as
one (``NicknameCommand.parse``) and never reaches the agent; anything else, a sentence
that merely contains the words, or a name no machine has, is an ordinary message. "Here"
is the machine that reads the command (the holder, the door the user talks to), whose
own nickname the RelocationNicknameSet always holds, so "move it back here" cannot fall
through to the agent even in a mesh that lost the others.

The grammar, case and surrounding punctuation ignored, an optional "please" first or
last:
``move`` ``this|it|the topic|this topic|this conversation|this chat`` (``back``)
``to|on|onto`` (``the``) NICKNAME, or ... (``back``) ``here``. Only "move": "run this
here" or "put it on the desktop" are things people ask an agent. A command is
at most MAX_COMMAND characters: a long message is a message.

Invariants:
- ``parse`` never raises on any text and returns a command only with a target in the
  set.
- ``RelocationNicknameSet(names, own)`` contains ``own`` whatever ``names`` holds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_COMMAND = 120

_COMMAND = re.compile(
    r"(?:please\s+)?move\s+"
    r"(?:this|it|the\s+topic|this\s+topic|this\s+conversation|this\s+chat)\s+"
    r"(?:back\s+)?(?:(?:to|on|onto)\s+(?:the\s+)?(?P<name>[a-z][a-z0-9-]*)|(?P<here>here))"
    r"(?:\s*,?\s*please)?",
    re.ASCII,
)
_EDGES = " \t\r\n.!?,;:\"'`*_()[]"


class RelocationNicknameSet:
    """The nicknames a move may name: the mesh's members' and this machine's own."""

    def __init__(self, nicknames: Mapping[str, str] | Iterable[tuple[str, str]], own: str,
                 own_id: str) -> None:  # fmt: skip
        pairs = nicknames.items() if isinstance(nicknames, Mapping) else nicknames
        self.by_name: dict[str, str] = {name: machine_id for name, machine_id in pairs}
        self.by_name[own] = own_id
        self.own = own

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def machine(self, name: str) -> str | None:
        return self.by_name.get(name)


@dataclass(frozen=True)
class NicknameCommand:
    """A move asked for in the conversation: the topic to the machine ``nickname``."""

    nickname: str
    machine_id: str
    here: bool  # "move it back here": the machine that read it

    @classmethod
    def parse(cls, text: object, names: RelocationNicknameSet) -> NicknameCommand | None:
        if not isinstance(text, str) or len(text) > MAX_COMMAND:
            return None
        found = _COMMAND.fullmatch(" ".join(text.lower().strip(_EDGES).split()))
        if found is None:
            return None
        here = found.group("here") is not None
        name = names.own if here else found.group("name")
        machine_id = names.machine(name)
        return None if machine_id is None else cls(name, machine_id, here)
