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

from baton.api import server
from baton.channels.chat_schema import check_mode
from baton.channels.chat_service import create_chat_app
from baton.channels.chat_store import ChatStore
from baton.channels.chat_tokens import ChatTokens, load_or_mint
from baton.node.client import http_json

THREADS = 8  # polls park a thread each; a new poll ends a waiting one, so few are parked
STOP_TIMEOUT_S = 5.0


class ChatServer:
    """``with ChatServer(db_path) as chat: ... chat.url ...``; ``mode`` is "fencing"
    (baton's epochs and reply keys) or "telegram" (behaves as Telegram does). Its tokens
    (``chat.tokens``: the bot's and the user's) are minted beside the database at the
    first start and kept (baton.channels.chat_tokens)."""

    def __init__(
        self,
        db_path: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: str = "fencing",
        tokens: ChatTokens | None = None,
    ) -> None:
        self.mode = check_mode(mode)
        self.db_path = Path(db_path)
        self.host = host
        self._requested_port = port
        self.tokens = tokens  # None: the ones beside the database, minted at first start
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
    def bot_token(self) -> str:
        if self.tokens is None:
            raise RuntimeError("the chat server is not started")
        return self.tokens.bot

    @property
    def user_token(self) -> str:
        if self.tokens is None:
            raise RuntimeError("the chat server is not started")
        return self.tokens.user

    def api(self, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """The user API (``/api/...``) with the user token: GET, or POST with ``body``."""
        method = "GET" if body is None else "POST"
        return http_json(self.url + path, method, body, self.user_token, timeout)

    def machine_env(self) -> dict[str, str]:
        """What a machine needs in its environment to use this service as its channel
        and post as the user (`baton send`)."""
        return {"BATON_TELEGRAM_TOKEN": self.bot_token, "BATON_CHAT_USER_TOKEN": self.user_token}

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
                self.tokens = self.tokens or load_or_mint(self.db_path)
                app = create_chat_app(self.store, self.tokens)
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
