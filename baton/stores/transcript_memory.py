"""MemoryTranscriptStore: the TranscriptStore port in memory, the twin of
SqliteTranscriptStore (tests, simulations).

Invariants:
- One lock makes every call atomic; a call that raises changed nothing (turns are
  frozen values, added only after they were built and decide_put said ADDED).
- A topic's turns are a list whose index i holds seq i + 1; a ledger key maps to the
  seq of its turn in that topic. A stored turn is never changed; only truncate removes.
- The rules are those of baton.core.transcript; both adapters pass
  tests/contract/test_transcript.py. Nothing survives the process (the only difference).
"""

from __future__ import annotations

import threading

from baton.core.errors import TranscriptError
from baton.core.transcript import PutResult, TranscriptTurn, decide_put


class MemoryTranscriptStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[str, list[TranscriptTurn]] = {}
        self._by_key: dict[tuple[str, str], int] = {}
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise TranscriptError("the memory transcript store is closed")

    def _add(self, turn: TranscriptTurn) -> None:
        self._turns.setdefault(turn.topic, []).append(turn)
        self._by_key[(turn.topic, turn.ledger_key)] = turn.seq

    def append(
        self,
        topic: str,
        ledger_key: str,
        message_id: int,
        text: str,
        *,
        replies: tuple[str, ...],
        at_ms: float,
    ) -> TranscriptTurn:
        with self._lock:
            self._open()
            held = self._turns.get(topic, [])
            turn = TranscriptTurn(
                topic, len(held) + 1, ledger_key, message_id, text, tuple(replies), at_ms
            )
            seq = self._by_key.get((topic, ledger_key))
            if seq is not None:
                return held[seq - 1]
            self._add(turn)
            return turn

    def put(self, turn: TranscriptTurn) -> PutResult:
        with self._lock:
            self._open()
            held = self._turns.get(turn.topic, [])
            at = held[turn.seq - 1] if turn.seq <= len(held) else None
            seq = self._by_key.get((turn.topic, turn.ledger_key))
            keyed = None if seq is None else held[seq - 1]
            result = decide_put(held[-1] if held else None, at, turn, keyed)
            if result is PutResult.ADDED:
                self._add(turn)
            return result

    def turns(self, topic: str, after_seq: int, limit: int) -> list[TranscriptTurn]:
        with self._lock:
            self._open()
            if limit <= 0:
                return []
            start = max(0, after_seq)
            return list(self._turns.get(topic, [])[start : start + limit])

    def history(self, topic: str, limit: int) -> list[TranscriptTurn]:
        with self._lock:
            self._open()
            if limit <= 0:
                return []
            return list(self._turns.get(topic, [])[-limit:])

    def truncate(self, topic: str, after_seq: int) -> int:
        with self._lock:
            self._open()
            held = self._turns.get(topic, [])
            dropped = held[max(0, after_seq) :]
            del held[max(0, after_seq) :]
            for turn in dropped:
                del self._by_key[(topic, turn.ledger_key)]
            return len(dropped)

    def last_seqs(self) -> dict[str, int]:
        with self._lock:
            self._open()
            return {topic: len(turns) for topic, turns in self._turns.items() if turns}

    def last_seq(self, topic: str) -> int:
        with self._lock:
            self._open()
            return len(self._turns.get(topic, []))

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __repr__(self) -> str:
        return "MemoryTranscriptStore()"
