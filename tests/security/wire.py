"""A raw WebSocket client on websockets' Sans-I/O protocol and a plain socket: it writes
whatever frames an attack needs and reads only when told to."""

from __future__ import annotations

import socket
from typing import Any

from websockets.client import ClientProtocol
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from envs.echo_env import EchoAction
from openenv.protocol import SUBPROTOCOL, Codec, reply_type, request_type
from openenv.types import Observation, State

REQUESTS = Codec(request_type(EchoAction))
REPLIES = Codec(reply_type(Observation, State))


class RawSession:
    """One WebSocket connection in our dialect (or upstream's, with ``ours=False``)."""

    def __init__(self, host: str, port: int, token: str | None = None, ours: bool = True) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.protocol = ClientProtocol(
            parse_uri(f"ws://{host}:{port}/ws"),
            subprotocols=[Subprotocol(SUBPROTOCOL)] if ours else None,
            max_size=None,
        )
        request = self.protocol.connect()
        if token is not None:
            request.headers["Authorization"] = f"Bearer {token}"
        self.protocol.send_request(request)
        self.flush()
        self.pending: list[Any] = []
        answered = False
        while not answered:
            for event in self._read():
                if isinstance(event, Response):
                    answered = True
                    if event.status_code != 101:
                        raise ConnectionError(f"refused: {event.status_code}")
                else:
                    self.pending.append(event)

    def _read(self) -> list[Any]:
        data = self.sock.recv(1 << 20)
        if not data:
            self.protocol.receive_eof()
        else:
            self.protocol.receive_data(data)
        return self.protocol.events_received()

    def flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def send(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes):
            self.protocol.send_binary(frame)
        else:
            self.protocol.send_text(frame.encode())
        self.flush()

    def frames(self, *frames: bytes) -> bytes:
        """The bytes of ``frames`` as this client would write them (not sent)."""
        for frame in frames:
            self.protocol.send_binary(frame)
        return b"".join(self.protocol.data_to_send())

    def recv(self) -> bytes | str:
        """The next data frame's payload (text decoded)."""
        while True:
            while self.pending:
                frame = self.pending.pop(0)
                if frame.opcode.name == "TEXT":
                    return frame.data.decode()
                if frame.opcode.name == "BINARY":
                    return bytes(frame.data)
                if frame.opcode.name == "CLOSE":
                    raise ConnectionError(f"closed: {self.protocol.close_rcvd}")
            self.pending.extend(self._read())
            if self.protocol.close_rcvd is not None and not self.pending:
                raise ConnectionError(f"closed: {self.protocol.close_rcvd}")

    def close(self) -> None:
        self.sock.close()
