"""A TCP server on loopback that accepts connections and never says a word: a hung
PostgreSQL, or a collector that is up but stuck."""

from __future__ import annotations

import socket
import threading


class HangingServer:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        """Stop listening and close every accepted connection: stuck clients see EOF."""
        self.sock.close()
        for connection in self.accepted:
            connection.close()

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
