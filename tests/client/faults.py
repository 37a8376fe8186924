"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between the client and the live portal.

Each request the client sends takes the next planned fault (or ``FORWARD`` when the plan is
empty), so a test can say "the portal handles the first deduct, but its answer is lost on the
way back" and watch the client resend the same request. Threads and plain sockets only.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import BinaryIO


@dataclass(frozen=True)
class Fault:
    kind: str  # forward | drop_before | drop_after | delay | respond
    seconds: float = 0.0
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"


FORWARD = Fault("forward")
DROP_BEFORE = Fault("drop_before")  # the portal never sees the request
DROP_AFTER = Fault("drop_after")  # the portal handles it; its answer is lost


def delay(seconds: float) -> Fault:
    """Forward, then hold the answer back (past the client's timeout)."""
    return Fault("delay", seconds=seconds)


def respond(status: int, body: bytes, content_type: str = "application/json") -> Fault:
    """Answer in the portal's place without forwarding (a 503 from a load balancer, say)."""
    return Fault("respond", status=status, body=body, content_type=content_type)


@dataclass
class Exchange:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    fault: Fault
    response_status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)


def _read_message(stream: BinaryIO) -> tuple[bytes, str, dict[str, str], bytes] | None:
    """One HTTP/1.1 message (start line, headers, Content-Length body), or None at EOF."""
    start = stream.readline()
    if not start:
        return None
    head = [start]
    headers: dict[str, str] = {}
    while True:
        line = stream.readline()
        if not line:
            return None
        head.append(line)
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = stream.read(int(headers.get("content-length", "0")))
    return b"".join(head), start.decode("latin-1").strip(), headers, body


def _abort(sock: socket.socket) -> None:
    """Close with a TCP reset, the way a crashed peer or a killed proxy would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class FaultProxy:
    def __init__(self, upstream_url: str) -> None:
        host_port = upstream_url.split("://", 1)[1]
        host, port = host_port.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.plan: deque[Fault] = deque()
        self.exchanges: list[Exchange] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                _abort(sock)

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.plan.extend(faults)

    def seen(self, path_suffix: str = "") -> list[Exchange]:
        with self._lock:
            return [x for x in self.exchanges if x.path.split("?")[0].endswith(path_suffix)]

    def _next_fault(self) -> Fault:
        with self._lock:
            return self.plan.popleft() if self.plan else FORWARD

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._open.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        upstream: socket.socket | None = None
        reader = conn.makefile("rb")
        try:
            while True:
                message = _read_message(reader)
                if message is None:
                    return
                raw_head, start, headers, body = message
                method, path, _ = start.split(" ", 2)
                fault = self._next_fault()
                exchange = Exchange(method, path, headers, body, fault)
                with self._lock:
                    self.exchanges.append(exchange)
                if fault.kind == "drop_before":
                    _abort(conn)
                    return
                if fault.kind == "respond":
                    exchange.response_status = fault.status
                    conn.sendall(
                        f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: {fault.content_type}"
                        f"\r\nContent-Length: {len(fault.body)}\r\n\r\n".encode()
                        + fault.body
                    )
                    continue
                if upstream is None:
                    upstream = socket.create_connection(self.upstream)
                    upstream_reader = upstream.makefile("rb")
                upstream.sendall(raw_head + body)
                answer = _read_message(upstream_reader)
                if answer is None:
                    _abort(conn)
                    return
                answer_head, status_line, answer_headers, answer_body = answer
                exchange.response_status = int(status_line.split(" ", 2)[1])
                exchange.response_headers = answer_headers
                if fault.kind == "drop_after":
                    _abort(conn)
                    return
                if fault.kind == "delay":
                    time.sleep(fault.seconds)
                conn.sendall(answer_head + answer_body)
        except OSError:
            return  # the client gave up on this connection (a timeout): nothing to relay
        finally:
            with self._lock:
                self._open.discard(conn)
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                conn.close()
