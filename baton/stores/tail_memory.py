"""MemoryLiveTailBuffer: the LiveTailBuffer port in memory, the twin of SqliteLiveTailBuffer (tests,
simulations). Both pass tests/contract/test_tail_buffer.py.

Invariants:
- One lock makes every call atomic; frames are frozen values.
- A topic's chain maps contiguous seqs (from 1, or from where ``prune`` left it) to
  frames, changed only as baton.core.live_tail.decide_frame says. Nothing survives the
  process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from baton.core.errors import TailError
from baton.core.live_tail import FrameResult, TailFrame, decide_frame


class MemoryLiveTailBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._chains: dict[str, dict[int, TailFrame]] = {}
        self._dirty: dict[str, int] = {}
        self._closed = False

    def _open(self) -> None:
        if self._closed:
            raise TailError("the memory tail buffer is closed")

    def take(self, frame: TailFrame, head: int | None) -> FrameResult:
        with self._lock:
            self._open()
            chain = self._chains.setdefault(frame.topic, {})
            seq = frame.seq
            below = chain.get(seq - 1)
            here = chain.get(seq)
            held = None if here is None else (here.key, here.prev)
            result = decide_frame(None if below is None else below.key, held, frame)
            if result in (FrameResult.ADDED, FrameResult.REPLACED):
                self._drop(chain, lambda s: s >= seq)
                chain[seq] = frame
                self._dirty[frame.topic] = min(self._dirty.get(frame.topic, seq), seq)
            if result is not FrameResult.REFUSED and head == seq:
                self._drop(chain, lambda s: s > seq)
            if not chain:
                del self._chains[frame.topic]
            return result

    @staticmethod
    def _drop(chain: dict[int, TailFrame], which: Callable[[int], bool]) -> int:
        gone = [s for s in chain if which(s)]
        for seq in gone:
            del chain[seq]
        return len(gone)

    def prune(self, topic: str, before_seq: int) -> int:
        with self._lock:
            self._open()
            chain = self._chains.get(topic, {})
            last = max(chain, default=0)
            return self._drop(chain, lambda s: s < min(before_seq, last))

    def heads(self) -> dict[str, tuple[int, str]]:
        with self._lock:
            self._open()
            return {topic: (max(c), c[max(c)].key) for topic, c in self._chains.items()}

    def frames(self, topic: str, after_seq: int, limit: int) -> list[TailFrame]:
        with self._lock:
            self._open()
            chain = self._chains.get(topic, {})
            return [chain[s] for s in sorted(s for s in chain if s > after_seq)][: max(0, limit)]

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
