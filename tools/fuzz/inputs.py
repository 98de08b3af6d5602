"""Inputs for the fuzzer, from a seed alone: mutations of valid samples (byte level and
JSON aware), nasty JSON values, and random bytes. No I/O.

The nasty values are what broke or could break a parser of outside bytes: nesting
thousands deep, integers of thousands of digits, 1e999, NaN and Infinity tokens, lone
surrogates, very long strings, duplicated keys, wrong types everywhere.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from typing import Any


def nasty_texts(rng: random.Random) -> str:
    """One JSON text that is hard on a parser, as text (some are not JSON at all)."""
    depth = rng.choice((65, 200, 1000, 3000, 20000))
    choices: list[Callable[[], str]] = [
        lambda: "[" * depth + "]" * depth,
        lambda: '{"a":' * depth + "1" + "}" * depth,
        lambda: "[" * depth,  # unclosed
        lambda: "1" * rng.choice((4300, 4301, 20000)),
        lambda: "-" + "9" * 5000,
        lambda: rng.choice(("1e999", "-1e999", "NaN", "Infinity", "-Infinity", "-0", "1e-999")),
        lambda: '"' + "\\ud800" + '"',
        lambda: '"' + "x" * rng.choice((4097, 70000, 1 << 20)) + '"',
        lambda: '{"a":1,"a":2}',
        lambda: "\ufeff{}",
        lambda: "",
        lambda: "null",
    ]
    return rng.choice(choices)()


NASTY_VALUES: list[Any] = [
    None, True, False, 0, -1, 2**63, -(2**63) - 1, 10**30, 1.5, float("nan"), "", "x" * 5000,
    "\ud800", "m_aaaaaaaaaaaaaaaa", [], {}, [None], {"": None}, "../../etc/passwd", "\x00",
]  # fmt: skip


def nasty_value(rng: random.Random) -> Any:
    pick = rng.random()
    if pick < 0.15:
        depth = rng.choice((10, 65, 500))
        value: Any = 1
        for _ in range(depth):
            value = [value] if rng.random() < 0.5 else {"k": value}
        return value
    return rng.choice(NASTY_VALUES)


def mutate_json(doc: Any, rng: random.Random) -> Any:
    """``doc`` with one node replaced, removed or added (a fresh copy)."""
    doc = json.loads(json.dumps(doc))
    holders: list[tuple[Any, Any]] = []  # (container, key) of every node

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            holders.append((node, key))
            if isinstance(child, (dict, list)):
                walk(child)

    if not isinstance(doc, (dict, list)) or not doc:
        return nasty_value(rng)
    walk(doc)
    container, key = rng.choice(holders)
    action = rng.random()
    if action < 0.6:
        container[key] = nasty_value(rng)
    elif action < 0.8:
        if isinstance(container, dict):
            del container[key]
        else:
            container.pop(key)
    elif isinstance(container, dict):
        container[rng.choice(("extra", "v", "type", "body", "signature"))] = nasty_value(rng)
    else:
        container.append(nasty_value(rng))
    return doc


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a few byte-level changes."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        at = rng.randrange(len(out) + 1)
        if op < 0.3 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op < 0.5:
            out[at:at] = bytes([rng.randrange(256)])
        elif op < 0.7 and out:
            del out[at : at + rng.randint(1, 8)]
        elif op < 0.85:
            del out[at:]
        else:
            chunk = out[at : at + rng.randint(1, 16)]
            out[at:at] = chunk * rng.randint(1, 50)
    return bytes(out)


def dumps(doc: Any) -> bytes:
    """JSON of ``doc`` the way an attacker may write it (NaN allowed, surrogates kept)."""
    return json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass")


def inputs(seeds: list[bytes], rng: random.Random) -> Callable[[], bytes]:
    """A generator of inputs: mostly mutations of ``seeds``, some nasty, some random."""
    docs = []
    for seed in seeds:
        with contextlib.suppress(ValueError):  # a seed that is not JSON: bytes only
            docs.append(json.loads(seed))

    def next_input() -> bytes:
        pick = rng.random()
        if pick < 0.4 and docs:
            return dumps(mutate_json(rng.choice(docs), rng))
        if pick < 0.75 and seeds:
            return mutate_bytes(rng.choice(seeds), rng)
        if pick < 0.9:
            return nasty_texts(rng).encode("utf-8", "surrogatepass")
        if pick < 0.95 and seeds:
            return rng.choice(seeds)  # the valid ones must pass
        return rng.randbytes(rng.randrange(64))

    return next_input
