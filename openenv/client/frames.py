"""Whole messages out of websockets' frames, for both client connections.

websockets' Sans-I/O protocol hands over frames; a message may arrive in fragments (a first
``TEXT``/``BINARY`` frame, then ``CONT`` frames up to one with ``fin``). Both connections, the
asyncio one and the blocking one, join them the same way and differ only in where a whole
message goes: their ``_deliver``.
"""

from __future__ import annotations

from typing import cast

from websockets.frames import Frame, Opcode

__all__ = ["Reassembly"]


class Reassembly:
    """Joins fragmented frames; the class it is mixed into takes each message in ``_deliver``
    and sets ``_fragments = []`` and ``_fragmented_text = False`` in its ``__init__``."""

    _fragments: list[bytes]
    _fragmented_text: bool

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        data = cast(bytes, frame.data)  # frames parsed from the network carry bytes
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            if frame.fin:
                self._deliver(data, opcode is Opcode.TEXT)
            else:
                self._fragments = [data]
                self._fragmented_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT:
            self._fragments.append(data)
            if frame.fin:
                data, self._fragments = b"".join(self._fragments), []
                self._deliver(data, self._fragmented_text)

    def _deliver(self, data: bytes, text: bool) -> None:
        """Take one whole message (``text``: a text frame's, still to be decoded)."""
        raise NotImplementedError
