"""ChatServer: the bundled chat service on a real threaded WSGI server (waitress), in a
daemon thread, for `baton chat-server`, tests and the demo.

Invariants:
- start() binds and listens before it returns (a port in use raises AddressInUse and
  leaves nothing open); connections made after it returns are served.
- stop() is clean and idempotent: waiting long polls are woken first (so no worker thread
  is left parked for up to 50 s), then waitress stops inside its own loop, then the store
  closes. Nothing the service answered is lost: the store commits before it answers.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from baton.channels.chat_schema import check_mode
from baton.channels.chat_service import create_chat_app
from baton.channels.chat_store import ChatStore
from baton.http import server

THREADS = 8  # polls park a thread each; a new poll ends a waiting one, so few are parked
STOP_TIMEOUT_S = 5.0


class ChatServer:
    """``with ChatServer(db_path) as chat: ... chat.url ...``; ``mode`` is "fencing"
    (baton's epochs and reply keys) or "telegram" (behaves as Telegram does)."""

    def __init__(
        self,
        db_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        mode: str = "fencing",
    ) -> None:
        self.mode = check_mode(mode)
        self.db_path = Path(db_path)
        self.host = host
        self._requested_port = port
        self.token = token
        self.store: ChatStore | None = None
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the chat server is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> ChatServer:
        """Bind, open the store and serve; returns once the socket listens."""
        with self._lock:
            if self._sock is not None or self._stopped:
                raise RuntimeError("a ChatServer starts once")
            sock = server.bind(self.host, self._requested_port, "host", "the chat service")
            try:
                self.store = ChatStore(self.db_path, mode=self.mode)
                app = create_chat_app(self.store, self.token)
                self._server = server.serve(app, sock, THREADS, "baton-chat")
            except BaseException:
                sock.close()
                if self.store is not None:
                    self.store.close()
                raise
            self._sock = sock
            self._port = int(sock.getsockname()[1])
            self._thread = threading.Thread(
                target=self._server.run, name="baton-chat-http", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the store; a second call does nothing."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            if self.store is not None:
                self.store.interrupt()
            if self._server is not None:
                server.stop(self._server, STOP_TIMEOUT_S)
            if self._thread is not None:
                self._thread.join(STOP_TIMEOUT_S)
            if self._sock is not None:
                self._sock.close()
            if self.store is not None:
                self.store.close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
