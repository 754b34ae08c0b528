"""A tiny authoritative DNS server on loopback UDP, for ``dns://127.0.0.1:PORT/name:port`` targets.

grpc's default resolver (c-ares) sends its queries to the DNS server named in
the target's authority, so a test can give a name several loopback addresses
without touching the system's resolver. It answers A queries from a table,
other types of a known name with no records, and unknown names NXDOMAIN.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from types import TracebackType

A, CLASS_IN = 1, 1
RESPONSE, NXDOMAIN = 0x8180, 3
"""Flags of an answer: a response, recursion desired and available, no error."""
TTL_S = 1
POINTER_TO_QUESTION = 0xC00C
"""A compressed name: the question's, at offset 12."""


class DnsServer:
    """Answers ``name -> [IPv4 address, ...]`` from `records` on 127.0.0.1, a UDP port of its own.

    `queries` counts what was asked, as ``(name, qtype)``.
    """

    def __init__(self, records: Mapping[str, Sequence[str]]) -> None:
        self.records = {
            name.lower().rstrip("."): list(addresses) for name, addresses in records.items()
        }
        self.queries: Counter[tuple[str, int]] = Counter()
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.socket.close()  # recvfrom fails, the thread ends
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self.socket.recvfrom(512)
            except OSError:
                return
            answer = self.answer(query)
            if answer is not None:
                self.socket.sendto(answer, peer)

    def answer(self, query: bytes) -> bytes | None:
        """The response to one query packet (None: not a query we can parse; dropped)."""
        try:
            ident, _flags, questions = struct.unpack_from("!HHH", query)
            labels, offset = [], 12
            while query[offset]:
                length = query[offset]
                labels.append(query[offset + 1 : offset + 1 + length].decode("ascii"))
                offset += 1 + length
            qtype, _qclass = struct.unpack_from("!HH", query, offset + 1)
        except (struct.error, IndexError, UnicodeDecodeError):
            return None
        if questions != 1:
            return None
        name = ".".join(labels).lower()
        self.queries[name, qtype] += 1
        addresses = self.records.get(name)
        found = addresses if addresses is not None and qtype == A else []
        flags = RESPONSE | (NXDOMAIN if addresses is None else 0)
        header = struct.pack("!HHHHHH", ident, flags, 1, len(found), 0, 0)
        question = query[12 : offset + 5]
        records = b"".join(
            struct.pack("!HHHIH", POINTER_TO_QUESTION, A, CLASS_IN, TTL_S, 4)
            + socket.inet_aton(address)
            for address in found
        )
        return header + question + records
