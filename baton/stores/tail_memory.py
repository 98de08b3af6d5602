"""MemoryLiveTailBuffer: the LiveTailBuffer port in memory, the twin of SqliteLiveTailBuffer (tests,
simulations). Both pass tests/contract/test_tail_buffer.py.

Invariants:
- One lock makes every call atomic; frames are frozen values.
- A topic's chain is a list whose index i holds seq i + 1 (contiguous from 1), changed
  only as baton.core.live_tail.decide_frame says. Nothing survives the process.
"""

from __future__ import annotations

import threading

from baton.core.errors import TailError
from baton.core.live_tail import FrameResult, TailFrame, decide_frame


class MemoryLiveTailBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chains: dict[str, list[TailFrame]] = {}
        self._dirty: dict[str, int] = {}
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise TailError("the memory tail buffer is closed")

    def take(self, frame: TailFrame, head: int | None) -> FrameResult:
        with self._lock:
            self._open()
            chain = self._chains.setdefault(frame.topic, [])
            seq = frame.seq
            prev = chain[seq - 2].key if 1 < seq <= len(chain) + 1 else None
            held = (chain[seq - 1].key, chain[seq - 1].prev) if seq <= len(chain) else None
            result = decide_frame(prev, held, frame)
            if result in (FrameResult.ADDED, FrameResult.REPLACED):
                del chain[seq - 1 :]
                chain.append(frame)
                self._dirty[frame.topic] = min(self._dirty.get(frame.topic, seq), seq)
            if result is not FrameResult.REFUSED and head == seq:
                del chain[seq:]
            if not chain:
                del self._chains[frame.topic]
            return result

    def heads(self) -> dict[str, tuple[int, str]]:
        with self._lock:
            self._open()
            return {topic: (len(c), c[-1].key) for topic, c in self._chains.items()}

    def frames(self, topic: str, after_seq: int, limit: int) -> list[TailFrame]:
        with self._lock:
            self._open()
            if limit <= 0:
                return []
            start = max(0, after_seq)
            return list(self._chains.get(topic, [])[start : start + limit])

    def dirty(self) -> dict[str, int]:
        with self._lock:
            self._open()
            return dict(self._dirty)

    def clean(self, topic: str) -> None:
        with self._lock:
            self._open()
            self._dirty.pop(topic, None)

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def __repr__(self) -> str:
        return "MemoryLiveTailBuffer()"
