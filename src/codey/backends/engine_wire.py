"""Messages between the server and its engine process: length-prefixed pickles on a socket pair.

Both ends are codey's own processes, started by the server from its own interpreter, so pickle
carries the backend's dataclasses (Delta, Choice, SamplingParams) as they are.

server -> engine   ("run", id, tokens, params, stop, stream) | ("cancel", id) | ("reset", id)
engine -> server   ("ready", info) | ("failed", message) | ("delta", id, Delta)
                   ("done", id, choices, decode_rate) | ("error", id, message)
                   ("stats", 0, counters)
"""

from __future__ import annotations

import contextlib
import pickle
import socket
import struct
import threading
from typing import Any, BinaryIO

_LENGTH = struct.Struct("!I")


class Channel:
    """One end of the socket pair: whole messages in, whole messages out; sends are atomic."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._reader: BinaryIO = sock.makefile("rb")
        self._send_lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        with self._send_lock:
            self.sock.sendall(_LENGTH.pack(len(body)) + body)

    def recv(self) -> tuple[Any, ...] | None:
        """The next message, or None once the other end has gone."""
        try:
            head = self._reader.read(_LENGTH.size)
            if len(head) < _LENGTH.size:
                return None
            (length,) = _LENGTH.unpack(head)
            body = self._reader.read(length)
        except (OSError, ValueError):
            return None
        if len(body) < length:
            return None
        message: tuple[Any, ...] = pickle.loads(body)
        return message

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._reader.close()
        self.sock.close()
