"""JSON from bytes we did not write, with a depth limit. No I/O.

``loads`` parses as ``json.loads`` does (same keyword arguments) and refuses a document
nested deeper than ``MAX_DEPTH``, or so deep that CPython's parser runs out of recursion,
with ``TooDeep``. TooDeep is a ValueError, like every other refusal of the standard
parser (JSONDecodeError, CPython's limit on very long integer literals), so a caller
that refuses malformed JSON with ``except ValueError`` refuses a deep document the same
way. Before issue 16 a 3,000-deep lease record raised RecursionError out of the lease
decoder (read as "store unreachable" rather than garbage) and a 5,000-deep body was a
500 on every JSON route.

No document baton writes or reads comes near the limit: its deepest (a status view) is
under 8 levels. The check walks the parsed document without recursion.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class TooDeep(ValueError):
    """A JSON document nested deeper than the limit."""


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH, **kw: Any) -> Any:
    """``json.loads(data, **kw)``; TooDeep past ``max_depth`` levels of arrays and objects."""
    try:
        doc = json.loads(data, **kw)
    except RecursionError:
        raise TooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if depth_exceeds(doc, max_depth):
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return doc


def depth_exceeds(doc: Any, limit: int) -> bool:
    """Whether ``doc`` has more than ``limit`` levels of nested lists and dicts."""
    stack = [(doc, 1)] if isinstance(doc, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False
